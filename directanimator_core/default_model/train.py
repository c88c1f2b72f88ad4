"""``python -m directanimator_core.default_model.train --out out/default_model``: the whole default model.

One command, deterministic from the recipe's seed (recipe.py), run on the CPU:
    1. vae      the small VAE on synthetic frames (vae_train.py), phases 1-2      -> OUT/vae_windows.safetensors
                then phase 3 on whole clips (fresh optimizer)                     -> OUT/vae.safetensors
    2. world    same-ID clips and cross-ID pairs, their exact cues, the cache     -> OUT/clips, OUT/cache
    3. stage1   Same2X stage 1 (same-ID) with the trainer (train/), full model    -> OUT/stage1/model.safetensors
    4. stage2   Same2X stage 2 (cross-ID, λ·L_S2X at block D)                     -> OUT/stage2/model.safetensors
    5. record   command, seed, steps, wall times, losses                          -> OUT/record.json
``--install`` then copies the VAE and the stage-2 model (as fp16) into default_model/weights/, scores
``--eval-pairs`` held-out cross-ID pairs with the installed files, and writes the record there too.
A stage whose output already exists for the same recipe is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import MODEL_FILE, RECORD_FILE, VAE_FILE
from .recipe import DEFAULT, Recipe, quick

log = logging.getLogger(__name__)


def stage_vae(recipe: Recipe, out: Path) -> dict:
    """Train and save the VAE (phases 1-2, then 3) unless done; returns the stage's record."""
    windows = _vae_windows(recipe, out)
    path = out / "vae.safetensors"
    if path.is_file():
        return windows | json.loads((out / "vae_clips_record.json").read_text())
    from ..models.checkpoints.vae import load_wan_vae
    from .vae_train import finetune_clips, save_vae

    start, rows = time.time(), []
    def log_step(step: int, losses: dict) -> None:
        rows.append({"step": step, **losses})
        if step % 10 == 0:
            log.info("vae clip step %d/%d: %s", step, recipe.vae_clip_steps, {k: round(v, 4) for k, v in losses.items()})

    vae = finetune_clips(load_wan_vae(out / "vae_windows.safetensors")[0], recipe, log_step)
    save_vae(vae, path)
    _write_csv(out / "vae_clips_loss.csv", rows)
    record = {"clip_steps": recipe.vae_clip_steps, "clip_wall_s": round(time.time() - start, 1),
              "clip_final": rows[-1] if rows else {}}
    (out / "vae_clips_record.json").write_text(json.dumps(record, indent=1))
    return windows | record


def _vae_windows(recipe: Recipe, out: Path) -> dict:
    """Phases 1-2 (train_vae) -> OUT/vae_windows.safetensors unless it exists."""
    from .vae_train import save_vae, train_vae

    path = out / "vae_windows.safetensors"
    if path.is_file():
        return json.loads((out / "vae_record.json").read_text())
    start, rows = time.time(), []

    def log_step(step: int, losses: dict) -> None:
        rows.append({"step": step, **losses})
        if step % 25 == 0:
            log.info("vae step %d/%d: %s", step, recipe.vae_image_steps + recipe.vae_steps,
                     {k: round(v, 4) for k, v in losses.items()})

    vae = train_vae(recipe, log_step)
    save_vae(vae, path)
    _write_csv(out / "vae_loss.csv", rows)
    record = {"steps": recipe.vae_image_steps + recipe.vae_steps, "wall_s": round(time.time() - start, 1),
              "final": rows[-1] if rows else {}}
    (out / "vae_record.json").write_text(json.dumps(record, indent=1))
    return record


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_recipe(recipe: Recipe, out: Path) -> None:
    """Refuse to resume a run folder made with another recipe (its outputs would be mixed)."""
    from ..errors import InputError

    path = out / "recipe.json"
    if path.is_file() and path.read_text() != recipe.to_json():
        raise InputError(f"{out} holds a run of another recipe ({path}): give a new --out or delete the folder")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe.to_json())


def run_all(recipe: Recipe, out: Path, stages: Sequence[str] = ("vae", "world", "stage1", "stage2")) -> dict:
    """Run the stages in order (each skipped when already done) and return the run's record.

    Args:
        recipe: what to train.
        out: the run folder.
        stages: which stages to run (later stages need the earlier ones' outputs).
    """
    torch.set_num_threads(recipe.threads)
    check_recipe(recipe, out)
    record = {"recipe": json.loads(recipe.to_json()), "stages": {}}
    if "vae" in stages:
        record["stages"]["vae"] = stage_vae(recipe, out)
    if {"world", "stage1", "stage2"} & set(stages):
        from .same2x_run import run_same2x

        record["stages"] |= run_same2x(recipe, out, stages)
    return record


