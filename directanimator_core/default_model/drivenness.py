"""Does the driver drive? Held-out pairs animated with their own, another and blank cues (issue 12).

A model can beat the copy and warp baselines on whole-frame scores while ignoring its cues: the
reference already gives the scene, and a blur of the reference figure where the motion starts scores
well. So each held-out cross-ID pair is animated three times, with

    own     its own driver's cues (what the truth performs)
    other   the cues of another held-out pair's driver (another motion), aligned to this reference
    blank   no cue at all: neutral grey pose, black face, empty location masks
    self    (diagnostic, not in VARIANTS) the truth's own cues: the person performing it, in its own frame;
            the same-ID case. Own well below self means the cross-ID cues, not the model, lose the motion

and every video (and the copy / warp baselines, and the truth passed through the VAE: the ceiling of
any latent model, whose figure region tells how many dB a driven model can gain over blank cues at
all) is scored against the exact truth on the whole frame and inside the figure (the truth's person mask, dilated by ``figure_radius`` pixels), plus the IoU of
the figure it shows with the truth's figure. A driven model has own >> blank and own >> other in the
figure region; a cue-blind one has them equal.

The figure a result shows is found against the truth's known background (the synthetic scene rendered
without the figure, moved by the same camera path): pixels whose colour differs from the background by
more than ``FIGURE_THRESHOLD`` (largest channel difference, 3x3 mean) after a 3x3 opening. On the truth
itself this gives IoU ~0.9 with the exact mask (tested), the rest being figure pixels of nearly the
background's colour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import nn

from ..pipeline.single_pass import animate
from ..cues import align
from ..cues.triplet import CueTriplet
from ..models.vae import WanVAE
from ..sampling import SamplerConfig
from ..synth import CrossPair
from ..synth.render import shake
from ..synth.scene import camera_path, render_background
from ..train.cache import POSE_BACKGROUND
from .baselines import copy_reference, warp_reference
from .evaluate import heldout_pair, reference_tensor, to_uint8
from .metrics import SSIM_WINDOW, psnr, ssim, ssim_map
from .recipe import Recipe
from .world import exact_triplet

VARIANTS = ("own", "other", "blank")
DIAGNOSTIC = ("self",)
CEILING = "vae"  # the truth encoded and decoded: no latent model can score above it
METHODS = VARIANTS + ("copy", "warp", CEILING)
FIGURE_THRESHOLD = 24.0  # 8-bit levels; the VAE's background error is ~10 (26 dB)


def figure_radius(height: int) -> int:
    """Dilation of the truth's mask for the figure region: 3 pixels at 64 rows, 4 at 128 (a few pixels)."""
    return max(3, height // 32)


def blank_triplet(triplet: CueTriplet) -> CueTriplet:
    """``triplet`` with every cue emptied (what a driverless frame gives): grey pose, black face, no masks."""
    return replace(triplet, pose=np.full_like(triplet.pose, POSE_BACKGROUND), face=np.zeros_like(triplet.face),
                   body_mask=np.zeros_like(triplet.body_mask), face_mask=np.zeros_like(triplet.face_mask),
                   person=np.zeros_like(triplet.person), face_found=np.zeros_like(triplet.face_found))


def dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """(F, H, W) bool masks grown by ``radius`` pixels (an elliptic structuring element)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


def region_psnr(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Mean over frames with a non-empty region of the PSNR of the region's pixels; (F, H, W, 3), (F, H, W)."""
    values = []
    for r, t, m in zip(result, truth, region):
        if m.any():
            mse = np.mean((r[m].astype(np.float64) - t[m].astype(np.float64)) ** 2)
            values.append(100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return float(np.mean(values)) if values else float("nan")


def region_ssim(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Mean of the SSIM map (metrics.ssim_map, channels averaged) over the region's pixels whose window fits."""
    planes = lambda x: torch.from_numpy(x).double().permute(0, 3, 1, 2).reshape(-1, 1, *x.shape[1:3])  # noqa: E731
    values = ssim_map(planes(result), planes(truth)).reshape(len(result), 3, *ssim_map_size(result)).mean(1)
    border = SSIM_WINDOW // 2
    inner = torch.from_numpy(region[:, border:-border, border:-border])
    return float(values[inner].mean()) if inner.any() else float("nan")


def ssim_map_size(video: np.ndarray) -> tuple[int, int]:
    return video.shape[1] - SSIM_WINDOW + 1, video.shape[2] - SSIM_WINDOW + 1


def truth_background(pair: CrossPair, height: int, width: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the truth's scene without the figure, moved by the truth's camera path."""
    scene = pair.truth.scene
    background = render_background(scene, height, width)
    camera = camera_path(scene, pair.truth.motion.frames)
    return np.stack([np.rint(np.clip(shake(background, c), 0, 255)).astype(np.uint8) for c in camera])


def figure_from_background(video: np.ndarray, background: np.ndarray,
                           threshold: float = FIGURE_THRESHOLD) -> np.ndarray:
    """(F, H, W) bool: where ``video`` differs from the known ``background`` (module docstring)."""
    difference = np.abs(video.astype(np.int16) - background.astype(np.int16)).max(-1).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    out = []
    for d in difference:
        found = (cv2.blur(d, (3, 3)) > threshold).astype(np.uint8)
        out.append(cv2.morphologyEx(found, cv2.MORPH_OPEN, kernel) > 0)
    return np.stack(out)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of |a ∩ b| / |a ∪ b| for (F, H, W) bool masks; a frame where both are empty counts 1."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


@dataclass(frozen=True, eq=False)
class FigureTruth:
    """What a video is scored against: the frames, the figure region and the figure found the same way."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    region: np.ndarray  # (F, H, W) bool, the truth's mask dilated
    background: np.ndarray  # (F, H, W, 3) uint8
    figure: np.ndarray  # (F, H, W) bool, the truth's exact person mask

    @classmethod
    def of(cls, pair: CrossPair) -> "FigureTruth":
        truth = pair.truth.render
        height, width = truth.frames.shape[1:3]
        return cls(truth.frames, dilate(truth.person, figure_radius(height)), truth_background(pair, height, width),
                   truth.person)

    def score(self, video: np.ndarray) -> dict[str, float]:
        """Whole-frame and figure-region PSNR / SSIM and the figure IoU of one (F, H, W, 3) uint8 video."""
        found = figure_from_background(video, self.background)
        return {"psnr": psnr(video, self.frames), "ssim": ssim(video, self.frames),
                "fig_psnr": region_psnr(video, self.frames, self.region),
                "fig_ssim": region_ssim(video, self.frames, self.region), "iou": iou(found, self.figure)}


@dataclass(frozen=True, eq=False)
class DrivenPair:
    """One pair animated with each cue variant: the videos (F, H, W, 3) uint8 and their scores."""

    reference: np.ndarray
    driver: np.ndarray
    truth: np.ndarray
    videos: dict[str, np.ndarray]  # METHODS -> video
    scores: dict[str, dict[str, float]]  # METHODS -> FigureTruth.score


def variant_triplets(pair: CrossPair, other: CrossPair, recipe: Recipe,
                     variants: tuple[str, ...] = VARIANTS + DIAGNOSTIC) -> dict[str, CueTriplet]:
    """The cue triplets of ``pair`` for ``variants`` ("own" always: the baselines use its alignment)."""
    own = exact_triplet(pair.driving.render, recipe, pair.reference_render)
    out = {"own": own}
    if "other" in variants:
        out["other"] = exact_triplet(other.driving.render, recipe, pair.reference_render)
    if "blank" in variants:
        out["blank"] = blank_triplet(own)
    if "self" in variants:
        out["self"] = exact_triplet(pair.truth.render, recipe)
    return out


def run_driven_pair(model: nn.Module, vae: WanVAE, recipe: Recipe, pair: CrossPair, other: CrossPair,
                    sampler: SamplerConfig, variants: tuple[str, ...] = VARIANTS) -> DrivenPair:
    """Animate ``pair`` with each of ``variants`` (same noise), and score them and the baselines.

    Args:
        model: the DirectAnimator model.
        vae: its VAE.
        recipe: sizes and cue settings.
        pair: the held-out pair animated.
        other: the pair whose driver gives the "other" cues (same length and size).
        sampler: steps, solver, seed.
        variants: which of VARIANTS (and DIAGNOSTIC) to animate.
    """
    triplets = variant_triplets(pair, other, recipe, variants)
    reference = reference_tensor(pair.reference)
    truth = FigureTruth.of(pair)
    videos = {name: to_uint8(animate(reference, triplets[name], model, vae, sampler).frames) for name in variants}
    masks = align.warp(pair.driving.render.person.astype(np.uint8) * 255, triplets["own"].alignment, nearest=True)
    videos["copy"] = copy_reference(pair.reference, len(truth.frames))
    videos["warp"] = warp_reference(pair.reference, masks)
    videos[CEILING] = through_vae(vae, truth.frames)
    return DrivenPair(pair.reference, pair.driving.render.frames, truth.frames, videos,
                      {name: truth.score(video) for name, video in videos.items()})


def through_vae(vae: WanVAE, frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 video encoded and decoded by ``vae``: what a perfect latent prediction decodes to."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        return to_uint8(vae.decode(vae.encode(video)))


def heldout_drivenness(model: nn.Module, vae: WanVAE, recipe: Recipe, pairs: int, sampler: SamplerConfig,
                       variants: tuple[str, ...] = VARIANTS) -> dict:
    """Score the first ``pairs`` held-out pairs; "other" cues come from the next pair's driver (cyclically).

    Returns:
        {"pairs": [per-pair scores], "mean": per-method means, "margins": figure-region PSNR margins}.
    """
    if pairs < 2 and "other" in variants:
        raise ValueError("the 'other' cues need at least 2 held-out pairs")
    held = [heldout_pair(recipe, i) for i in range(pairs)]
    rows = [run_driven_pair(model, vae, recipe, held[i], held[(i + 1) % pairs], sampler, variants).scores
            for i in range(pairs)]
    return summarise(rows)


def summarise(rows: list[dict[str, dict[str, float]]]) -> dict:
    """Means over pairs per method and score, the figure-PSNR margins of own cues over the rest, and the
    headroom: the VAE ceiling's figure PSNR over blank cues' (the most own cues could gain over blank)."""
    methods = list(rows[0])
    mean = {m: {k: float(np.nanmean([r[m][k] for r in rows])) for k in rows[0][m]} for m in methods}
    margins = {f"own_minus_{m}": float(np.mean([r["own"]["fig_psnr"] - r[m]["fig_psnr"] for r in rows]))
               for m in methods if m != "own" and "own" in rows[0]}
    out = {"pairs": rows, "mean": mean, "margins": margins}
    if CEILING in methods and "blank" in methods:
        out["headroom_over_blank"] = float(np.mean([r[CEILING]["fig_psnr"] - r["blank"]["fig_psnr"] for r in rows]))
    return out
