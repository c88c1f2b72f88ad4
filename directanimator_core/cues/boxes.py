"""Axis-aligned boxes as float arrays ``(x0, y0, x1, y1)`` in pixels, and the few operations on them."""

from __future__ import annotations

import cv2
import numpy as np

Box = np.ndarray  # (4,) float: x0, y0, x1, y1


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = area(a) + area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def area(box: Box) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def expand(box: Box, factor: float, height: int, width: int) -> Box:
    """Grow a box about its centre by ``factor`` and clip it to the image."""
    c = centre(box)
    half = (box[2:] - box[:2]) * factor / 2
    out = np.concatenate([c - half, c + half])
    return np.clip(out, 0, [width, height, width, height]).astype(np.float64)


def from_xywh(x: float, y: float, w: float, h: float) -> Box:
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of the non-zero pixels of a (H, W) mask, or None when it is empty."""
    marked = mask if mask.dtype == np.uint8 else (mask != 0).view(np.uint8)
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(marked))  # of the non-zero pixels of a uint8 image
    if w == 0:
        return None
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def smooth_runs(boxes: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth boxes (F, 4) over time within each run of valid frames (gaps are not bridged).

    Centre and size are smoothed separately, so a box that jitters by a few pixels holds still while
    a steady move is followed.
    """
    out = boxes.copy()
    if sigma <= 0:
        return out
    cs = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)  # (F, 4) cx cy w h
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    for start, stop in _runs(valid):
        run = cs[start:stop]
        # Odd reflection continues a steady move past the run's ends, so the ends do not lag.
        padded = np.pad(run, ((radius, radius), (0, 0)), mode="reflect", reflect_type="odd") if len(run) > 1 else \
            np.repeat(run, 2 * radius + 1, axis=0)
        weights = np.convolve(np.ones(len(padded)), taps, mode="valid")
        smoothed = np.stack([np.convolve(padded[:, k], taps, mode="valid") for k in range(4)], 1) / weights[:, None]
        out[start:stop] = np.concatenate([smoothed[:, :2] - smoothed[:, 2:] / 2, smoothed[:, :2] + smoothed[:, 2:] / 2], 1)
    return out


def _runs(valid: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for index, flag in enumerate(list(valid) + [False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index))
            start = None
    return runs
