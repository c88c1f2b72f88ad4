"""Does a VAE lever lift the figure ceiling? The bundled VAE fine-tuned, scored on the held-out truths.

    python bench/bench_vae_levers.py [--steps 200] [--figure-weight 4] [--size 128] [--clips 96] [--every 100]
                                     [--pairs 8] [--out out/vae_levers/vae.safetensors]

The ceiling is drivenness' ``vae`` row: each held-out cross-ID truth encoded and decoded, scored on the whole
frame and in the figure region (PSNR, and the IoU of the figure found against the known background). The
fine-tune (encoder and decoder, AdamW, warm-up then cosine) draws 5-frame windows and, one step in four,
whole clips of training-split clips rendered at ``--size``, cropped to 64 pixels, with the reconstruction
loss weighted ``1 + figure_weight`` on the person (vae_train.figure_weights). It prints the ceiling before
and every ``--every`` steps, and saves the VAE there (a stop keeps the last one).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from directanimator_core.default_model import VAE_FILE  # noqa: E402
from directanimator_core.default_model import vae_train  # noqa: E402
from directanimator_core.default_model.drivenness import FigureTruth, through_vae  # noqa: E402
from directanimator_core.default_model.evaluate import heldout_pair  # noqa: E402
from directanimator_core.default_model.recipe import DEFAULT  # noqa: E402
from directanimator_core.models.checkpoints.vae import load_wan_vae  # noqa: E402
from directanimator_core.synth import same_id_clip, split_seed  # noqa: E402

CROP, LR, WINDOW = 64, 2e-4, 5


def ceiling(vae, truths: list[FigureTruth]) -> dict[str, float]:
    scores = [t.score(through_vae(vae, t.frames)) for t in truths]
    return {k: round(float(np.mean([s[k] for s in scores])), 3) for k in ("psnr", "fig_psnr", "iou")}


def clips_with_masks(count: int, size: int) -> np.ndarray:
    """(N, F, H, W, 4) uint8: training-split clips with the person mask as a fourth channel (crops keep both)."""
    clips = [same_id_clip(split_seed("train", 10_000 + i), DEFAULT.frames, size, size).render for i in range(count)]
    return np.stack([np.concatenate([c.frames, c.person[..., None].astype(np.uint8) * 255], -1) for c in clips])


def finetune_step(vae, optimizer, data: np.ndarray, generator: torch.Generator, step: int, args) -> dict[str, float]:
    whole = step % 4 == 3
    batch = vae_train.draw_batch(data, replace(DEFAULT, vae_crop=CROP), generator, DEFAULT.frames if whole else WINDOW,
                                 2 if whole else 4)  # (B, 4, f, c, c) in [-1, 1]
    weight = vae_train.figure_weights((batch[:, 3] + 1) / 2, args.figure_weight)
    losses = vae_train.vae_losses(vae, batch[:, :3], generator, weight)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    optimizer.step()
    return {k: round(float(v.detach()), 4) for k, v in losses.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--figure-weight", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "vae_levers" / "vae.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    vae = load_wan_vae(VAE_FILE)[0].float().eval()
    truths = [FigureTruth.of(heldout_pair(DEFAULT, i)) for i in range(args.pairs)]
    print("bundled VAE:", ceiling(vae, truths), flush=True)
    data, generator = clips_with_masks(args.clips, args.size), torch.Generator().manual_seed(7)
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=LR, weight_decay=0.0)
    start = time.time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / 50) * (0.55 + 0.45 * np.cos(np.pi * step / args.steps))
        losses = finetune_step(vae, optimizer, data, generator, step, args)
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            vae.eval()
            print(f"step {step + 1} ({time.time() - start:.0f} s): {ceiling(vae, truths)} losses {losses}", flush=True)
            vae_train.save_vae(vae, args.out)
            vae.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
