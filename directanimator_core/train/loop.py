"""The training loop, readable top to bottom (DiT / nanoGPT ``train.py`` shape), in functions so tests can
call ``train(config)``: prepare the cache, build the models, resume, step, log, checkpoint, export.

Resume is automatic: a run folder with checkpoints continues from the newest one that passes its
checksum (checkpoint.resume), and ends exactly where an uninterrupted run would (same samples, same
noise, same optimizer and EMA state). Each start first removes what writes a kill interrupted left in
the run folder, its checkpoints folder and the cache (cache.remove_interrupted_writes).
"""

from __future__ import annotations

import csv
import logging
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..cues.config import CueConfig
from ..errors import InputError
from .cache import file_identity, fingerprint, list_clips, prepare_cache, remove_interrupted_writes, scratch_path
from .checkpoint import _canonical, export_weights, resume, save_checkpoint
from .config import OptimConfig, TrainConfig
from .data import ClipDataset, SampleStream, read_manifest
from .distributed import Processes, barrier, mean_over_processes, setup, teardown, wrap
from .same2x import build_student, build_teacher, compute_losses, trainable_parameters

log = logging.getLogger(__name__)

LOG_COLUMNS = ("stage", "step", "weight", "loss", "denoise", "same2x", "lr")


@dataclass(frozen=True)
class TrainResult:
    step: int  # optimizer steps done
    out: Path
    exported: tuple[Path, ...]  # files written at the end (empty when stopped early)


# -- data --------------------------------------------------------------------------------------------
def needed_clips(config: TrainConfig) -> tuple[list[str], Optional[list[tuple[str, str]]]]:
    """The clips a run reads, and the cross-ID pairs in stage 2."""
    if config.same2x.stage == 2:
        pairs = read_manifest(config.data.cross_manifest)
        return sorted({n for pair in pairs for n in pair}), pairs
    return sorted(list_clips(config.data.clips)), None


def vae_identity(config: TrainConfig) -> str:
    if config.data.vae is None or not Path(config.data.vae).is_file():
        raise InputError(f"data.vae={config.data.vae!r} is not a file: give the Wan 2.1 VAE .safetensors the cache "
                         "is (or will be) encoded with")
    return file_identity(Path(config.data.vae))


def prepare(config: TrainConfig, processes: Processes, cue_config: CueConfig = CueConfig(),
            verify: bool = True) -> dict[str, str]:
    """Build missing, stale or damaged cache entries (each process a share; ``verify`` False judges
    entries by their header only), then return the fingerprint of every clip the run reads."""
    names, _ = needed_clips(config)
    identity = vae_identity(config)

    def load_vae():
        from ..models.checkpoints.vae import load_wan_vae

        return load_wan_vae(config.data.vae, device=processes.device)[0]

    report = prepare_cache(config.data, load_vae, identity, cue_config, names, processes.rank, processes.world_size,
                           verify)
    if report.built or report.rebuilt:
        log.info("cache: %d built, %d rebuilt, %d already done", len(report.built), len(report.rebuilt),
                 len(report.skipped))
    barrier(processes)
    return clip_fingerprints(config, cue_config)


def seed_everything(seed: int, rank: int) -> None:
    """Seed python's, numpy's and torch's global generators from (seed, rank); checkpoints restore them."""
    random.seed(seed * 1000 + rank)
    np.random.seed((seed * 1000 + rank) % 2**32)
    torch.manual_seed(seed * 1000 + rank)


# -- optimisation ------------------------------------------------------------------------------------
def learning_rate(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine to ``min_lr_ratio`` at ``total_steps``:
    a pure function of the step (the scheduler), so a resumed run continues the same curve."""
    warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0
    if optim.decay == "constant":
        return optim.lr * warm
    span = max(total_steps - optim.warmup_steps, 1)
    progress = min(max(step - optim.warmup_steps, 0) / span, 1.0)
    floor = optim.min_lr_ratio
    return optim.lr * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trained parameters: the CueFusion adapter's in a group of its own whose rate is
    ``adapter_lr_scale`` times the rest's (the group's ``lr_scale``, applied by the loop each step). At
    scale 1 one group, in parameter order (what earlier checkpoints hold)."""
    params = trainable_parameters(model)
    if optim.adapter_lr_scale == 1.0:
        return torch.optim.AdamW(list(params.values()), lr=optim.lr, betas=optim.betas, eps=optim.eps,
                                 weight_decay=optim.weight_decay)
    adapter = [p for n, p in params.items() if ".adapter." in f".{n}"]
    rest = [p for n, p in params.items() if ".adapter." not in f".{n}"]
    groups = [{"params": rest, "lr_scale": 1.0}, {"params": adapter, "lr_scale": optim.adapter_lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr, betas=optim.betas, eps=optim.eps,
                             weight_decay=optim.weight_decay)


def init_ema(model: nn.Module, decay: float) -> Optional[dict[str, torch.Tensor]]:
    """An fp32 copy of the trained parameters keyed by canonical name, or None when ``decay`` is 0."""
    if decay <= 0:
        return None
    return {_canonical(n): p.detach().float().clone() for n, p in trainable_parameters(model).items()}


@torch.no_grad()
def update_ema(ema: Optional[dict[str, torch.Tensor]], model: nn.Module, decay: float) -> None:
    if ema is None:
        return
    for name, param in trainable_parameters(model).items():
        ema[_canonical(name)].lerp_(param.detach().float(), 1 - decay)


# -- the loss log ------------------------------------------------------------------------------------
class LossLog:
    """``out/loss.csv``: one row per logged step (rank 0). On resume, rows after the resumed step (written
    before the interruption) are dropped so the log matches an uninterrupted run."""

    def __init__(self, out: Path, resumed_step: int, enabled: bool) -> None:
        self.path, self.enabled = out / "loss.csv", enabled
        if not enabled:
            return
        rows = []
        if self.path.is_file() and resumed_step > 0:
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resumed_step]
        with scratch_path(self.path) as tmp:  # a kill mid-rewrite must not lose the rows kept
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, LOG_COLUMNS).writerow(row)


