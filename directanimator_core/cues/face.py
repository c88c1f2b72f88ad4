"""Face cue: the driver's face, detected per frame, its box smoothed over time, then cropped,
zoomed and centred at a fixed output size. Frames without a face are flagged and left blank;
nothing is invented for them.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from . import detectors
from .align import pixel_matrix
from .boxes import Box, expand, iou, smooth_runs
from .config import FaceConfig

BLANK = 0  # value of a face-cue frame where no face was found
# How far down the person's box a face may reach, as a share of its height: a standing person's head
# is in the top eighth, but a close-up's box is mostly face and shoulders, its chin near 3/4 down
HEAD_REACH = 0.75
FACE_SHRINK = 0.6  # the least a face's side is of the previous frame's (a fast zoom out; a miss looks again at all sizes)


def find_face(frame: np.ndarray, person: Optional[Box], config: FaceConfig, last: Optional[Box],
              previous: Optional[Box] = None) -> Optional[Box]:
    """The driver's face in one frame, or None.

    Args:
        frame: (H, W, 3) uint8 RGB.
        person: the tracked person's box; the face is looked for in its upper three quarters only
            (HEAD_REACH), so a passer-by's face is never taken. None searches the whole frame.
        config: face settings.
        last: the face box of the previous frame, preferred when several faces are found.
        previous: the face found in the very previous frame, if one was: a face does not shrink under
            FACE_SHRINK of its side in a frame, so smaller ones are not looked for (Haar's smallest
            windows are its costliest: a close-up's search costs a fifth).
    """
    height, width = frame.shape[:2]
    region = np.array([0, 0, width, height], dtype=np.float64)
    min_side = 12
    if person is not None:
        tall = person[3] - person[1]
        head = np.array([person[0], person[1] - 0.1 * tall, person[2], person[1] + HEAD_REACH * tall])
        region = expand(head, 1.3, height, width)
        min_side = max(min_side, int(config.min_face_fraction * tall))
    if previous is not None:
        min_side = max(min_side, int(FACE_SHRINK * (previous[2] - previous[0])))
    x0, y0, x1, y1 = region.astype(int)
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return None
    found = detectors.detect_faces(frame[y0:y1, x0:x1], min_side, config.onnx_path)
    if not found:
        return None
    offset = np.array([x0, y0, x0, y0], dtype=np.float64)
    faces = [f + offset for f in found]
    if last is not None:
        return max(faces, key=lambda f: iou(f, last) + 1e-6 * (f[2] - f[0]))
    return faces[0]


def smooth_faces(boxes: np.ndarray, found: np.ndarray, sigma: float) -> np.ndarray:
    """Face boxes (F, 4) smoothed over time within each run of frames that have a face."""
    return smooth_runs(boxes, found, sigma)


def crop_transform(face: Box, margin: float, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine map from driver pixels to the face cue: the face centred, its side x ``margin``
    filling the output's shorter side."""
    out_h, out_w = size
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    side = max(face[2] - face[0], face[3] - face[1]) * margin
    scale = min(out_h, out_w) / side
    return pixel_matrix(scale, out_w / 2 - scale * cx, out_h / 2 - scale * cy)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, found: np.ndarray, config: FaceConfig,
               size: tuple[int, int]) -> np.ndarray:
    """Face cue frames (n, h, w, 3) uint8 for a chunk; blank where ``found`` is False.

    Args:
        frames: (n, H, W, 3) uint8 RGB driver frames.
        boxes: (n, 4) smoothed face boxes.
        found: (n,) bool, a face was detected in the frame.
        config: face settings (margin).
        size: (h, w) of the face cue.
    """
    out = np.full((len(frames), size[0], size[1], 3), BLANK, np.uint8)
    for index in np.nonzero(found)[0]:
        matrix = crop_transform(boxes[index], config.margin, size)
        out[index] = cv2.warpAffine(frames[index], matrix, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
    return out
