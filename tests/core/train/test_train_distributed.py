"""Two processes under gloo (torchrun, DDP and FSDP2) end with the weights of one process trained on
the same global batch: same samples, same noise, gradients averaged over the processes; the EMA
(exported) is gathered from the shards; an FSDP2 run stopped and resumed ends the same."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from directanimator_core.train.loop import train
from harness.paths import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_file(config, path: Path) -> Path:
    path.write_text(config.to_json())
    return path


@pytest.mark.parametrize("strategy,trained", [("ddp", "lora"), ("fsdp", "full")])
def test_two_processes_match_one(config_for, prepared_cache, tmp_path, strategy, trained) -> None:
    # Adam's eps well above rounding noise: for a near-zero gradient Adam steps ±lr whatever its size,
    # which would turn summation-order rounding into lr-sized differences.
    sections = dict(model={"train": trained}, optim={"lr": 3e-3, "eps": 1e-4}, run={"steps": 2, "batch_size": 2, "strategy": strategy,
                                                    "checkpoint_every": 1, "ema": 0.5})
    one = train(config_for(tmp_path / "one", prepared_cache, **sections))
    config = config_for(tmp_path / "two", prepared_cache, **sections)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    path = _config_file(config, tmp_path / "c.json")
    # FSDP2 run interrupted after step 1 and resumed: the sharded resume path is exercised too
    for extra in (["--stop-after", "1"], []) if strategy == "fsdp" else ([],):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                   "-m", "directanimator_core", "train", str(path), "--no-prepare", *extra]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "done at step 2 of 2" in result.stdout
    names = [p.name for p in one.exported]
    assert names and names == sorted(p.name for p in (tmp_path / "two").glob("*.safetensors"))
    for name in names:
        a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert a.keys() == b.keys()
        for key in a:  # all-reduce sums in another order; Adam's normalised steps carry that rounding
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-5, msg=lambda m, key=key: f"{key}: {m}")
    gates = [v for k, v in load_file(tmp_path / "one" / "adapter.safetensors").items() if k.endswith(".gate")]
    assert min(g.abs().max().item() for g in gates) > 1e-3  # the gates start at 0: training moved them 50x the tolerance
    one_log = (tmp_path / "one" / "loss.csv").read_text().splitlines()
    two_log = (tmp_path / "two" / "loss.csv").read_text().splitlines()
    assert len(one_log) == len(two_log) == 3
