"""Alignment of the driver to the reference: one scale for the clip, a translation that is fixed or
follows the driver, so a tall driver can animate a short reference and a walker can animate a portrait.

Modes (config.AlignConfig):
- ``fixed`` (StableAnimator): the driver's box in the first frame where the person is found is scaled
  to the reference box's height and centred on it, and that one map serves every frame: a static
  camera, the driver may walk (and leave the reference's picture).
- ``in-place``: the same scale; each frame's translation follows the driver's body box centre,
  smoothed over time, so the driver stays where the reference stands and only quicker moves show.
- ``face``: scaled by the parts both pictures show: the face boxes (height and width), the driver's
  face put on the reference's; where either has no face, the body boxes' widths (about the shoulder
  width, in a full-body and a half-body picture alike) with the tops put together.
- ``face-in-place``: the face framing, kept in place as ``in-place`` does.
With pixel cues the boxes stand in for StableAnimator's skeletons.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import cv2
import numpy as np

from .boxes import Box

BoxTuple = tuple[float, float, float, float]


@dataclass(frozen=True)
class Alignment:
    """x_ref = scale * x_driver + (tx, ty) + shifts[i] in frame i; cues are rendered on a ``size`` (H, W) canvas.

    ``shifts`` (F, 2) is the per-frame extra translation of the in-place modes (None: one map for all
    frames). ``reference_face`` and ``driver_face`` (the driver's face in frame ``face_frame``), when both
    are known, place the location cue's face mask: the reference's own face box, moved and scaled as the
    driver's aligned face moves from ``face_frame`` on.
    """

    scale: float
    tx: float
    ty: float
    size: tuple[int, int]  # (H, W) of the aligned cues: the reference's size
    driver_box: Optional[BoxTuple] = None  # anchor box the scale was taken from
    reference_box: Optional[BoxTuple] = None
    anchor_frame: int = 0
    mode: str = "fixed"
    framing: str = "body"  # what the scale came from: "body" (heights), "face", "width" (face missing)
    shifts: Optional[np.ndarray] = field(default=None, compare=False, repr=False)  # (F, 2) float64
    reference_face: Optional[BoxTuple] = None
    driver_face: Optional[BoxTuple] = None
    face_frame: int = 0

    def translation(self, index: int = 0) -> tuple[float, float]:
        if self.shifts is None or len(self.shifts) == 0:
            return self.tx, self.ty
        dx, dy = self.shifts[min(max(index, 0), len(self.shifts) - 1)]
        return self.tx + float(dx), self.ty + float(dy)

    @property
    def matrix(self) -> np.ndarray:
        """The map of frame 0 for ``cv2.warpAffine``, (2, 3) (see ``matrix_at``)."""
        return self.matrix_at(0)

    def matrix_at(self, index: int) -> np.ndarray:
        """The map of frame ``index`` for ``cv2.warpAffine``, (2, 3). Boxes treat pixel i as the span
        [i, i+1); OpenCV puts pixel i at its centre i, so the translation moves by half a pixel each side."""
        return pixel_matrix(self.scale, *self.translation(index))

    def apply(self, box: Box, index: int = 0) -> Box:
        """``box`` (4,) of driver frame ``index`` on the canvas."""
        tx, ty = self.translation(index)
        return np.asarray(box, dtype=np.float64) * self.scale + np.array([tx, ty, tx, ty])

    def as_dict(self) -> dict:
        out = {}
        for name in ("scale", "tx", "ty", "size", "driver_box", "reference_box", "anchor_frame", "mode", "framing",
                     "reference_face", "driver_face", "face_frame"):
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["shifts"] = None if self.shifts is None else np.round(self.shifts, 2).tolist()
        return out


def pixel_matrix(scale: float, tx: float, ty: float) -> np.ndarray:
    """``x' = scale * x + t`` on continuous coordinates, as a warpAffine matrix on pixel centres."""
    shift = 0.5 * scale - 0.5
    return np.array([[scale, 0.0, tx + shift], [0.0, scale, ty + shift]])  # (2, 3)


def identity(height: int, width: int) -> Alignment:
    """No reference: the cues stay in the driver's own frame."""
    return Alignment(1.0, 0.0, 0.0, (height, width))


def _tuple(box: Optional[Box]) -> Optional[BoxTuple]:
    return None if box is None else tuple(map(float, box))


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


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
    return Alignment(scale, tx, ty, size, _tuple(driver), _tuple(reference), anchor_frame)


def align_faces(driver_face: Box, reference_face: Box, driver_body: Box, reference_body: Box,
                size: tuple[int, int], anchor_frame: int = 0) -> Alignment:
    """Scale by the face boxes (geometric mean of the height and width ratios) and put the face centres
    together: what a full-body driver and a half-body reference both show.

    Args:
        driver_face: the driver's face box in the anchor frame (driver pixels).
        reference_face: the reference's face box (reference pixels).
        driver_body: the driver's body box, kept for the report.
        reference_body: the reference's body box, kept for the report.
        size: (H, W) of the canvas.
        anchor_frame: the driving frame the driver's boxes come from.
    """
    ratio_h = (reference_face[3] - reference_face[1]) / max(driver_face[3] - driver_face[1], 1e-6)
    ratio_w = (reference_face[2] - reference_face[0]) / max(driver_face[2] - driver_face[0], 1e-6)
    scale = float(np.sqrt(ratio_h * ratio_w))
    tx, ty = _centre(reference_face) - scale * _centre(driver_face)
    return Alignment(scale, float(tx), float(ty), size, _tuple(driver_body), _tuple(reference_body), anchor_frame,
                     framing="face")


SHOULDER_BAND = 0.9  # the shoulder band's depth below the top of the head, in shoulder widths


def shoulder_width(mask: np.ndarray) -> Optional[float]:
    """The width of a person mask's head-and-shoulders band, or None for an empty mask: the extent of
    the rows from the top of the head down to SHOULDER_BAND times that width (a fixed point, found in a
    few steps from the whole box's width). It is about the shoulders' width whether the picture shows
    the whole body (a walker's stride and swinging hands widen the whole box, not this band) or half.

    Args:
        mask: (H, W) person mask, non-zero = person.
    """
    rows = np.nonzero(np.asarray(mask).any(axis=1))[0]
    if len(rows) == 0:
        return None
    filled = np.asarray(mask)[rows[0]:rows[-1] + 1] > 0
    cols = np.nonzero(filled.any(axis=0))[0]
    width = float(cols[-1] + 1 - cols[0])
    for _ in range(8):
        band = filled[:max(1, int(round(SHOULDER_BAND * width)))]
        cols = np.nonzero(band.any(axis=0))[0]
        width, last = float(cols[-1] + 1 - cols[0]), width
        if width == last:
            break
    return width


def align_widths(driver: Box, reference: Box, size: tuple[int, int], anchor_frame: int = 0,
                 driver_width: Optional[float] = None, reference_width: Optional[float] = None) -> Alignment:
    """The face framing's fallback: scale by the shoulder widths (``shoulder_width``; the body boxes'
    widths where a mask is missing), centres put together across, tops (heads) put together.

    Args:
        driver: the driver's body box in the anchor frame.
        reference: the reference's body box.
        size: (H, W) of the canvas.
        anchor_frame: the driving frame ``driver`` comes from.
        driver_width: the driver's shoulder width, when known.
        reference_width: the reference's shoulder width, when known.
    """
    if driver_width is None or reference_width is None:
        driver_width, reference_width = driver[2] - driver[0], reference[2] - reference[0]
    scale = float(reference_width / max(driver_width, 1e-6))
    tx = float((reference[0] + reference[2]) / 2 - scale * (driver[0] + driver[2]) / 2)
    ty = float(reference[1] - scale * driver[1])
    return Alignment(scale, tx, ty, size, _tuple(driver), _tuple(reference), anchor_frame, framing="width")


def smooth_path(points: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Points (F, 2) filled in where not ``valid`` (linearly between valid frames, held past the ends) and
    Gaussian-smoothed over time with sigma ``sigma`` frames; a steady move is kept exactly (odd reflection
    at the ends), so only what is faster than about ``sigma`` frames is smoothed away.

    Args:
        points: (F, 2) positions; rows where ``valid`` is False are ignored.
        valid: (F,) bool, at least one True.
        sigma: Gaussian sigma in frames (0: no smoothing).
    """
    frames = np.arange(len(points))
    known = np.nonzero(valid)[0]
    filled = np.stack([np.interp(frames, known, points[known, k]) for k in range(points.shape[1])], 1)  # (F, 2)
    if sigma <= 0 or len(points) < 2:
        return filled
    radius = min(int(3 * sigma), len(points) - 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(filled, ((radius, radius), (0, 0)), mode="reflect", reflect_type="odd")
    return np.stack([np.convolve(padded[:, k], taps, mode="valid") for k in range(points.shape[1])], 1)


def keep_in_place(alignment: Alignment, body_boxes: np.ndarray, valid: np.ndarray, sigma: float) -> Alignment:
    """``alignment`` with per-frame shifts that hold the driver's smoothed body centre where it was in the
    anchor frame (there, on the reference's body or face); the scale is unchanged.

    Args:
        alignment: the fixed map, anchored at ``alignment.anchor_frame``.
        body_boxes: (F, 4) the driver's body boxes (driver pixels); rows not ``valid`` are ignored.
        valid: (F,) bool, the person was found.
        sigma: smoothing of the followed centre, in frames.
    """
    if not np.asarray(valid).any() or not np.isfinite(body_boxes[alignment.anchor_frame]).all():
        return alignment  # nobody to follow: the fixed map
    centres = (body_boxes[:, :2] + body_boxes[:, 2:]) / 2  # (F, 2)
    path = smooth_path(np.nan_to_num(centres), valid, sigma)
    anchor = centres[alignment.anchor_frame]
    shifts = alignment.scale * (anchor[None] - path)  # (F, 2): the smoothed centre lands where the anchor's did
    return replace(alignment, shifts=shifts)


def with_faces(alignment: Alignment, reference_face: Optional[Box], driver_face: Optional[Box],
               face_frame: int) -> Alignment:
    """``alignment`` that places the face mask from the reference's own face (see Alignment)."""
    if reference_face is None or driver_face is None:
        return alignment
    return replace(alignment, reference_face=_tuple(reference_face), driver_face=_tuple(driver_face),
                   face_frame=int(face_frame))


def inside_fraction(box: Box, size: tuple[int, int]) -> float:
    """The share of ``box``'s area on a (H, W) canvas (0 for an empty box)."""
    height, width = size
    full = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    if full <= 0:
        return 0.0
    inside = max(min(box[2], width) - max(box[0], 0.0), 0.0) * max(min(box[3], height) - max(box[1], 0.0), 0.0)
    return float(inside / full)


def warp(images: np.ndarray, alignment: Alignment, fill: int = 0, nearest: bool = False, start: int = 0) -> np.ndarray:
    """Warp (n, H, W[, C]) uint8 images, driving frames ``start`` to ``start + n``, into the aligned
    canvas (n, H', W'[, C])."""
    height, width = alignment.size
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    fill_value = (fill, fill, fill) if images.ndim == 4 else fill
    return np.stack([cv2.warpAffine(image, alignment.matrix_at(start + k), (width, height), flags=flags,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=fill_value)
                     for k, image in enumerate(images)])
