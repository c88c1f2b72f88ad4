"""Animate held-out cross-ID pairs with a model and score it and the baselines against exact ground truth.

A held-out pair (synth.cross_id_pair with an odd seed) gives a reference picture of identity A, a
driving clip of identity B performing motion M, and the truth: A performing M. None of A, B, M or
their scenes was trained on (synth.dataset's split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..pipeline.single_pass import animate
from ..cues import align
from ..models.vae import WanVAE
from ..sampling import SamplerConfig
from ..synth import CrossPair, cross_id_pair, split_seed
from .baselines import copy_reference, warp_reference
from .metrics import scores
from .recipe import Recipe
from .world import exact_triplet


def heldout_pair(recipe: Recipe, index: int, frames: Optional[int] = None) -> CrossPair:
    """Held-out cross-ID pair number ``index`` (its seed is split_seed("heldout", 10_000 + index))."""
    return cross_id_pair(split_seed("heldout", 10_000 + index), frames or recipe.frames, recipe.height, recipe.width)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    video = ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).numpy()


def reference_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1


@dataclass(frozen=True, eq=False)
class PairResult:
    """One animated pair: the videos (F, H, W, 3) uint8 and the scores."""

    reference: np.ndarray  # (H, W, 3)
    driver: np.ndarray
    result: np.ndarray
    truth: np.ndarray
    copy: np.ndarray
    warp: np.ndarray
    scores: dict[str, dict[str, float]]  # method -> {"psnr", "ssim"}


def run_pair(model: nn.Module, vae: WanVAE, recipe: Recipe, pair: CrossPair, sampler: SamplerConfig) -> PairResult:
    """Animate ``pair``'s reference with its driver's cues and score it, copy and warp against the truth.

    Args:
        model: the DirectAnimator model (CueFusionDiT).
        vae: its VAE.
        recipe: cue settings (pixel pose or skeleton, ablations) and sizes.
        pair: a cross-ID pair.
        sampler: steps, solver, seed (guidance off: the default model has no text and no cue dropout).
    """
    drive, truth = pair.driving.render, pair.truth.render.frames
    triplet = exact_triplet(drive, recipe, pair.reference_render)
    animation = animate(reference_tensor(pair.reference), triplet, model, vae, sampler)
    result = to_uint8(animation.frames)
    masks = align.warp(drive.person.astype(np.uint8) * 255, triplet.alignment, nearest=True)
    copy, warp = copy_reference(pair.reference, len(truth)), warp_reference(pair.reference, masks)
    return PairResult(pair.reference, drive.frames, result, truth, copy, warp,
                      {name: scores(video, truth) for name, video in (("ours", result), ("copy", copy), ("warp", warp))})


def mean_scores(results: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per method, the mean of each score over pairs."""
    methods = results[0].keys()
    return {m: {k: float(np.mean([r[m][k] for r in results])) for k in results[0][m]} for m in methods}
