"""Checkpoint integrity: a damaged latest checkpoint (bytes flipped inside a tensor, truncated, empty) is
skipped with one warning and the run resumes from the newest good one, ending bit-identical to an
uninterrupted run; a checkpoint written before checksums still resumes, unverified; pruning never
deletes the checkpoint just written and verified; a write that does not read back stops the run."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from directanimator_core.errors import CheckpointError
from directanimator_core.train import cache as cache_module
from directanimator_core.train.checkpoint import (
    UNCHECKED_FORMAT, checkpoint_path, inspect_checkpoint, read_checkpoint, save_checkpoint)
from directanimator_core.train.distributed import Processes
from directanimator_core.train.loop import build_optimizer, train
from directanimator_core.train.plot import read_loss_log
from directanimator_core.train.same2x import build_student

CPU = torch.device("cpu")
LOGGER = "directanimator_core.train.checkpoint"


def _config(config_for, cache, out, **run):
    return config_for(out, cache, model={"train": "lora"},
                      run={"steps": 4, "checkpoint_every": 1, "keep_checkpoints": 3, "ema": 0.9} | run)


def _flip_inside_a_tensor(path: Path, prefix: str = "model.", count: int = 16) -> str:
    """Invert ``count`` bytes in the middle of the first tensor named ``prefix``...; the header stays valid."""
    data = bytearray(path.read_bytes())
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    name = next(k for k, v in sorted(header.items()) if k.startswith(prefix) and v["data_offsets"][1]
                - v["data_offsets"][0] >= 2 * count)
    start, end = header[name]["data_offsets"]
    middle = 8 + size + (start + end) // 2 - count // 2
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    path.write_bytes(bytes(data))
    return name


def _same_files(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f"{a.name} differs"


def _same_runs(whole: Path, other: Path) -> None:
    _same_files(checkpoint_path(whole, 4), checkpoint_path(other, 4))
    for name in ("adapter.safetensors", "lora.safetensors"):
        _same_files(whole / name, other / name)
    assert read_loss_log(whole / "loss.csv") == read_loss_log(other / "loss.csv")


def _skips(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty"])
def test_a_damaged_latest_checkpoint_is_skipped_and_the_run_ends_bit_identical(
        config_for, prepared_cache, tmp_path, caplog, damage) -> None:
    whole = train(_config(config_for, prepared_cache, tmp_path / "whole")).out
    cut = _config(config_for, prepared_cache, tmp_path / "cut")
    assert train(cut, stop_after=3).step == 3
    latest = checkpoint_path(cut.run.out, 3)
    if damage == "flipped":
        _flip_inside_a_tensor(latest)  # a LoRA weight: resuming it would change every later step
        with safe_open(str(latest), framework="pt") as handle:
            assert handle.metadata()["state"]  # the header still reads
        with pytest.raises(CheckpointError, match=r"step_00000003.safetensors fails its check \(checksum mismatch"
                                                  r".*use an older checkpoint"):
            read_checkpoint(latest)
    elif damage == "truncated":
        latest.write_bytes(latest.read_bytes()[:-1000])
    else:
        latest.write_bytes(b"")

    caplog.set_level(logging.INFO, logger=LOGGER)
    resumed = train(cut)
    assert resumed.step == 4
    reason = "checksum mismatch" if damage == "flipped" else "not a complete safetensors file"
    skipped = _skips(caplog)
    assert len(skipped) == 1 and "step_00000003.safetensors" in skipped[0] and reason in skipped[0]
    assert "resuming from step_00000002.safetensors" in skipped[0]
    _same_runs(whole, resumed.out)
    folder = Path(cut.run.out) / "checkpoints"
    assert (folder / "step_00000003.safetensors.damaged").is_file()  # kept until the next start, for a look
    assert inspect_checkpoint(folder / "step_00000003.safetensors").verified  # rewritten by the resumed run
    train(cut)  # the next start: finished already, only clears what was set aside
    assert sorted(p.name for p in folder.iterdir()) == [f"step_0000000{i}.safetensors" for i in (2, 3, 4)]


def test_no_good_checkpoint_at_all_is_an_error_not_a_fresh_start(config_for, prepared_cache, tmp_path) -> None:
    cut = _config(config_for, prepared_cache, tmp_path / "cut")
    train(cut, stop_after=2)
    folder = Path(cut.run.out) / "checkpoints"
    for path in folder.iterdir():
        _flip_inside_a_tensor(path)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*checkpoints can be resumed \(the newest, "
                                              r"step_00000002.safetensors: checksum mismatch.*start the run afresh"):
        train(cut)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing set aside, nothing overwritten


def test_a_checkpoint_written_before_checksums_resumes_unverified(config_for, prepared_cache, tmp_path,
                                                                   caplog) -> None:
    whole = train(_config(config_for, prepared_cache, tmp_path / "whole", checkpoint_every=2)).out
    cut = _config(config_for, prepared_cache, tmp_path / "cut", checkpoint_every=2)
    train(cut, stop_after=3)
    old = checkpoint_path(cut.run.out, 2)
    with safe_open(str(old), framework="pt") as handle:
        state = handle.metadata()["state"]
    save_file(load_file(old), str(old), metadata={"format": UNCHECKED_FORMAT, "state": state})  # as written before
    assert not inspect_checkpoint(old).verified and not inspect_checkpoint(old).problem
    caplog.set_level(logging.INFO, logger=LOGGER)
    resumed = train(cut)
    warnings = _skips(caplog)
    assert len(warnings) == 1 and "step_00000002.safetensors was written before checkpoints carried a checksum" in \
        warnings[0] and "unverified" in warnings[0]
    _same_runs(whole, resumed.out)


def test_pruning_keeps_the_checkpoint_just_written_and_verified(config_for, prepared_cache, tmp_path) -> None:
    config = _config(config_for, prepared_cache, tmp_path / "run", keep_checkpoints=1)
    train(config, stop_after=2)
    folder = Path(config.run.out) / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["step_00000002.safetensors"]
    newer = folder / "step_00000009.safetensors"  # a newer file that fails its check
    shutil.copy(folder / "step_00000002.safetensors", newer)
    _flip_inside_a_tensor(newer)
    student = build_student(config, CPU)
    save_checkpoint(config.run.out, student, build_optimizer(student, config.optim), None, 3, 6, config,
                    Processes(0, 1, 0, CPU))
    # keep_checkpoints=1 alone would keep only step 9, which cannot be resumed
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000003.safetensors", "step_00000009.safetensors"]
    assert inspect_checkpoint(folder / "step_00000003.safetensors").verified


def test_a_checkpoint_that_does_not_read_back_stops_the_run_before_pruning(config_for, prepared_cache, tmp_path,
                                                                          monkeypatch) -> None:
    config = _config(config_for, prepared_cache, tmp_path / "run", keep_checkpoints=1)
    train(config, stop_after=2)
    folder = Path(config.run.out) / "checkpoints"
    real = cache_module.save_file

    def bad_disk(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        _flip_inside_a_tensor(Path(filename))

    monkeypatch.setattr(cache_module, "save_file", bad_disk)
    student = build_student(config, CPU)
    with pytest.raises(CheckpointError, match=r"step_00000003.safetensors fails its check right after it was "
                                              r"written \(checksum mismatch.*resumes from the newest good"):
        save_checkpoint(config.run.out, student, build_optimizer(student, config.optim), None, 3, 6, config,
                        Processes(0, 1, 0, CPU))
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000002.safetensors", "step_00000003.safetensors"]
    assert inspect_checkpoint(folder / "step_00000002.safetensors").verified
