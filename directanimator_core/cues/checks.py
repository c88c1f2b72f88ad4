"""Per-frame checks of the followed person, for honest quality: a switched identity (the box jumps, or
the cut-out stops looking like the person chosen at the start) and a mask that is mostly background.

Both are judged from what the analysis pass already has per frame (boxes, mask area, face box) plus a
small colour signature of the masked pixels, so they cost well under a millisecond a frame.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .boxes import Box, area, mask_box

SIGNATURE_HEIGHT = 64  # the person's box is resized to this many rows for the colour signature
BINS = (8, 3, 3)  # hue, saturation, value bins of the signature
IDENTITY_FRAMES = 5  # the first found frames whose mean signature is the chosen person
APPEARANCE_CHANGE = 0.45  # Bhattacharyya distance to the chosen person's signature that is someone else
LOOK_STEP = 0.3  # change of signature across a jump that says the track went to someone else
JUMP = 0.5  # centre move between consecutive found frames, in box heights, that no walker makes
JUMP_PER_FRAME = 0.15  # allowed extra move per frame of a gap
SIZE_JUMP = 1.6  # box height ratio between consecutive found frames that no one makes
FRAME_SHARE = 0.8  # a mask over this share of the frame is mostly background
FACE_AREAS = 30.0  # a mask over this many face areas is larger than any person with that face
BOX_SHARE = 1.05  # a mask larger than this share of the segmenter's own person box leaked out of it
# share of a frame that differs from the median background past which the camera moved or the shot changed
# (measured: vtest at most 0.03, the carphone talking head 0.26; pans over stills 0.38-0.66, a cut-up
# trailer 0.57-0.82; bench_cues.motion_shares)
MOTION_EVERYWHERE = 0.5


def signature(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hue-saturation-value histogram (prod(BINS),) float32 of the masked pixels, summing to 1 (zeros for
    an empty mask). The person's box is cut out and resized to SIGNATURE_HEIGHT rows first, so a small
    walker and a close-up are judged on as many pixels.

    Args:
        frame: (H, W, 3) uint8 RGB.
        mask: (H, W) uint8, non-zero = person.
    """
    box = mask_box(mask)
    if box is None:
        return np.zeros(int(np.prod(BINS)), np.float32)
    x0, y0, x1, y1 = box.astype(int)
    scale = SIGNATURE_HEIGHT / (y1 - y0)
    size = (max(1, round((x1 - x0) * scale)), SIGNATURE_HEIGHT)
    crop = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    person = cv2.resize((mask[y0:y1, x0:x1] > 0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    return hsv_histogram(cv2.cvtColor(crop, cv2.COLOR_RGB2HSV), person, BINS)


def hsv_histogram(hsv: np.ndarray, weight: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    """(prod(bins),) float32 histogram of an HSV image's pixels where ``weight`` is non-zero, summing to 1
    (zeros when none is)."""
    hist = cv2.calcHist([hsv], [0, 1, 2], weight, list(bins), [0, 180, 0, 256, 0, 256]).ravel()
    total = hist.sum()
    return (hist / total).astype(np.float32) if total > 0 else np.zeros(hist.size, np.float32)


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures, 0 (same colours) .. 1 (no colour in common)."""
    if a.sum() <= 0 or b.sum() <= 0:
        return 0.0
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def suspect_switches(boxes: np.ndarray, found: np.ndarray, signatures: np.ndarray) -> np.ndarray:
    """Frames (F,) bool where the followed person is likely someone else than the one chosen.

    The chosen person's look is the mean signature of the first IDENTITY_FRAMES found frames. A frame
    is suspect when it looks like someone else (further than APPEARANCE_CHANGE from the chosen look),
    or its box jumped from the last found frame's (further than JUMP box heights plus JUMP_PER_FRAME
    per frame of a gap, or a height change of SIZE_JUMP). A jump that also changed the look (by more
    than LOOK_STEP) hands the track to a newcomer: the frames after it stay suspect for as long as they
    look more like the newcomer than like the chosen person.

    Args:
        boxes: (F, 4) body boxes; rows not ``found`` are ignored.
        found: (F,) bool.
        signatures: (F, S) colour signatures (``signature``).
    """
    suspect = np.zeros(len(found), bool)
    indices = np.nonzero(found)[0]
    if len(indices) == 0:
        return suspect
    chosen = signatures[indices[:IDENTITY_FRAMES]].mean(0)
    newcomer: Optional[np.ndarray] = None
    previous: Optional[int] = None
    for index in indices:
        look = signatures[index]
        to_chosen = appearance_distance(look, chosen)
        jumped = previous is not None and _jumped(boxes[previous], boxes[index], index - previous)
        if jumped and appearance_distance(look, signatures[previous]) > LOOK_STEP:
            newcomer = look
        elif newcomer is not None and to_chosen <= appearance_distance(look, newcomer):
            newcomer = None  # the chosen person is back
        suspect[index] = jumped or to_chosen > APPEARANCE_CHANGE or newcomer is not None
        previous = index
    return suspect


def _jumped(before: Box, after: Box, gap: int) -> bool:
    tall = max(before[3] - before[1], after[3] - after[1], 1e-6)
    move = np.hypot((after[0] + after[2] - before[0] - before[2]) / 2, (after[1] + after[3] - before[1] - before[3]) / 2)
    ratio = max(after[3] - after[1], 1e-6) / max(before[3] - before[1], 1e-6)
    return bool(move / tall > JUMP + JUMP_PER_FRAME * (gap - 1) or not 1 / SIZE_JUMP < ratio < SIZE_JUMP)


def mostly_background(pixels: float, frame_area: float, face: Optional[Box], person_box: Optional[Box]) -> bool:
    """Whether a frame's person mask is mostly background: it covers most of the frame (FRAME_SHARE),
    or more than a person with the found face could fill (FACE_AREAS face areas), or more than the
    segmenter's own person box (BOX_SHARE of it; only for the built-in segmenter, whose box is found
    apart from the mask).

    Args:
        pixels: mask area.
        frame_area: H * W.
        face: the face found on the person, or None.
        person_box: the detector's or tracker's box the mask was cut from, or None (an external mask).
    """
    if pixels <= 0:
        return False
    if pixels > FRAME_SHARE * frame_area:
        return True
    if face is not None and pixels > FACE_AREAS * max(area(face), 1.0):
        return True
    return person_box is not None and pixels > BOX_SHARE * max(area(person_box), 1.0)


def motion_share(moving: np.ndarray) -> float:
    """The share of a frame's motion mask (segment.motion_mask) that differs from the median background."""
    return np.count_nonzero(moving) / max(moving.size, 1)


def motion_everywhere(moving: Optional[np.ndarray]) -> bool:
    """Whether most of a frame differs from the median background (MOTION_EVERYWHERE): the camera moves or
    the shot changed, so motion no longer tells a person from the wall behind them (a HOG hit on a
    panned pavement moves too). None (no background) is not."""
    return moving is not None and motion_share(moving) > MOTION_EVERYWHERE
