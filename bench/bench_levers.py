"""Why does the cue path stay closed? Short default-model runs with one recipe change each, scored by the
driven-ness bench (default_model/drivenness.py): own, other and blank cues on held-out cross-ID pairs.

The runs share one built world (clips, cache, VAE: ``--world``, a folder the default-model run's
world stage wrote, or that this script writes with ``--build-world``) and train stage 1 (and stage 2
with ``--stage2``) of the recipe with ``--set`` overrides, from its own random start:

    python bench/bench_levers.py --world out/levers/world64 --name base --set stage1_steps=800
    python bench/bench_levers.py --world out/levers/world64 --name fig4 --set stage1_steps=800 figure_weight=4

Each run writes OUT/NAME/driven.json and prints one line: the figure-region PSNR with own, other and
blank cues, the margins, whole-frame PSNR, the IoU, the gates' mean magnitude per block, and the cue
transfer (cue_transfer) at sigma 0.3 / 0.6 / 0.9: does the model's use of cues carry over from a
person's own cues to another person's cues of the same motion?
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from directanimator_core.default_model import VAE_FILE  # noqa: E402
from directanimator_core.default_model.recipe import DEFAULT, Recipe  # noqa: E402

WORLD_FILES = ("same_id", "cross_id", "vae.safetensors", "world.json")


def parse_overrides(items: list[str]) -> dict:
    """["key=value", ...] -> typed Recipe overrides."""
    kinds = {f.name: type(getattr(DEFAULT, f.name)) for f in fields(Recipe)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in kinds:
            raise SystemExit(f"--set {key}: not a Recipe field ({sorted(kinds)})")
        kind = kinds[key]
        out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return out


def build_world(recipe: Recipe, world: Path, vae: Path) -> None:
    from directanimator_core.default_model.same2x_run import stage_world

    world.mkdir(parents=True, exist_ok=True)
    if not (world / "vae.safetensors").is_file():
        shutil.copyfile(vae, world / "vae.safetensors")
    stage_world(recipe, world)


def link_world(world: Path, run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    for name in WORLD_FILES:
        target = run / name
        if not target.exists():
            target.symlink_to((world / name).resolve())


def cue_transfer(model, recipe: Recipe, run: Path, sigmas=(0.3, 0.6, 0.9), batches: int = 3) -> dict:
    """Figure-region denoising loss on the cross-ID training pairs (target A performing M) with A's own
    cues, with the driver's cues (B performing the same M, aligned to A) and with another pair's driver
    cues; ``transfer`` = (other - driver) / (other - own): 1 when the driver's cues help as much as A's
    own, 0 when they help no more than another motion's (the cue use learned does not carry over)."""
    from directanimator_core.default_model.same2x_run import train_config
    from directanimator_core.default_model.world import cue_config
    from directanimator_core.models.conditioning import CueLatents
    from directanimator_core.train.data import ClipDataset, SampleStream, read_manifest
    from directanimator_core.train.loop import clip_fingerprints
    from directanimator_core.train.losses import noisy_latent

    config = train_config(recipe, run, 2)
    dataset = ClipDataset(config.data, clip_fingerprints(config, cue_config(recipe)), recipe.text_dim,
                          read_manifest(config.data.cross_manifest))
    stream, cpu, out = SampleStream(dataset, 123, 8), torch.device("cpu"), {}
    for sigma in sigmas:
        sums = {"own": 0.0, "driver": 0.0, "other": 0.0}
        for step in range(batches):
            batch = stream.batch(step, cpu)
            noise = torch.randn(batch.latent.shape, generator=torch.Generator().manual_seed(step))
            sig = torch.full((batch.latent.shape[0],), sigma)
            x = noisy_latent(batch.latent, noise, sig)
            rolled = CueLatents(**{k: torch.roll(getattr(batch.cross, k), 1, 0) for k in
                                   ("pose", "face", "pose_mask", "face_mask")})
            figure = (batch.figure.amax(1, keepdim=True) > 0).float()
            for name, cues in (("own", batch.cues), ("driver", batch.cross), ("other", rolled)):
                with torch.no_grad():
                    v = model(x, sig * 1000, batch.context, batch.condition(cues))
                error = ((v - (noise - batch.latent)) ** 2).mean(1, keepdim=True)
                sums[name] += float((error * figure).sum() / figure.sum()) / batches
        gap = sums["other"] - sums["own"]
        out[str(sigma)] = {k: round(v, 4) for k, v in sums.items()} | {
            "transfer": round((sums["other"] - sums["driver"]) / gap, 3) if gap > 0 else float("nan")}
    return out


