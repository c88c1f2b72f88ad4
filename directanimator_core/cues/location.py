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
    out = np.empty_like(masks)
    for index, mask in enumerate(masks):
        if grid > 1:
            mask = _grid_max(mask, grid)
        out[index] = cv2.GaussianBlur(mask, (0, 0), softness) if softness > 0 else mask
    return out


def _grid_max(mask: np.ndarray, grid: int) -> np.ndarray:
    height, width = mask.shape
    cells = cv2.resize(cv2.dilate(mask, np.ones((grid, grid), np.uint8)), (max(1, width // grid), max(1, height // grid)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize((cells > 0).astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_NEAREST)


def face_masks(boxes: np.ndarray, found: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Filled ellipses at the aligned face boxes (n, H, W) uint8; empty where no face was found.

    Args:
        boxes: (n, 4) face boxes in driver pixels.
        found: (n,) bool.
        alignment: driver-to-canvas map.
    """
    height, width = alignment.size
    out = np.zeros((len(boxes), height, width), np.uint8)
    for index in np.nonzero(found)[0]:
        box: Box = alignment.apply(boxes[index])
        centre = (int(round((box[0] + box[2]) / 2)), int(round((box[1] + box[3]) / 2)))
        axes = (max(1, int(round((box[2] - box[0]) / 2))), max(1, int(round((box[3] - box[1]) * 0.6))))
        cv2.ellipse(out[index], centre, axes, 0, 0, 360, 255, -1)
    return out
