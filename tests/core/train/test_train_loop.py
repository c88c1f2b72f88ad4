"""The loop: a tiny model overfits, an interrupted run resumes bit-identically, checkpoints survive a
crash mid-write, stage 2 runs with Same2X, and the exported files load through the model loaders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from directanimator_core.errors import CheckpointError
from directanimator_core.models.checkpoints.adapter import load_adapter, load_model
from directanimator_core.train import cache as cache_module
from directanimator_core.train.checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from directanimator_core.train.distributed import Processes
from directanimator_core.train.lora import build_lora
from directanimator_core.train.loop import build_optimizer, train
from directanimator_core.train.plot import plot_losses, read_loss_log
from directanimator_core.train.same2x import build_student

CPU = torch.device("cpu")


def _losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_loss_log(out / "loss.csv")]


def test_a_tiny_model_overfits_two_clips(config_for, prepared_cache, tmp_path) -> None:
    config = config_for(tmp_path / "run", prepared_cache, model={"train": "full"}, optim={"lr": 6e-3},
                        run={"steps": 40, "checkpoint_every": 40, "overfit": True, "precision": "bf16",
                             "grad_checkpointing": True})
    result = train(config)
    losses = _losses(result.out)
    assert len(losses) == 40 and losses[0] / min(losses[-3:]) > 4
    assert {p.name for p in result.exported} == {"adapter.safetensors", "model.safetensors"}
    merged = load_model(result.out / "model.safetensors", num_heads=2)  # backbone + adapter in one file
    assert merged.adapter.blocks["0"].gate.abs().sum() > 0


def _run(config_for, cache, out, stop_after=None, **sections):
    config = config_for(out, cache, model={"train": "lora"}, run={"steps": 4, "checkpoint_every": 2, "ema": 0.9},
                        **sections)
    return train(config, stop_after=stop_after), config


def test_an_interrupted_run_resumes_bit_identical(config_for, prepared_cache, tmp_path) -> None:
    whole, _ = _run(config_for, prepared_cache, tmp_path / "whole")
    stopped, _ = _run(config_for, prepared_cache, tmp_path / "cut", stop_after=3)  # last checkpoint: step 2
    assert stopped.step == 3 and stopped.exported == ()
    assert len(_losses(tmp_path / "cut")) == 3  # step 3's row is dropped on resume: it is redone
    resumed, _ = _run(config_for, prepared_cache, tmp_path / "cut")
    assert resumed.step == 4
    a, state_a = read_checkpoint(latest_checkpoint(whole.out))
    b, state_b = read_checkpoint(latest_checkpoint(resumed.out))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a) and any(k.startswith("ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert state_a["step"] == state_b["step"] == 4 and state_a["samples"] == 8
    assert _losses(whole.out) == _losses(resumed.out)
    for name in ("adapter.safetensors", "lora.safetensors"):
        x, y = load_file(whole.out / name), load_file(resumed.out / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_resume_refuses_a_changed_config(config_for, prepared_cache, tmp_path) -> None:
    _run(config_for, prepared_cache, tmp_path / "run", stop_after=2)
    with pytest.raises(CheckpointError, match="other settings"):
        _run(config_for, prepared_cache, tmp_path / "run", optim={"lr": 1e-4})


def test_exported_adapter_and_lora_load_through_the_loaders(config_for, prepared_cache, tmp_path, assets) -> None:
    result, config = _run(config_for, prepared_cache, tmp_path / "run")
    model = load_model(assets["backbone"], adapter_path=result.out / "adapter.safetensors", num_heads=2)
    adapter = load_adapter(result.out / "adapter.safetensors", model.backbone.config)
    ema = {k[len("ema.net.adapter."):]: v for k, v in read_checkpoint(latest_checkpoint(result.out))[0].items()
           if k.startswith("ema.net.adapter.")}
    assert ema and all(torch.equal(adapter.state_dict()[k], v) for k, v in ema.items())  # the export is the EMA
    lora = build_lora(model.blocks, 1, 1.0, (), result.out / "lora.safetensors")  # size from the file
    assert lora.rank == 4 and len(lora.pairs) == 2 * len(config.model.lora_targets)
    assert any(p.abs().sum() > 0 for n, p in lora.named_parameters() if n.endswith("lora_B"))
    # the merged file: the LoRA folded into the base weights, loadable as one model (the loader node's input)
    merged = load_model(result.out / "model.safetensors", compute_dtype=torch.float32, num_heads=2)
    base, pair = load_file(assets["backbone"])["blocks.1.ffn.0.weight"], lora.named_pairs()["blocks.1.ffn.0"]
    folded = base + (pair.lora_B @ pair.lora_A) * pair.scale
    torch.testing.assert_close(merged.backbone.state_dict()["blocks.1.ffn.0.weight"], folded, rtol=0, atol=1e-6)
    assert all(torch.equal(merged.adapter.state_dict()[k], v) for k, v in adapter.state_dict().items())


def test_a_failed_checkpoint_write_keeps_the_previous_one(config_for, prepared_cache, tmp_path, monkeypatch) -> None:
    result, config = _run(config_for, prepared_cache, tmp_path / "run", stop_after=2)
    before = latest_checkpoint(result.out)
    saved = before.read_bytes()
    student = build_student(config, CPU)

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(result.out, student, build_optimizer(student, config.optim), None, 3, 6, config,
                        Processes(0, 1, 0, CPU))
    assert sorted(p.name for p in (result.out / "checkpoints").iterdir()) == [before.name]
    assert before.read_bytes() == saved and read_checkpoint(before)[1]["step"] == 2


def test_stage2_with_and_without_same2x_and_the_loss_plot(config_for, prepared_cache, tmp_path, monkeypatch) -> None:
    first = train(config_for(tmp_path / "stage1", prepared_cache, run={"steps": 2}))
    adapter = str(first.out / "adapter.safetensors")
    runs = [first.out]
    for name, weight in (("s2x", 0.5), ("plain", 0.0)):
        out = train(config_for(tmp_path / name, prepared_cache, model={"adapter": adapter},
                               same2x={"stage": 2, "depth": 1, "weight": weight}, run={"steps": 2})).out
        runs.append(out)
    rows = {out.name: read_loss_log(out / "loss.csv") for out in runs}
    assert all(r["same2x"] is not None and r["same2x"] >= 0 for r in rows["s2x"])
    assert all(r["same2x"] is None and r["loss"] == r["denoise"] for r in rows["plain"])
    assert [r["stage"] for r in rows["stage1"]] == [1, 1] and rows["s2x"][0]["stage"] == 2
    png = plot_losses([out / "loss.csv" for out in runs], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (first.out / "loss.png").is_file()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert plot_losses([first.out / "loss.csv"], tmp_path / "none.png") is None


def test_learning_rate_warms_up_then_decays_by_cosine_to_the_floor() -> None:
    from directanimator_core.errors import InputError
    from directanimator_core.train.config import OptimConfig
    from directanimator_core.train.loop import learning_rate

    cosine = OptimConfig(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    rates = [learning_rate(step, cosine, 110) for step in range(120)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.55) and rates[110] == pytest.approx(0.1) and rates[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    constant = OptimConfig(lr=1.0, warmup_steps=10)
    assert learning_rate(5, constant, 110) == pytest.approx(0.6) and learning_rate(100, constant, 110) == 1.0
    with pytest.raises(InputError, match='use "constant" or "cosine"'):
        OptimConfig(decay="linear")


def test_the_adapter_learns_at_its_own_rate_and_the_run_still_resumes_exactly(config_for, prepared_cache,
                                                                              tmp_path) -> None:
    from directanimator_core.train.same2x import build_student

    config = config_for(tmp_path / "x", prepared_cache, model={"train": "full"}, optim={"adapter_lr_scale": 10.0})
    optimizer = build_optimizer(build_student(config, torch.device("cpu")), config.optim)
    scales = sorted(g["lr_scale"] for g in optimizer.param_groups)
    assert scales == [1.0, 10.0]
    whole, _ = _run(config_for, prepared_cache, tmp_path / "whole", optim={"adapter_lr_scale": 10.0})
    _run(config_for, prepared_cache, tmp_path / "cut", stop_after=3, optim={"adapter_lr_scale": 10.0})
    resumed, _ = _run(config_for, prepared_cache, tmp_path / "cut", optim={"adapter_lr_scale": 10.0})
    a, b = read_checkpoint(latest_checkpoint(whole.out))[0], read_checkpoint(latest_checkpoint(resumed.out))[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    slow, _ = _run(config_for, prepared_cache, tmp_path / "slow")
    fast, plain = load_file(whole.out / "adapter.safetensors"), load_file(slow.out / "adapter.safetensors")
    gates = [k for k in fast if k.endswith(".gate")]
    assert gates and all(fast[k].abs().mean() > plain[k].abs().mean() for k in gates)  # 10x the rate, wider open
