"""``python -m directanimator_core demo``: the main job on the bundled default model, no download, on a CPU.

It animates a held-out reference figure with a held-out motion performed by a different identity
(synth.cross_id_pair with a held-out seed: neither figure, the motion nor the scenes were trained
on), using the committed default model and VAE (default_model/weights/), and writes to ``--out``:

    result.mp4         the animation
    side_by_side.mp4   reference | driver | result | ground truth (4x enlarged)
    metrics.json       PSNR / SSIM against the exact ground truth, for the result and for the
                       copy-the-reference and warp-the-reference baselines, and the VAE's ceiling;
                       "driven": whole-frame and figure-region scores (default_model/drivenness.py) and,
                       with --driven, of the same pair animated again with another held-out driver's
                       cues and with blank cues, and the result's margins over them (a cue-blind
                       model has ~0 margins)
    comfyui_input/     the same pair for workflows/directanimator_demo.json: the reference picture,
                       the driver video and the driver's exact mask (copy them into ComfyUI's input/)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import CheckpointError

log = logging.getLogger(__name__)

FPS = 8.0


def enlarge(height: int) -> int:
    """Side-by-side scale: 4x for 64-pixel frames, 2x for 128 (small frames are small on a screen)."""
    return max(1, 256 // height)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.add_argument("--pair", type=int, default=0, help="which held-out cross-ID pair (0, 1, 2...)")
    parser.add_argument("--frames", type=int, default=None, help="frames to animate, 4n + 1 (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--model", default=None, help="DirectAnimator model file (default: the bundled one)")
    parser.add_argument("--vae", default=None, help="VAE file (default: the bundled one)")
    parser.add_argument("--driven", action="store_true",
                        help="also the driven-ness check: the pair again with another driver's and with blank cues "
                             "(two more animations: about a minute more on a CPU)")


def load_default(model_path: Path, vae_path: Path):
    """The bundled model and VAE (fp32, CPU) and the recipe they were trained with."""
    from .default_model import RECORD_FILE
    from .default_model.recipe import DEFAULT, Recipe
    from .models.checkpoints.adapter import load_model
    from .models.checkpoints.vae import load_wan_vae

    for path in (model_path, vae_path):
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist: the default model ships in directanimator_core/default_model/"
                                  "weights/ (train it with python -m directanimator_core.default_model.train --install)")
    recipe = DEFAULT
    if RECORD_FILE.is_file():
        recipe = Recipe(**json.loads(RECORD_FILE.read_text())["recipe"])
    model = load_model(model_path, compute_dtype=torch.float32).eval()
    return model, load_wan_vae(vae_path)[0], recipe


def write_video(path: Path, frames: np.ndarray, scale: int = 1) -> Path:
    """(F, H, W, 3) uint8 RGB -> an mp4 (mp4v), enlarged ``scale`` times with nearest pixels."""
    height, width = frames.shape[1] * scale, frames.shape[2] * scale
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_comfyui_inputs(folder: Path, reference: np.ndarray, reference_mask: np.ndarray, driver: np.ndarray,
                         mask: np.ndarray) -> Path:
    """The demo pair as the demo workflow's input files (names as in workflows/directanimator_demo.json).

    Args:
        folder: where to write them.
        reference: (H, W, 3) uint8 reference picture.
        reference_mask: (H, W) bool mask of the figure in the reference (white on black PNG).
        driver: (F, H, W, 3) uint8 driving frames.
        mask: (F, H, W) bool driver mask.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "directanimator_demo_reference.png"), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "directanimator_demo_reference_mask.png"), reference_mask.astype(np.uint8) * 255)
    write_video(folder / "directanimator_demo_driving.mp4", driver)
    write_video(folder / "directanimator_demo_driving_mask.mp4", np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1))
    return folder


def side_by_side(reference: np.ndarray, driver: np.ndarray, result: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(F, H, 4W, 3): reference | driver | result | ground truth, frame by frame."""
    return np.concatenate([np.broadcast_to(reference, truth.shape), driver, result, truth], axis=2)


def write_still(path: Path, video: np.ndarray, count: int = 3, scale: int = 1) -> Path:
    """``count`` evenly spaced frames of a (F, H, W, 3) video stacked top to bottom as one PNG (a still to
    look at without a player), enlarged ``scale`` times with nearest pixels."""
    picks = np.linspace(0, len(video) - 1, count).round().astype(int)
    still = np.concatenate([video[i] for i in picks], axis=0)
    still = cv2.resize(still, (still.shape[1] * scale, still.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    return path


def run(args: argparse.Namespace) -> int:
    from .default_model import MODEL_FILE, VAE_FILE
    from .default_model.drivenness import run_driven_pair, summarise
    from .default_model.evaluate import heldout_pair

    start = time.time()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    model, vae, recipe = load_default(Path(args.model or MODEL_FILE), Path(args.vae or VAE_FILE))
    pair = heldout_pair(recipe, args.pair, args.frames)
    sampler = recipe.sampler(args.steps, seed=args.seed)
    variants = ("own", "other", "blank") if args.driven else ("own",)
    driven = run_driven_pair(model, vae, recipe, pair, heldout_pair(recipe, args.pair + 1, args.frames), sampler, variants)
    result = driven.videos["own"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_video(out / "result.mp4", result)
    panels = side_by_side(driven.reference, driven.driver, result, driven.truth)
    scale = enlarge(result.shape[1])
    write_video(out / "side_by_side.mp4", panels, scale)
    write_still(out / "side_by_side.png", panels, scale=scale // 2 or 1)
    write_comfyui_inputs(out / "comfyui_input", pair.reference, pair.reference_render.person[0],
                         pair.driving.render.frames, pair.driving.render.person)
    metrics = {
        "pair": {"index": args.pair, "seed": pair_seed(args.pair), "split": "heldout",
                 "identity_reference": pair.truth.identity.seed, "identity_driver": pair.driving.identity.seed,
                 "motion": pair.truth.motion.seed, "motion_kind": pair.truth.motion.kind},
        "frames": int(len(driven.truth)), "size": list(driven.truth.shape[1:3]), "steps": args.steps,
        "seed": args.seed, "scores": whole_frame_scores(driven.scores),
        "driven": {k: v for k, v in summarise([driven.scores]).items() if k != "pairs"},
        "vae_ceiling": {k: driven.scores["vae"][k] for k in ("psnr", "ssim")}, "wall_s": round(time.time() - start, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name, s in driven.scores.items():
        print(f"{name:>5}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  figure PSNR {s['fig_psnr']:.2f} dB  "
              f"figure IoU {s['iou']:.2f}")
    if args.driven:
        print("driven-ness (figure PSNR, own cues minus): " +
              ", ".join(f"{k[len('own_minus_'):]} {v:+.2f} dB" for k, v in metrics["driven"]["margins"].items()) +
              (f"; the VAE ceiling is {metrics['driven']['headroom_over_blank']:+.2f} dB over blank"
               if "headroom_over_blank" in metrics["driven"] else ""))
    print(f"wrote {out}/result.mp4, side_by_side.mp4 (reference | driver | result | truth), side_by_side.png "
          "(first, middle, last frame), metrics.json")
    return 0


def whole_frame_scores(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of the result ("ours": own cues) and the two baselines, as earlier metrics.json files had."""
    names = {"own": "ours", "copy": "copy", "warp": "warp"}
    return {new: {k: scores[old][k] for k in ("psnr", "ssim")} for old, new in names.items()}


def pair_seed(index: int) -> int:
    from .synth import split_seed

    return split_seed("heldout", 10_000 + index)