def gate_magnitudes(model) -> list[float]:
    return [round(float(b.gate.abs().mean()), 4) for b in model.adapter.blocks.values()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", required=True, help="built world folder (clips, cache, vae.safetensors)")
    parser.add_argument("--build-world", action="store_true", help="build the world first (with the bundled VAE)")
    parser.add_argument("--out", default="out/levers", help="runs go to OUT/NAME")
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", nargs="*", default=[], help="Recipe overrides key=value")
    parser.add_argument("--stage2", action="store_true", help="also train stage 2 and score it")
    parser.add_argument("--pairs", type=int, default=4, help="held-out pairs scored")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--self-cues", action="store_true",
                        help="also animate with the truth's own cues (drivenness 'self': the same-ID case)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from directanimator_core.default_model.drivenness import heldout_drivenness
    from directanimator_core.default_model.same2x_run import stage_train, write_base
    from directanimator_core.models.checkpoints.adapter import load_model
    from directanimator_core.models.checkpoints.vae import load_wan_vae

    recipe = replace(DEFAULT, **parse_overrides(args.set))
    torch.set_num_threads(recipe.threads)
    world, run = Path(args.world), Path(args.out) / args.name
    if args.build_world:
        build_world(recipe, world, VAE_FILE)
    link_world(world, run)
    (run / "recipe.json").write_text(recipe.to_json())
    start = time.time()
    if not (run / "base.safetensors").is_file():
        write_base(recipe, run / "base.safetensors")
    stages = (1, 2) if args.stage2 else (1,)
    for stage in stages:
        stage_train(recipe, run, stage)
    train_s = time.time() - start
    model = load_model(run / f"stage{stages[-1]}" / "model.safetensors", compute_dtype=torch.float32,
                       num_heads=recipe.num_heads).eval()
    vae = load_wan_vae(run / "vae.safetensors")[0]
    sampler = recipe.sampler(args.steps)
    from directanimator_core.default_model.drivenness import DIAGNOSTIC, VARIANTS

    variants = VARIANTS + (DIAGNOSTIC if args.self_cues else ())
    result = heldout_drivenness(model, vae, recipe, args.pairs, sampler, variants)
    transfer = cue_transfer(model, recipe, run)
    result |= {"overrides": args.set, "stage": stages[-1], "train_s": round(train_s, 1), "gates": gate_magnitudes(model),
               "cue_transfer": transfer}
    (run / "driven.json").write_text(json.dumps(result, indent=1))
    m = result["mean"]
    print(f"{args.name}: fig own {m['own']['fig_psnr']:.2f} other {m['other']['fig_psnr']:.2f} blank "
          f"{m['blank']['fig_psnr']:.2f} copy {m['copy']['fig_psnr']:.2f} warp {m['warp']['fig_psnr']:.2f} | "
          f"own-blank {result['margins']['own_minus_blank']:+.2f} own-other {result['margins']['own_minus_other']:+.2f} | "
          f"whole own {m['own']['psnr']:.2f}/{m['own']['ssim']:.3f} copy {m['copy']['psnr']:.2f} warp {m['warp']['psnr']:.2f} | "
          f"iou own {m['own']['iou']:.2f} blank {m['blank']['iou']:.2f} | gates {result['gates']} | train {train_s:.0f}s | "
          f"transfer {[t['transfer'] for t in transfer.values()]}" +
          (f" | self {m['self']['fig_psnr']:.2f} self-blank {result['margins']['own_minus_blank'] - result['margins']['own_minus_self']:+.2f}"
           if "self" in m else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
