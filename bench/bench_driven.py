"""Is the bundled default model driven by its cues? Held-out cross-ID pairs animated with their own
driver's cues, another held-out driver's cues and blank cues, scored against the exact truth on the
whole frame and in the figure region (default_model/drivenness.py), beside the copy and warp baselines:

    python bench/bench_driven.py --pairs 8            # the README's held-out set
    python bench/bench_driven.py --model M --vae V --recipe RUN/recipe.json

Prints one table row per method (mean over pairs; "vae" is the truth through the VAE, the ceiling), the
figure-PSNR margins and the headroom over blank cues; --json writes it all.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def table(result: dict) -> str:
    keys = ("psnr", "ssim", "fig_psnr", "fig_ssim", "iou")
    lines = ["| method | PSNR | SSIM | figure PSNR | figure SSIM | figure IoU |", "|---|---|---|---|---|---|"]
    for method, scores in result["mean"].items():
        lines.append(f"| {method} | " + " | ".join(f"{scores[k]:.3f}" if "ssim" in k or k == "iou" else
                                                     f"{scores[k]:.2f}" for k in keys) + " |")
    margins = ", ".join(f"{k} {v:+.2f} dB" for k, v in result["margins"].items())
    text = "\n".join(lines) + f"\nfigure-region PSNR margins: {margins}"
    if "headroom_over_blank" in result:
        text += (f"\nheadroom (the VAE ceiling's figure PSNR over blank cues', the most any latent model gains): "
                 f"{result['headroom_over_blank']:+.2f} dB")
    return text


def main() -> int:
    from directanimator_core.default_model import MODEL_FILE, VAE_FILE
    from directanimator_core.default_model.drivenness import heldout_drivenness
    from directanimator_core.default_model.recipe import Recipe
    from directanimator_core.demo import load_default

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8, help="held-out cross-ID pairs (the README's set: 8)")
    parser.add_argument("--steps", type=int, default=20, help="Euler sampling steps")
    parser.add_argument("--model", default=str(MODEL_FILE))
    parser.add_argument("--vae", default=str(VAE_FILE))
    parser.add_argument("--recipe", default=None, help="recipe.json of the run (default: the bundled record's)")
    parser.add_argument("--cue-cfg", type=float, default=None, help="cue guidance (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the full result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, vae, recipe = load_default(Path(args.model), Path(args.vae))
    if args.recipe:
        recipe = Recipe(**json.loads(Path(args.recipe).read_text()))
    if args.cue_cfg is not None:
        recipe = replace(recipe, cue_cfg=args.cue_cfg)
    sampler = recipe.sampler(args.steps)
    start = time.time()
    result = heldout_drivenness(model, vae, recipe, args.pairs, sampler)
    print(table(result))
    print(f"{args.pairs} pairs, {args.steps} steps, cue_cfg {recipe.cue_cfg}, {time.time() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