# -- the run -----------------------------------------------------------------------------------------
def train(config: TrainConfig, stop_after: Optional[int] = None, prepare_data: bool = True,
          cue_config: CueConfig = CueConfig()) -> TrainResult:
    """Run (or resume) the training ``config`` describes, on one process or as one of torchrun's.

    Args:
        config: the run.
        stop_after: stop once this many optimizer steps are done, as an interruption would (tests);
            the run folder then resumes from its last checkpoint.
        prepare_data: build missing cache entries first (False: the cache must be complete).
        cue_config: cue settings for the preparation step.
    """
    processes = setup(config.run.device)
    try:
        return _train(config, processes, stop_after, prepare_data, cue_config)
    finally:
        teardown(processes)


def _train(config: TrainConfig, processes: Processes, stop_after: Optional[int], prepare_data: bool,
           cue_config: CueConfig) -> TrainResult:
    run, out, device = config.run, Path(config.run.out), processes.device
    # 0. what writes a kill interrupted left behind (only rank 0 writes the run folder)
    if processes.main:
        remove_interrupted_writes(out)
        remove_interrupted_writes(out / "checkpoints")
    # 1. data (the preparation step verifies the cache and clears its leftovers itself)
    if prepare_data:
        fingerprints = prepare(config, processes, cue_config)
    else:
        remove_interrupted_writes(config.data.cache)
        fingerprints = clip_fingerprints(config, cue_config)
    _, pairs = needed_clips(config)
    # 2. models (every generator seeded, so even code that draws from the global ones repeats)
    seed_everything(run.seed, processes.rank)
    trainee = build_student(config, device)
    dataset = ClipDataset(config.data, fingerprints, trainee.net.backbone.config.text_dim, pairs)
    stream = SampleStream(dataset, run.seed, run.batch_size, processes.rank, processes.world_size, run.overfit)
    teacher = build_teacher(config, device) if config.same2x.stage == 2 and config.same2x.weight > 0 else None
    model = wrap(trainee, trainee.net.blocks, run.strategy, processes)
    optimizer = build_optimizer(model, config.optim)
    ema = init_ema(model, run.ema)
    # 3. resume
    resumed, start, _samples = resume(out, model, optimizer, ema, config, processes)
    if resumed is not None:
        log.info("resumed %s at step %d", resumed, start)
    loss_log = LossLog(out, start, processes.main)
    # 4. steps (the next batch is read and checked on a worker thread while this one computes; a
    # batch is a pure function of its step, so the overlap changes nothing)
    end = min(run.steps, stop_after if stop_after is not None else run.steps)
    with ThreadPoolExecutor(1) as reader:
        step = _steps(model, teacher, optimizer, ema, stream, reader, loss_log, start, end, config, processes)
    # 5. export
    exported = ()
    if step == run.steps:
        exported = tuple(export_weights(out, model, trainee, ema, processes))
        if processes.main:
            from .plot import plot_losses

            plot_losses([loss_log.path], out / "loss.png")
    barrier(processes)
    return TrainResult(step, out, exported)


def _steps(model: nn.Module, teacher: Optional[nn.Module], optimizer: torch.optim.Optimizer,
           ema: Optional[dict[str, torch.Tensor]], stream: SampleStream, reader: ThreadPoolExecutor,
           loss_log: LossLog, start: int, end: int, config: TrainConfig, processes: Processes) -> int:
    """Optimizer steps start .. end - 1, with logging and checkpoints; returns the steps done."""
    run, device = config.run, processes.device
    pending = reader.submit(stream.batch, start, device) if start < end else None
    for step in range(start, end):
        batch = pending.result()
        if step + 1 < end:
            pending = reader.submit(stream.batch, step + 1, device)
        lr = learning_rate(step, config.optim, config.run.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        losses = compute_losses(model, teacher, batch, config, device)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        if config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(trainable_parameters(model).values()), config.optim.grad_clip)
        optimizer.step()
        update_ema(ema, model, run.ema)
        done = step + 1
        if done % run.log_every == 0 or done == run.steps:
            _log_step(loss_log, losses, done, lr, config, processes)
        if done % run.checkpoint_every == 0 or done == run.steps:
            save_checkpoint(run.out, model, optimizer, ema, done, done * run.batch_size, config, processes)
    return max(start, end)


def clip_fingerprints(config: TrainConfig, cue_config: CueConfig = CueConfig()) -> dict[str, str]:
    """Clip name -> the fingerprint its cache entry must carry, for every clip the run reads (no building)."""
    names, _ = needed_clips(config)
    clips, identity = list_clips(config.data.clips), vae_identity(config)
    return {name: fingerprint(clips[name], config.data, cue_config, identity) for name in names}


def _log_step(loss_log: LossLog, losses, step: int, lr: float, config: TrainConfig, processes: Processes) -> None:
    values = mean_over_processes(torch.stack([losses.total.detach(), losses.denoise.detach(),
                                              losses.same2x.detach()]).float(), processes)
    total, denoise, same2x = (float(v) for v in values.cpu())
    if not math.isfinite(total):
        raise InputError(f"loss became {total} at step {step}: lower optim.lr (now {config.optim.lr}) or keep "
                         "optim.grad_clip on")
    loss_log.write({"stage": config.same2x.stage, "step": step, "weight": config.same2x.weight, "loss": total,
                    "denoise": denoise, "same2x": "" if math.isnan(same2x) else same2x, "lr": lr})
