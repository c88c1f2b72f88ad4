"""Stages 2-4 of the default-model run: the synthetic clips and their cache, then Same2X stage 1 and 2
through the trainer (train/loop.train) with the preparation step off (cache.py writes the entries)."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..models.checkpoints.adapter import save_merged
from ..models.cuefusion import CueFusion, CueFusionDiT
from ..models.checkpoints.vae import load_wan_vae
from ..models.wan_dit import build_backbone, init_weights
from ..train.config import DataConfig, ModelConfig, OptimConfig, RunConfig, Same2XConfig, TrainConfig
from ..train.loop import train
from .cache import ENCODED, write_cross_id, write_same_id
from .recipe import Recipe
from .world import cue_config

log = logging.getLogger(__name__)


def data_config(recipe: Recipe, out: Path, stage: int) -> DataConfig:
    folder = "same_id" if stage == 1 else "cross_id"
    return DataConfig(clips=str(out / folder / "clips"), cache=str(out / folder / "cache"),
                      vae=str(out / "vae.safetensors"), frames=recipe.frames, height=recipe.height,
                      width=recipe.width, reference_frames=2, pose_dropout=0.0,
                      cross_manifest=str(out / folder / "pairs.json") if stage == 2 else None)


def train_config(recipe: Recipe, out: Path, stage: int, world: Optional[Path] = None) -> TrainConfig:
    """The trainer's config for stage 1 (from the random base) or stage 2 (from stage 1's export); the clips,
    cache and VAE are in ``world`` (default ``out``: the reproduction table's seeds share one world)."""
    backbone = out / "base.safetensors" if stage == 1 else out / "stage1" / "model.safetensors"
    steps = recipe.stage1_steps if stage == 1 else recipe.stage2_steps
    return TrainConfig(
        data=data_config(recipe, world or out, stage),
        model=ModelConfig(backbone=str(backbone), train="full", num_heads=recipe.num_heads),
        same2x=Same2XConfig(stage=stage, depth=recipe.same2x_depth, weight=recipe.same2x_weight,
                            teacher_dtype="fp32"),
        optim=OptimConfig(lr=recipe.lr, warmup_steps=min(50, steps), grad_clip=1.0, decay="cosine",
                          adapter_lr_scale=recipe.adapter_lr_scale),
        run=RunConfig(out=str(out / f"stage{stage}"), seed=recipe.seed, steps=steps, batch_size=recipe.batch_size,
                      timestep_shift=recipe.timestep_shift, figure_weight=recipe.figure_weight,
                      cue_dropout=recipe.cue_dropout, precision="fp32", checkpoint_every=checkpoint_every(steps),
                      keep_checkpoints=1, log_every=10, device="cpu", ema=ema_decay(recipe.ema, steps)))


def checkpoint_every(steps: int) -> int:
    """A checkpoint every 250 steps (a few minutes of a CPU), at least twice a stage: a stopped run resumes
    from the last one and loses minutes, not half a stage."""
    return max(1, min(250, steps // 2))


def ema_decay(decay: float, steps: int) -> float:
    """``decay``, shortened so the EMA's span (1 / (1 - decay) steps) is at most a tenth of a ``steps``-step
    stage (else the export would still be mostly the stage's starting weights); 0 (off) for tiny runs."""
    return max(0.0, min(decay, 1.0 - 10.0 / steps))


def write_base(recipe: Recipe, path: Path) -> Path:
    """The randomly initialised model the run starts from: Wan's init of the backbone and CueFusion's of
    the adapter from the recipe's seed, the adapter's injection gates set to ``recipe.gate_init`` (a
    from-scratch model has no base behaviour for a zero gate to protect), saved as one merged file."""
    generator = torch.Generator().manual_seed(recipe.seed)
    backbone = init_weights(build_backbone(recipe.backbone_config()), generator)
    adapter = CueFusion(backbone.config, recipe.cuefusion_config()).init_weights(generator)
    with torch.no_grad():
        for block in adapter.blocks.values():
            block.gate.fill_(recipe.gate_init)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_merged(CueFusionDiT(backbone, adapter), path)
    return path


def stage_world(recipe: Recipe, out: Path, reuse: Optional[Path] = None, encode: frozenset[str] = ENCODED,
                base: bool = True) -> dict:
    """Write the clips, cache entries and pair manifest of both stages, and (``base``) the random start
    (skipped when done). ``reuse``: another world folder of the same clips whose entries give every tensor
    not named in ``encode`` (cache.EntryWriter)."""
    done = out / "world.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.time()
    vae_file = out / "vae.safetensors"
    vae = load_wan_vae(vae_file)[0]
    reused = {stage: None if reuse is None else Path(data_config(recipe, reuse, stage).cache) for stage in (1, 2)}
    same = write_same_id(data_config(recipe, out, 1), recipe, vae, vae_file, reused[1], encode)
    cross = write_cross_id(data_config(recipe, out, 2), recipe, vae, vae_file, out / "cross_id" / "pairs.json",
                           reused[2], encode)
    if base:
        write_base(recipe, out / "base.safetensors")
    record = {"same_id_clips": len(same), "cross_id_pairs": len(cross), "wall_s": round(time.time() - start, 1),
              "encoded": sorted(encode) if reuse is not None else sorted(ENCODED)}
    done.write_text(json.dumps(record))
    return record


def final_losses(run: Path, rows: int = 5) -> dict:
    """Mean of the last ``rows`` logged losses of a trainer run (loss.csv)."""
    with open(run / "loss.csv", newline="", encoding="utf-8") as handle:
        log_rows = list(csv.DictReader(handle))[-rows:]
    def mean(key: str):
        return sum(float(r[key]) for r in log_rows) / len(log_rows) if all(r[key] for r in log_rows) else None

    return {"step": int(log_rows[-1]["step"]), "loss": mean("loss"), "denoise": mean("denoise"), "same2x": mean("same2x")}


def stage_train(recipe: Recipe, out: Path, stage: int, world: Optional[Path] = None) -> dict:
    """Run (or resume) trainer stage 1 or 2 (on ``world``'s data, default ``out``'s); a finished stage's
    record (stage_record.json) is reused."""
    config = train_config(recipe, out, stage, world)
    done = Path(config.run.out) / "stage_record.json"
    if done.is_file() and (Path(config.run.out) / "model.safetensors").is_file():
        return json.loads(done.read_text())
    start = time.time()
    train(config, prepare_data=False, cue_config=cue_config(recipe))
    record = {"steps": config.run.steps, "wall_s": round(time.time() - start, 1),
              "final": final_losses(Path(config.run.out))}
    done.write_text(json.dumps(record))
    return record


def run_same2x(recipe: Recipe, out: Path, stages: Sequence[str]) -> dict:
    """The world and training stages named in ``stages``; their records by stage name."""
    record = {}
    if "world" in stages:
        record["world"] = stage_world(recipe, out)
    for stage in (1, 2):
        if f"stage{stage}" in stages:
            record[f"stage{stage}"] = stage_train(recipe, out, stage)
    return record
