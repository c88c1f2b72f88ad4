"""kill -9 at any moment: the trainer (and the cache preparation) killed mid-write and at random times,
by its own process id, leaves leftovers that the next start removes, and the finished run holds
exactly what an uninterrupted one does.

A kill inside a write is arranged, not waited for: the child runs the real command line with
safetensors' writer wrapped so that, on the chosen file, it writes half of the real bytes into a
temporary file named as safetensors names its own (the state a kill mid-write leaves) and stalls.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from directanimator_core.errors import InputError
from directanimator_core.train import cache as cache_module
from directanimator_core.train.cache import SAFETENSORS_TEMP, entry_path, read_entry
from directanimator_core.train.checkpoint import checkpoint_path
from directanimator_core.train.loop import train
from directanimator_core.train.plot import read_loss_log
from harness.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

CHILD = r"""
import os, random, string, sys, time
from pathlib import Path
import safetensors.torch
from directanimator_core.train import cache

real, stall_on = cache.save_file, os.environ.get("STALL_ON")

def save_file(tensors, filename, metadata=None):
    if Path(filename).name == stall_on:
        data = safetensors.torch.save(tensors, metadata)
        name = ".tmp" + "".join(random.choices(string.ascii_letters + string.digits, k=6))
        (Path(filename).parent / name).write_bytes(data[: len(data) // 2])
        time.sleep(600)
    real(tensors, filename, metadata=metadata)

cache.save_file = save_file
from directanimator_core.cli import main
sys.exit(main(sys.argv[1:]))
"""
START_S, RUN_S = 120, 300  # bounds: until a kill point is reached, for a whole run


def _start(args: list[str], log: Path, stall_on: Optional[str] = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), STALL_ON=stall_on or "")
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-c", CHILD, "train", *args], cwd=REPO, env=env, stdout=handle,
                                stderr=subprocess.STDOUT)


def _kill_when(process: subprocess.Popen, ready: Callable[[], bool], what: str, log: Path) -> bool:
    """SIGKILL ``process`` by its id once ``ready()``; False if it finished first. Always reaped (a zombie's
    id would still count as a running writer)."""
    deadline = time.monotonic() + START_S
    try:
        while not ready():
            if process.poll() is not None:
                assert process.returncode == 0, log.read_text()[-3000:]
                return False
            assert time.monotonic() < deadline, f"no {what} within {START_S} s: {log.read_text()[-3000:]}"
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
        return True
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def _run_to_the_end(args: list[str], log: Path) -> str:
    process = _start(args, log)
    try:
        process.wait(timeout=RUN_S)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-3000:]
    return log.read_text()


def _stalled_in(folder: Path, name: str) -> Callable[[], bool]:
    """True once a scratch folder of ``name`` holds the stalled half-written temporary file."""
    return lambda: any(SAFETENSORS_TEMP.match(p.name) for p in folder.glob(f".{name}.*.tmp/.tmp*"))


def _logged(out: Path, step: int, since: float) -> bool:
    """Has the process started at ``since`` logged ``step`` (the loss log is rewritten at each start)?"""
    path = out / "loss.csv"
    try:
        return path.stat().st_mtime >= since and len(read_loss_log(path)) >= step
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return False  # not there yet, or caught mid-row


def _hidden_or_set_aside(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.name.startswith(".") or p.name.endswith((".tmp", ".damaged"))]


def _same_files(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f"{b} differs from {a}"


def test_a_trainer_killed_mid_write_and_at_random_times_ends_as_an_uninterrupted_one(
        config_for, cache_copy, tmp_path) -> None:
    sections = dict(model={"train": "lora"}, run={"steps": 8, "checkpoint_every": 1, "keep_checkpoints": 2,
                                                  "ema": 0.9})
    whole = train(config_for(tmp_path / "whole", cache_copy, **sections)).out
    config = config_for(tmp_path / "run", cache_copy, **sections)
    out, folder, log = Path(config.run.out), Path(config.run.out) / "checkpoints", tmp_path / "child.log"
    (tmp_path / "c.json").write_text(config.to_json())
    args = [str(tmp_path / "c.json")]

    # 1. killed inside safetensors' write of the third checkpoint
    process = _start(args, log, stall_on="step_00000003.safetensors")
    assert _kill_when(process, _stalled_in(folder, "step_00000003.safetensors"), "stalled write", log)
    assert sorted(p.name for p in folder.iterdir()) == [
        ".step_00000003.safetensors." + f"{cache_module.HOST}.{process.pid}.tmp", "step_00000001.safetensors",
        "step_00000002.safetensors"]
    # what the writer before scratch folders left when killed: its temporary file, and safetensors' beside it
    (folder / f".step_00000003.safetensors.{process.pid}.tmp").write_bytes(b"")
    (folder / ".tmpK1lLed").write_bytes((folder / "step_00000002.safetensors").read_bytes()[:300])
    os.utime(folder / ".tmpK1lLed", (time.time() - 3600,) * 2)  # left an hour ago

    # 2. killed at random moments of later steps: a few milliseconds after step t's log row, which is
    # written just before step t's checkpoint, so inside that write or the next step's work
    chance = random.Random(0)
    for target in sorted(chance.sample(range(4, 8), 2)):
        delay, started = chance.uniform(0.0, 0.03), time.time()
        process = _start(args, log)
        assert _kill_when(process, lambda: _logged(out, target, started) and (time.sleep(delay) or True),
                          f"step {target}", log)

    # 3. the next start runs to the end
    assert "done at step 8 of 8" in _run_to_the_end(args, log)
    assert _hidden_or_set_aside(out) == []
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000007.safetensors", "step_00000008.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    _same_files(checkpoint_path(whole, 8), checkpoint_path(out, 8))
    for name in ("adapter.safetensors", "lora.safetensors"):
        _same_files(whole / name, out / name)
    assert read_loss_log(whole / "loss.csv") == read_loss_log(out / "loss.csv")


def test_a_cache_preparation_killed_mid_write_ends_as_an_uninterrupted_one(config_for, prepared_cache,
                                                                           tmp_path) -> None:
    cache = tmp_path / "cache"
    config = config_for(tmp_path / "run", cache)
    (tmp_path / "c.json").write_text(config.to_json())
    args, log = [str(tmp_path / "c.json"), "--prepare-only"], tmp_path / "child.log"

    # 1. killed inside the write of the second entry (ann is written, ben is half written)
    process = _start(args, log, stall_on="ben.safetensors")
    assert _kill_when(process, _stalled_in(cache, "ben.safetensors"), "stalled write", log)
    assert sorted(p.name for p in cache.iterdir()) == [
        f".ben.safetensors.{cache_module.HOST}.{process.pid}.tmp", "ann.safetensors"]
    # a training read found ann damaged and set it aside
    data = bytearray(entry_path(config.data, "ann").read_bytes())
    data[-100] ^= 0xFF
    entry_path(config.data, "ann").write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged"):
        read_entry(entry_path(config.data, "ann"))
    assert (cache / "ann.safetensors.damaged").is_file()

    # 2. killed at a random moment of the next start
    process = _start(args, log)
    time.sleep(random.Random(1).uniform(0.0, 6.0))
    _kill_when(process, lambda: True, "start", log)

    # 3. the next start finishes: every entry verified, nothing else left
    assert f"cache ready: 2 clips in {cache}, every entry verified" in _run_to_the_end(args, log)
    assert sorted(p.name for p in cache.iterdir()) == ["ann.safetensors", "ben.safetensors"]
    for name in ("ann", "ben"):
        a, b = entry_path(config.data, name), prepared_cache / f"{name}.safetensors"
        _same_files(b, a)
        with safe_open(str(a), "pt") as x, safe_open(str(b), "pt") as y:
            assert x.metadata() == y.metadata()
