"""Location cue: soft body and face masks in the aligned frame.

The paper softens the mask boundaries ("soft grid boundaries") so the driver's outline does not
leak their body shape into the reference: the body mask is max-pooled onto a coarse grid (cells of
``grid`` pixels, the size of one latent patch for Wan's 8x VAE and 2x2 patches) and then blurred.
"""

from __future__ import annotations

import cv2
import numpy as np

from .align import Alignment
from .boxes import Box


def soften(masks: np.ndarray, softness: float, grid: int = 0) -> np.ndarray:
    """Coarsen and blur masks (n, H, W) uint8 0..255; returns the same shape and dtype.

    Args:
        masks: (n, H, W) uint8 masks.
        softness: Gaussian sigma of the edges, in pixels (0 = hard edges).
        grid: cell size in pixels of the max-pool that hides the outline (0 = none).
    """
    out = np.zeros_like(masks)
    for index, mask in enumerate(masks):
        if grid > 1:
            mask = _grid_max(mask, grid)
        if softness <= 0:
            out[index] = mask
            continue
        # Blurred only around the mask: zeros blur to zeros. The region reaches past the kernel's
        # radius (so what is reflected at its edges is zeros) or to the image border (reflected as
        # the whole image's is), so the result equals the whole frame's blur.
        found = cv2.boundingRect(mask)
        if found[2] == 0:
            continue
        x0, y0, x1, y1 = _around(found, int(np.ceil(4 * softness)) + 2, mask.shape)
        out[index, y0:y1, x0:x1] = cv2.GaussianBlur(mask[y0:y1, x0:x1], (0, 0), softness)
    return out


def _around(rect: tuple[int, int, int, int], margin: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of an (x, y, w, h) rectangle grown by ``margin`` pixels, cut at the image."""
    x, y, w, h = rect
    return max(0, x - margin), max(0, y - margin), min(shape[1], x + w + margin), min(shape[0], y + h + margin)


def _grid_max(mask: np.ndarray, grid: int) -> np.ndarray:
    height, width = mask.shape
    cells = cv2.resize(cv2.dilate(mask, np.ones((grid, grid), np.uint8)), (max(1, width // grid), max(1, height // grid)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize((cells > 0).astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_NEAREST)


def face_masks(boxes: np.ndarray, found: np.ndarray, alignment: Alignment, start: int = 0) -> np.ndarray:
    """Filled ellipses at the aligned face boxes (n, H, W) uint8; empty where no face was found.

    Where the alignment knows the reference's own face (``reference_face`` and ``driver_face``), the
    ellipse is that face box, moved by the driver's aligned face motion since ``face_frame`` and scaled
    by its change of size; otherwise it is the driver's face box mapped onto the canvas.

    Args:
        boxes: (n, 4) face boxes in driver pixels, frames ``start`` to ``start + n``.
        found: (n,) bool.
        alignment: driver-to-canvas map.
        start: index of the first of these frames in the clip.
    """
    height, width = alignment.size
    out = np.zeros((len(boxes), height, width), np.uint8)
    for index in np.nonzero(found)[0]:
        box: Box = alignment.apply(boxes[index], start + index)
        if alignment.reference_face is not None and alignment.driver_face is not None:
            box = _reference_face_at(box, alignment)
        centre = (int(round((box[0] + box[2]) / 2)), int(round((box[1] + box[3]) / 2)))
        axes = (max(1, int(round((box[2] - box[0]) / 2))), max(1, int(round((box[3] - box[1]) * 0.6))))
        cv2.ellipse(out[index], centre, axes, 0, 0, 360, 255, -1)
    return out


def _reference_face_at(aligned: Box, alignment: Alignment) -> Box:
    """The reference's face box moved and scaled as the aligned driver face ``aligned`` differs from the
    aligned driver face of frame ``alignment.face_frame``."""
    anchor = alignment.apply(np.asarray(alignment.driver_face), alignment.face_frame)
    reference = np.asarray(alignment.reference_face, dtype=np.float64)
    zoom = np.sqrt(max(aligned[2] - aligned[0], 1e-6) * max(aligned[3] - aligned[1], 1e-6)
                   / max((anchor[2] - anchor[0]) * (anchor[3] - anchor[1]), 1e-6))
    centre = (reference[:2] + reference[2:]) / 2 + (aligned[:2] + aligned[2:]) / 2 - (anchor[:2] + anchor[2:]) / 2
    half = (reference[2:] - reference[:2]) * zoom / 2
    return np.concatenate([centre - half, centre + half])
