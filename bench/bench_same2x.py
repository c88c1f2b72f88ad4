"""Same2X on a toy: stage 1, then stage 2 with and without L_S2X, on synthetic moving-figure clips; prints
the stage-2 denoising loss of both runs and writes the loss-curve PNG (train/plot.py).

    python bench/bench_same2x.py [--out /tmp/same2x] [--stage1 100] [--stage2 100] [--threads 1]

The clips are pairs of identities (colours, body widths) doing the same walk, so each has a cross-ID
partner with exactly the same motion. The model is a tiny image-to-video Wan DiT (random init) with a
CueFusion adapter; the VAE is the Wan VAE's structure at width 8, random weights. The figures say
whether the pipeline learns and how the two stage-2 runs compare on this toy, not what the paper's
6.7x means on real video.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.models.checkpoints.backbone import BACKBONE_METADATA  # noqa: E402
from directanimator_core.models.config import BackboneConfig  # noqa: E402
from directanimator_core.models.vae import TINY_VAE, build_vae  # noqa: E402
from directanimator_core.models.wan_dit import build_backbone, init_weights  # noqa: E402
from directanimator_core.train.config import (  # noqa: E402
    DataConfig, ModelConfig, OptimConfig, RunConfig, Same2XConfig, TrainConfig)
from directanimator_core.train.loop import train  # noqa: E402
from directanimator_core.train.plot import plot_losses, read_loss_log  # noqa: E402

BACKBONE = BackboneConfig(dim=64, ffn_dim=128, num_layers=4, num_heads=4, text_dim=16, in_dim=36)
FRAMES, SIZE = 9, 64


def walker(identity: int, motion: int) -> np.ndarray:
    """(F, H, W, 3) uint8: a figure of ``identity``'s colours and build walking path ``motion``."""
    rng = np.random.default_rng(identity)
    body, head = (tuple(int(c) for c in rng.integers(110, 255, 3)) for _ in range(2))
    width, background = int(rng.integers(5, 10)), rng.integers(20, 70, 3)
    path = np.random.default_rng(1000 + motion)
    x0, dx, y0 = int(path.integers(12, 24)), int(path.integers(2, 4)), int(path.integers(30, 40))
    out = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for f in range(FRAMES):
        out[f] = background
        x, y = x0 + f * dx, y0 + (f % 2)
        cv2.ellipse(out[f], (x, y), (width, 15), 0, 0, 360, body, -1)
        cv2.circle(out[f], (x, y - 19), 6, head, -1)
    return out


def write_assets(root: Path, motions: int) -> dict[str, Path]:
    pairs = []
    for motion in range(motions):
        for identity in (0, 1):
            folder = root / "clips" / f"m{motion}_id{identity}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(walker(identity + 2 * motion, motion)):
                cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        pairs += [{"target": f"m{motion}_id0", "driving": f"m{motion}_id1"},
                  {"target": f"m{motion}_id1", "driving": f"m{motion}_id0"}]
    (root / "pairs.json").write_text(json.dumps(pairs))
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in build_vae(TINY_VAE).state_dict().items()}, str(root / "vae.safetensors"))
    model = init_weights(build_backbone(BACKBONE, torch.device("cpu")), torch.Generator().manual_seed(0))
    torch.nn.init.normal_(model.head.head.weight, std=0.02)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "dit.safetensors"),
              metadata={BACKBONE_METADATA: BACKBONE.to_json()})
    return {"clips": root / "clips", "pairs": root / "pairs.json", "vae": root / "vae.safetensors",
            "dit": root / "dit.safetensors"}


def config(root: Path, files: dict[str, Path], name: str, steps: int, stage: int = 1, weight: float = 0.5,
           start: Path | None = None) -> TrainConfig:
    """Stage 1 from the base model, or stage 2 from the stage-1 run folder ``start`` (its adapter and LoRA)."""
    return TrainConfig(
        data=DataConfig(clips=str(files["clips"]), cache=str(root / "cache"), vae=str(files["vae"]), frames=FRAMES,
                        height=SIZE, width=SIZE, cross_manifest=str(files["pairs"]), text_tokens=4),
        model=ModelConfig(backbone=str(files["dit"]), num_heads=4, train="lora", lora_rank=8,
                          adapter=str(start / "adapter.safetensors") if start else None,
                          lora=str(start / "lora.safetensors") if start else None),
        same2x=Same2XConfig(stage=stage, depth=2, weight=weight, teacher_dtype="fp32"),
        optim=OptimConfig(lr=2e-3),
        run=RunConfig(out=str(root / name), steps=steps, batch_size=4, precision="fp32", checkpoint_every=steps,
                      device="cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/same2x_bench")
    parser.add_argument("--motions", type=int, default=4)
    parser.add_argument("--stage1", type=int, default=100)
    parser.add_argument("--stage2", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    root = Path(args.out)
    files = write_assets(root, args.motions)
    start = time.perf_counter()
    stage1 = train(config(root, files, "stage1", args.stage1))
    print(f"stage 1: {args.stage1} steps in {time.perf_counter() - start:.0f} s (cache prepared first)")
    runs = [stage1.out]
    for name, weight in (("stage2_same2x", 0.5), ("stage2_plain", 0.0)):
        begin = time.perf_counter()
        out = train(config(root, files, name, args.stage2, 2, weight, stage1.out)).out
        runs.append(out)
        rows = read_loss_log(out / "loss.csv")
        tail = rows[-max(len(rows) // 5, 1):]
        s2x = [r["same2x"] for r in tail if r["same2x"] is not None]
        print(f"{name:14} λ={weight:<4g} denoise (mean of last 20%) {np.mean([r['denoise'] for r in tail]):.4f}"
              + (f"  L_S2X {np.mean(s2x):.4f}" if s2x else "") + f"  {time.perf_counter() - begin:.0f} s")
    png = plot_losses([out / "loss.csv" for out in runs], root / "same2x_curves.png")
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
