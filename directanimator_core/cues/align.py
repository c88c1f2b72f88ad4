"""Alignment of the driver to the reference, StableAnimator-style: one scale and one translation for
the whole clip, taken from the body boxes, so a tall driver can animate a short reference.

StableAnimator aligns the first driving pose to the reference pose and applies that transform to
every frame; with pixel cues the body box stands in for the skeleton: the driver's box in the first
frame where the person is found is scaled to the reference box's height and centred on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .boxes import Box


@dataclass(frozen=True)
class Alignment:
    """x_ref = scale * x_driver + (tx, ty); the cues are rendered on a ``size`` (H, W) canvas."""

    scale: float
    tx: float
    ty: float
    size: tuple[int, int]  # (H, W) of the aligned cues: the reference's size
    driver_box: tuple[float, float, float, float] | None = None  # anchor box the scale was taken from
    reference_box: tuple[float, float, float, float] | None = None
    anchor_frame: int = 0

    @property
    def matrix(self) -> np.ndarray:
        """The map for ``cv2.warpAffine``, (2, 3). Boxes treat pixel i as the span [i, i+1); OpenCV
        puts pixel i at its centre i, so the translation moves by half a pixel each side."""
        return pixel_matrix(self.scale, self.tx, self.ty)

    def apply(self, box: Box) -> Box:
        return np.asarray(box, dtype=np.float64) * self.scale + np.array([self.tx, self.ty, self.tx, self.ty])

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def pixel_matrix(scale: float, tx: float, ty: float) -> np.ndarray:
    """``x' = scale * x + t`` on continuous coordinates, as a warpAffine matrix on pixel centres."""
    shift = 0.5 * scale - 0.5
    return np.array([[scale, 0.0, tx + shift], [0.0, scale, ty + shift]])  # (2, 3)


def identity(height: int, width: int) -> Alignment:
    """No reference: the cues stay in the driver's own frame."""
    return Alignment(1.0, 0.0, 0.0, (height, width))


def align_boxes(driver: Box, reference: Box, size: tuple[int, int], anchor_frame: int = 0) -> Alignment:
    """Scale the driver's body box to the reference's height and put their centres together.

    Args:
        driver: the driver's body box in the anchor frame (driver pixels).
        reference: the reference's body box (reference pixels).
        size: (H, W) of the reference image, the canvas of the aligned cues.
        anchor_frame: index of the driving frame ``driver`` comes from (kept for the report).
    """
    scale = float((reference[3] - reference[1]) / max(driver[3] - driver[1], 1e-6))
    tx = float((reference[0] + reference[2]) / 2 - scale * (driver[0] + driver[2]) / 2)
    ty = float((reference[1] + reference[3]) / 2 - scale * (driver[1] + driver[3]) / 2)
    return Alignment(scale, tx, ty, size, tuple(map(float, driver)), tuple(map(float, reference)), anchor_frame)


def warp(images: np.ndarray, alignment: Alignment, fill: int = 0, nearest: bool = False) -> np.ndarray:
    """Warp (n, H, W[, C]) uint8 images into the aligned canvas (n, H', W'[, C])."""
    height, width = alignment.size
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    fill_value = (fill, fill, fill) if images.ndim == 4 else fill
    return np.stack([cv2.warpAffine(image, alignment.matrix, (width, height), flags=flags,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=fill_value) for image in images])
