"""OpenPose-style skeleton maps drawn from exact joints: the paper's "rendered skeleton" baseline cue.

Coloured bones on black in the COCO-18 limb order and colours, so the ablation "pixel pose cue vs
skeleton map" compares the pose cue against the best skeleton a detector could ever give.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .kinematics import JOINT_NAMES

_PAIRS = (("neck", "r_shoulder"), ("neck", "l_shoulder"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
          ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("neck", "r_hip"), ("r_hip", "r_knee"),
          ("r_knee", "r_ankle"), ("neck", "l_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("neck", "nose"),
          ("nose", "r_eye"), ("r_eye", "r_ear"), ("nose", "l_eye"), ("l_eye", "l_ear"))
BONES = tuple((JOINT_NAMES.index(a), JOINT_NAMES.index(b)) for a, b in _PAIRS)
# OpenPose's 18 colours (RGB), one per joint; bone i takes colour i.
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
SHIFT = 4


def draw_skeleton(joints: np.ndarray, height: int, width: int, visible: np.ndarray | None = None,
                  thickness: float | None = None) -> np.ndarray:
    """Skeleton maps of every frame, (F, H, W, 3) uint8 RGB.

    Args:
        joints: (F, J, 2) pixel x, y in JOINT_NAMES order.
        height: H.
        width: W.
        visible: (F, J) bool; bones and dots touching an invisible joint are left out. None = all.
        thickness: bone width in pixels; None = 2.5% of the frame's smaller side (at least 1).
    """
    if joints.ndim != 3 or joints.shape[1:] != (len(JOINT_NAMES), 2):
        raise InputError(f"joints have shape {tuple(joints.shape)}, expected (F, {len(JOINT_NAMES)}, 2): pass "
                         "Render.joints")
    width_px = max(1.0, 0.025 * min(height, width)) if thickness is None else float(thickness)
    shown = np.ones(joints.shape[:2], dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    maps = np.zeros((joints.shape[0], height, width, 3), dtype=np.uint8)
    scale = 1 << SHIFT
    for f in range(joints.shape[0]):
        points = np.rint(joints[f] * scale).astype(np.int32)
        for i, (a, b) in enumerate(BONES):
            if shown[f, a] and shown[f, b]:
                colour = tuple(int(c * 0.6) for c in COLOURS[i])  # bones dimmer than the joint dots
                cv2.line(maps[f], tuple(points[a]), tuple(points[b]), colour, max(1, round(width_px)),
                         cv2.LINE_AA, SHIFT)
        for j in range(len(JOINT_NAMES)):
            if shown[f, j]:
                cv2.circle(maps[f], tuple(points[j]), max(1, round(width_px * 0.8)) * scale, COLOURS[j], -1,
                           cv2.LINE_AA, SHIFT)
    return maps