def evaluate_heldout(recipe: Recipe, model_file: Path, vae_file: Path, pairs: int, steps: int = 20) -> dict:
    """Scores over the first ``pairs`` held-out cross-ID pairs: mean PSNR / SSIM of the stage-2 model, the copy
    and warp baselines and the VAE's own reconstruction of the truth (the ceiling of any latent model), and
    the driven-ness check (drivenness.py: own, another driver's and blank cues, whole frame and figure)."""
    from ..models.checkpoints.adapter import load_model
    from ..models.checkpoints.vae import load_wan_vae
    from .drivenness import heldout_drivenness

    model = load_model(model_file, compute_dtype=torch.float32).eval()
    vae = load_wan_vae(vae_file)[0]
    sampler = recipe.sampler(steps)
    driven = heldout_drivenness(model, vae, recipe, pairs, sampler)
    mean = {("ours" if m == "own" else m): {k: driven["mean"][m][k] for k in ("psnr", "ssim")}
            for m in ("own", "copy", "warp")}
    mean["vae_ceiling"] = {k: driven["mean"]["vae"][k] for k in ("psnr", "ssim")}  # scored with the variants
    return {"pairs": pairs, "sampling_steps": steps, "mean": mean, "driven": driven}


def install(out: Path) -> None:
    """Copy the run's VAE and stage-2 model into default_model/weights/, stored in fp16 (half the bytes;
    the loaders upcast to the compute dtype), metadata kept; the model's text input is written umT5-wide
    and zero (checkpoints.adapter.text_free: it was trained without text), so core ComfyUI's Wan loader
    reads the file too."""
    VAE_FILE.parent.mkdir(parents=True, exist_ok=True)
    for source, target in ((out / "vae.safetensors", VAE_FILE), (out / "stage2" / "model.safetensors", MODEL_FILE)):
        write_fp16(source, target, text_free_model=target == MODEL_FILE)


def write_fp16(source: Path, target: Path, text_free_model: bool = False) -> None:
    """``source`` -> ``target`` in fp16, metadata kept; ``text_free_model``: through checkpoints.adapter.text_free."""
    from ..models.checkpoints.adapter import text_free

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k).to(torch.float16) for k in handle.keys()}
    if text_free_model:
        tensors, metadata = text_free(tensors, metadata)
    save_file(tensors, str(target), metadata=metadata)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m directanimator_core.default_model.train",
                                     description="Train the default VAE and DirectAnimator on the synthetic world.")
    parser.add_argument("--out", default="out/default_model", help="run folder (resumes when it exists)")
    parser.add_argument("--quick", action="store_true", help="a few clips and steps (smoke test)")
    parser.add_argument("--stages", nargs="+", default=["vae", "world", "stage1", "stage2"],
                        choices=["vae", "world", "stage1", "stage2"], help="stages to run")
    parser.add_argument("--install", action="store_true", help="copy the results into default_model/weights/")
    parser.add_argument("--eval-pairs", type=int, default=8, help="held-out cross-ID pairs scored into the record (the README's set)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = quick() if args.quick else DEFAULT
    out, start = Path(args.out), time.time()
    record = run_all(recipe, out, args.stages)
    if args.install:
        install(out)
    model_file, vae_file = (MODEL_FILE, VAE_FILE) if args.install else (out / "stage2" / "model.safetensors",
                                                                         out / "vae.safetensors")
    if "stage2" in args.stages and args.eval_pairs > 0:
        record["heldout"] = evaluate_heldout(recipe, model_file, vae_file, args.eval_pairs)
    stage_times = [s.get("wall_s", 0.0) + s.get("clip_wall_s", 0.0) for s in record["stages"].values()]
    record |= {"command": "python -m directanimator_core.default_model.train " + " ".join(argv or sys.argv[1:]),
               "training_wall_s": round(sum(stage_times), 1), "this_invocation_wall_s": round(time.time() - start, 1),
               "torch": torch.__version__, "threads": recipe.threads}
    (out / "record.json").write_text(json.dumps(record, indent=1))
    if args.install:
        RECORD_FILE.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("stages", "heldout") if k in record}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
