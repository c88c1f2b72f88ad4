"""What a character-replacement model takes beside the cues: the driver's mask grown, and the frames with the
driver blacked out.

Wan 2.2 Animate's replacement mode (core ComfyUI's WanAnimateToVideo: ``character_mask`` and
``background_video``) generates the new character where the mask is 1 and keeps the background video's
pixels where it is 0. Wan's own preprocessing grows the person mask (a 7x7 dilation, 3 times, at 720p)
so that a character of another build fits, and blacks that region out of the background video, so the
driver's own pixels do not leak into the result.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .frames import check_masks


def grow_masks(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Each mask grown by ``pixels`` in every direction: every pixel within that distance of the person joins
    it (a round dilation, by distance transform, so its cost does not grow with the radius); 0 returns
    ``masks`` as they are.

    Args:
        masks: (F, H, W) uint8 0..255 person masks (above 127 = the person).
        pixels: radius of the growth, >= 0.
    """
    if pixels < 0:
        raise InputError(f"grow={pixels} is negative; give 0 (the mask as cut) or more pixels")
    if pixels == 0:
        return masks
    grown = np.empty_like(masks)
    for index, mask in enumerate(masks):
        outside = np.where(mask > 127, 0, 255).astype(np.uint8)  # distance to the nearest person pixel
        distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # (H, W) float32
        grown[index] = np.where(distance <= pixels, 255, 0)
    return grown  # (F, H, W)


def cut_out(frames: np.ndarray, masks: np.ndarray, in_place: bool = False) -> np.ndarray:
    """The frames with the masked person blacked out, as Wan's preprocessing makes its background video.

    Args:
        frames: (F, H, W, 3) uint8 RGB.
        masks: (F, H, W) uint8 0..255 person masks (above 127 = the person), one per frame at the frames' size.
        in_place: black the person out of ``frames`` itself and return it (no second copy of the video).
    """
    person = check_masks(masks, len(frames), frames.shape[1], frames.shape[2]) > 0  # (F, H, W)
    if in_place:
        frames[person] = 0  # all three channels of each person pixel
        return frames  # (F, H, W, 3)
    return np.where(person[..., None], np.uint8(0), frames)  # (F, H, W, 3)
