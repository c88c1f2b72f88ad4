"""``python -m directanimator_core bench <target>``: speed and memory figures, printed by bench/ scripts.

The scripts live in the repository's ``bench/`` folder, outside the core, because they import other
software to compare against (ComfyUI); this command only checks what a target needs and runs its
script in a fresh interpreter. A target is one row of TARGETS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@dataclass(frozen=True)
class Target:
    help: str
    script: str  # file in bench/
    needs_comfyui: bool = False  # found through $COMFYUI_PATH


TARGETS: dict[str, Target] = {
    "dit": Target("our Wan DiT against ComfyUI's WanModel in fp32, bf16 and as each runs a bf16 file on the CPU: "
                  "forward time ratio, output difference, distance from fp32; peak RAM of an fp8 checkpoint load",
                  "bench_dit.py", needs_comfyui=True),
    "offload": Target("Wan 1.3B/5B/14B placement, predicted peak VRAM and PCIe bytes per step for 8-80 GB "
                      "budgets; on CUDA, streamed vs resident step time", "bench_offload.py"),
    "vae": Target("Wan 2.1 VAE: load RAM, encode/decode time against ComfyUI's WanVAE, chunked vs one-pass "
                  "memory", "bench_vae.py"),
    "cues": Target("cue triplet frames per second per backend at 512x512 and 832x480; peak RSS for 1,000 "
                   "frames", "bench_cues.py"),
    "windows": Target("long-video host memory of the windowed latent path as the clip grows", "bench_windows.py"),
    "train": Target("trainer seconds per step and peak memory: adapter / LoRA / full, checkpointing, "
                    "stage 1 vs 2", "bench_train.py"),
    "same2x": Target("Same2X on a toy: stage-2 loss with and without L_S2X, loss-curve plot", "bench_same2x.py"),
    "synth": Target("synthetic-world rendering speed and a contact sheet", "bench_synth.py"),
    "driven": Target("is the bundled model driven? held-out pairs with own, another driver's and blank cues: "
                     "whole-frame and figure-region PSNR/SSIM, figure IoU", "bench_driven.py"),
    "levers": Target("short default-model runs, one recipe change each, scored for driven-ness", "bench_levers.py"),
    "repro": Target("the reproduction table on held-out synthetic cross-ID pairs (PSNR, SSIM)", "bench_repro.py"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("script_args", nargs=argparse.REMAINDER,
                        help="options passed to the target's script (see bench/<script> --help)")


def run(args: argparse.Namespace) -> int:
    target = TARGETS[args.target]
    script = BENCH_DIR / target.script
    if not script.is_file():
        print(f"error: bench {args.target} needs {script}, which is missing: run from a checkout of the pack",
              file=sys.stderr)
        return 2
    if target.needs_comfyui and not os.environ.get("COMFYUI_PATH"):
        print(f"bench {args.target} compares against ComfyUI: set COMFYUI_PATH to a ComfyUI checkout", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, str(script), *args.script_args]).returncode
