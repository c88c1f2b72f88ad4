"""Forward kinematics: an identity's proportions + a motion's angles -> 3D joint positions per frame.

Body frame: x = the person's left, y down, z forward (towards the camera at yaw 0). The figure is
posed in that frame, turned by yaw about the vertical axis, and stood on the ground (y = 0 at the
lowest foot point). Projection to the picture is orthographic (render.py drops z and keeps it as depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .identity import Identity
from .motion import ANGLE_NAMES, Motion

# OpenPose COCO-18 order, so skeleton maps and pose tools line up with the usual colour tables.
JOINT_NAMES = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
               "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
EXTRA_NAMES = ("pelvis", "head", "mouth", "r_hand", "l_hand", "r_toe", "l_toe", "head_top")
POINT_NAMES = JOINT_NAMES + EXTRA_NAMES
ELBOW_SPLIT = 0.7  # share of the elbow bend that swings the forearm in the picture plane vs forward


@dataclass(frozen=True, eq=False)
class Pose:
    """Posed points of every frame, (F, P, 3) in stature units: x from the pelvis, y up from the ground
    negative, z towards the camera. P runs over POINT_NAMES."""

    points: np.ndarray  # (F, P, 3)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.points[:, POINT_NAMES.index(name)]  # (F, 3)


def limb_direction(abduction: np.ndarray, flexion: np.ndarray, side: float) -> np.ndarray:
    """Unit direction of a limb hanging down and swung sideways then forward, (F, 3).

    Args:
        abduction: (F,) radians away from the body's midline.
        flexion: (F,) radians forward.
        side: +1 for the person's left limbs, -1 for the right.
    """
    cos_f = np.cos(flexion)
    return np.stack([side * np.sin(abduction) * cos_f, np.cos(abduction) * cos_f, np.sin(flexion)], axis=-1)


def roll(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (F, ..., 3) vectors about z by (F,) angles (picture-plane tilt)."""
    c = np.cos(angle).reshape(-1, *([1] * (vectors.ndim - 2)))
    s = np.sin(angle).reshape(c.shape)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([c * x - s * y, s * x + c * y, z], axis=-1)


def yaw_turn(points: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Turn (F, P, 3) points about the vertical axis by (F,) yaw; +pi/2 faces picture-right."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([c * x + s * z, y, -s * x + c * z], axis=-1)


def _sphere(azimuth: float | np.ndarray, elevation: float) -> np.ndarray:
    """A point on the unit head sphere: azimuth from the face centre towards the left, elevation up."""
    return np.array([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])


def _arm(body: Identity, a: dict[str, np.ndarray], side: str, shoulder: np.ndarray, torso_roll: np.ndarray):
    sign = 1.0 if side == "l" else -1.0
    abd, flex, bend = a[f"{side}_shoulder_abd"], a[f"{side}_shoulder_flex"], a[f"{side}_elbow"]
    upper = roll(limb_direction(abd, flex, sign), torso_roll)
    lower = roll(limb_direction(abd + ELBOW_SPLIT * bend, flex + ELBOW_SPLIT * bend, sign), torso_roll)
    elbow = shoulder + body.upper_arm * upper
    wrist = elbow + body.forearm * lower
    return elbow, wrist, wrist + 0.35 * body.forearm * lower


def _leg(body: Identity, a: dict[str, np.ndarray], side: str, hip: np.ndarray):
    sign = 1.0 if side == "l" else -1.0
    abd, flex, knee_bend = a[f"{side}_hip_abd"], a[f"{side}_hip_flex"], a[f"{side}_knee"]
    knee = hip + body.thigh * limb_direction(abd, flex, sign)
    ankle = knee + body.shin * limb_direction(abd, flex - knee_bend, sign)
    forward = np.array([0.0, 0.25, 1.0]) / np.hypot(0.25, 1.0)
    return knee, ankle, ankle + body.foot * forward


def forward_kinematics(identity: Identity, motion: Motion) -> Pose:
    """Every point of POINT_NAMES for every frame of ``motion``, on ``identity``'s body.

    Args:
        identity: lengths (stature units).
        motion: angles, yaw and bounce per frame.
    """
    frames = motion.frames
    a = {name: motion.angles[:, i].astype(np.float64) for i, name in enumerate(ANGLE_NAMES)}
    lean = a["torso_roll"]
    zero = np.zeros((frames, 3))
    up = roll(np.broadcast_to([0.0, -1.0, 0.0], (frames, 3)), lean)
    across = roll(np.broadcast_to([1.0, 0.0, 0.0], (frames, 3)), lean)
    # 1. trunk and head
    pelvis = zero
    neck = pelvis + identity.torso * up
    head_up = roll(np.broadcast_to([0.0, -1.0, 0.0], (frames, 3)), lean + a["head_roll"])
    head = neck + (identity.neck + identity.head_radius) * head_up
    face = lambda az, el: head + identity.head_radius * roll(np.broadcast_to(_sphere(az, el), (frames, 3)),  # noqa: E731
                                                             lean + a["head_roll"])
    # 2. limbs
    shoulders = {s: neck + sign * identity.shoulder_half * across for s, sign in (("r", -1.0), ("l", 1.0))}
    hips = {s: pelvis + np.array([sign * identity.hip_half, 0.0, 0.0]) for s, sign in (("r", -1.0), ("l", 1.0))}
    arms = {s: _arm(identity, a, s, shoulders[s], lean) for s in "rl"}
    legs = {s: _leg(identity, a, s, hips[s]) for s in "rl"}
    named = dict(
        nose=face(0.0, -0.15) + 0.15 * identity.head_radius * roll(np.broadcast_to([0, 0, 1.0], (frames, 3)), lean),
        neck=neck, pelvis=pelvis, head=head, mouth=face(0.0, -0.5), head_top=face(0.0, np.pi / 2 - 1e-6),
        r_eye=face(-identity.eye_spacing, 0.12), l_eye=face(identity.eye_spacing, 0.12),
        r_ear=face(-np.pi / 2, 0.0), l_ear=face(np.pi / 2, 0.0))
    for s in "rl":
        named.update({f"{s}_shoulder": shoulders[s], f"{s}_elbow": arms[s][0], f"{s}_wrist": arms[s][1],
                      f"{s}_hand": arms[s][2], f"{s}_hip": hips[s], f"{s}_knee": legs[s][0],
                      f"{s}_ankle": legs[s][1], f"{s}_toe": legs[s][2]})
    points = np.stack([np.broadcast_to(named[n], (frames, 3)) for n in POINT_NAMES], axis=1)  # (F, P, 3)
    # 3. turn, then stand the lowest foot point on the ground
    points = yaw_turn(points, motion.yaw.astype(np.float64))
    feet = [POINT_NAMES.index(n) for n in ("r_ankle", "l_ankle", "r_toe", "l_toe")]
    lowest = points[:, feet, 1].max(axis=1) + 0.6 * identity.leg_width
    points[..., 1] -= (lowest - motion.bounce)[:, None]
    return Pose(points.astype(np.float32))
