"""Two baselines a trained animator must beat on the held-out cross-ID set (issue 8).

copy_reference: every frame is the reference picture (no motion at all).
warp_reference: the reference picture moved frame by frame with the driver's body: the similarity
    transform (scale, translation) that takes the driver's first body box to its box in frame f,
    applied to the reference in the aligned frame (the location cue's own alignment). It follows
    where the body goes and how big it is, but not what the limbs do.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..cues.boxes import mask_box


def copy_reference(reference: np.ndarray, frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the (H, W, 3) reference repeated ``frames`` times."""
    return np.repeat(reference[None], frames, axis=0)


def box_transform(start: np.ndarray, box: np.ndarray) -> np.ndarray:
    """2x3 affine map (uniform scale by height, then translate) taking box ``start`` onto ``box``."""
    scale = (box[3] - box[1]) / max(start[3] - start[1], 1e-6)
    cx0, cy0 = (start[0] + start[2]) / 2, (start[1] + start[3]) / 2
    cx1, cy1 = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([[scale, 0.0, cx1 - scale * cx0], [0.0, scale, cy1 - scale * cy0]])


def warp_reference(reference: np.ndarray, driver_masks: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8: the reference moved as the driver's body box moves from its first frame.

    Args:
        reference: (H, W, 3) uint8 reference picture.
        driver_masks: (F, H, W) driver person masks in the reference's (aligned) frame, e.g. the
            location cue's body mask or the exact masks warped by the cue alignment.
    """
    height, width = reference.shape[:2]
    boxes = [mask_box(m > 0) for m in driver_masks]
    first = next((b for b in boxes if b is not None), None)
    if first is None:
        return copy_reference(reference, len(driver_masks))
    out, last = [], first
    for box in boxes:
        last = box if box is not None else last
        out.append(cv2.warpAffine(reference, box_transform(first, last), (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(out)
