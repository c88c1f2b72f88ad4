"""How a synthetic figure moves: joint-angle trajectories, facing, walking and expression, from a seed.

A motion holds angles only, never lengths, so it is independent of identity: kinematics.py turns
(identity, motion) into joint positions, and the same motion on two identities gives the same joint
angles with each body's own proportions (the exact cross-identity ground truth).

Angle conventions (radians), in the body's own frame (x = the person's left, y down, z forward):
abduction swings a limb sideways away from the body, flexion swings it forward, elbow and knee bend
from straight; torso and head roll tilt in the picture plane. ``yaw`` turns the whole body about the
vertical axis: 0 faces the camera, +pi/2 faces picture-right (side view).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

ANGLE_NAMES = ("torso_roll", "head_roll",
               "r_shoulder_abd", "r_shoulder_flex", "r_elbow",
               "l_shoulder_abd", "l_shoulder_flex", "l_elbow",
               "r_hip_abd", "r_hip_flex", "r_knee",
               "l_hip_abd", "l_hip_flex", "l_knee")
MOTION_KINDS = ("smooth", "dance", "walk", "turn")
MOTION_TAG = 0x2E

# (low, high) of each angle under free motion; dance widens the arms, walk sets legs itself.
ANGLE_RANGES = {
    "torso_roll": (-0.12, 0.12), "head_roll": (-0.25, 0.25),
    "shoulder_abd": (-0.3, 1.6), "shoulder_flex": (-0.6, 1.2), "elbow": (0.0, 1.8),
    "hip_abd": (-0.05, 0.3), "hip_flex": (-0.25, 0.6), "knee": (0.0, 0.9),
}


@dataclass(frozen=True, eq=False)
class Motion:
    """Per-frame trajectories.

    angles: (F, len(ANGLE_NAMES)) radians. root_x: (F,) horizontal position of the pelvis as a
    fraction of frame width from the centre. bounce: (F,) vertical offset, stature units, negative up.
    yaw: (F,) radians. mouth: (F,) 0 closed .. 1 wide open. eyes: (F,) 0 shut .. 1 open.
    """

    seed: int
    kind: str
    angles: np.ndarray  # (F, A)
    root_x: np.ndarray  # (F,)
    bounce: np.ndarray  # (F,)
    yaw: np.ndarray  # (F,)
    mouth: np.ndarray  # (F,)
    eyes: np.ndarray  # (F,)

    @property
    def frames(self) -> int:
        return self.angles.shape[0]

    def angle(self, name: str) -> np.ndarray:
        """One angle's trajectory, (F,)."""
        return self.angles[:, ANGLE_NAMES.index(name)]

    def slice(self, start: int, stop: int) -> "Motion":
        """Frames ``start`` .. ``stop - 1`` of this motion."""
        cut = lambda a: a[start:stop]  # noqa: E731
        return Motion(self.seed, self.kind, cut(self.angles), cut(self.root_x), cut(self.bounce), cut(self.yaw),
                      cut(self.mouth), cut(self.eyes))


def smooth_noise(rng: np.random.Generator, frames: int, count: int, freq: tuple[float, float],
                 waves: int = 3) -> np.ndarray:
    """``count`` smooth signals in [-1, 1], each a sum of ``waves`` random sinusoids, (F, count).

    Args:
        rng: the random stream.
        frames: F.
        count: how many independent signals.
        freq: (low, high) frequency in cycles per frame.
        waves: sinusoids per signal.
    """
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    f = rng.uniform(*freq, size=(1, count, waves))
    phase = rng.uniform(0, 2 * np.pi, size=(1, count, waves))
    weight = rng.uniform(0.3, 1.0, size=(1, count, waves))
    signal = (weight * np.sin(2 * np.pi * f * t + phase)).sum(-1) / weight.sum(-1)
    return np.clip(signal * 1.6, -1.0, 1.0)


def _to_range(signal: np.ndarray, name: str) -> np.ndarray:
    key = name[2:] if name[:2] in ("r_", "l_") else name
    low, high = ANGLE_RANGES[key]
    return low + (high - low) * (0.5 + 0.5 * signal)


def _free_angles(rng: np.random.Generator, frames: int, freq: tuple[float, float]) -> np.ndarray:
    signals = smooth_noise(rng, frames, len(ANGLE_NAMES), freq)
    return np.stack([_to_range(signals[:, i], n) for i, n in enumerate(ANGLE_NAMES)], axis=1)


def _set(angles: np.ndarray, name: str, values: np.ndarray) -> None:
    angles[:, ANGLE_NAMES.index(name)] = values


def _smooth(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    angles = _free_angles(rng, frames, (0.01, 0.06))
    sway = smooth_noise(rng, frames, 1, (0.005, 0.02))[:, 0] * 0.12
    return dict(angles=angles, root_x=sway, yaw=np.full(frames, rng.choice([0.0, 0.0, 0.5, -0.5])))


def _dance(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """Periodic moves on a beat: arms high and wide, knees bouncing in time, L/R in or against phase."""
    angles = _free_angles(rng, frames, (0.01, 0.04)) * 0.3
    t = np.arange(frames, dtype=np.float64)
    beat = rng.uniform(0.04, 0.09)  # cycles per frame
    mirror = rng.choice([0.0, np.pi])  # arms together or alternating
    start = rng.uniform(0, 2 * np.pi)
    for side, phase in (("r", start), ("l", start + mirror)):
        wave = np.sin(2 * np.pi * beat * t + phase)
        _set(angles, f"{side}_shoulder_abd", 1.1 + 1.2 * wave)
        _set(angles, f"{side}_shoulder_flex", 0.3 + 0.5 * np.sin(2 * np.pi * beat * 2 * t + phase))
        _set(angles, f"{side}_elbow", 0.9 + 0.8 * np.sin(2 * np.pi * beat * t + phase + 1.3))
    knees = 0.25 + 0.25 * np.sin(4 * np.pi * beat * t)
    _set(angles, "r_knee", knees)
    _set(angles, "l_knee", knees)
    _set(angles, "r_hip_flex", knees * 0.6)
    _set(angles, "l_hip_flex", knees * 0.6)
    _set(angles, "torso_roll", 0.12 * np.sin(2 * np.pi * beat * t))
    step = rng.uniform(0.05, 0.15) * np.sin(np.pi * beat * t + rng.uniform(0, 6))
    return dict(angles=angles, root_x=step, yaw=0.4 * np.sin(2 * np.pi * beat * t / 4) * rng.choice([0, 1]),
                bounce=-0.02 * np.abs(np.sin(2 * np.pi * beat * t)))


def _walk(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """A gait cycle with counter-swinging arms, travelling across the frame in side view."""
    angles = _free_angles(rng, frames, (0.01, 0.03)) * 0.2
    t = np.arange(frames, dtype=np.float64)
    gait = rng.uniform(0.05, 0.08)
    direction = rng.choice([-1.0, 1.0])
    stride = rng.uniform(0.35, 0.5)
    for side, shift in (("r", 0.0), ("l", np.pi)):
        swing = np.sin(2 * np.pi * gait * t + shift)
        _set(angles, f"{side}_hip_flex", stride * swing)
        _set(angles, f"{side}_knee", 0.15 + 0.45 * np.clip(np.sin(2 * np.pi * gait * t + shift - 1.2), 0, None))
        _set(angles, f"{side}_shoulder_flex", -0.7 * stride * swing)
        _set(angles, f"{side}_shoulder_abd", np.full(frames, 0.12))
        _set(angles, f"{side}_elbow", 0.3 + 0.2 * np.clip(-swing, 0, None))
        _set(angles, f"{side}_hip_abd", np.full(frames, 0.03))
    span = rng.uniform(0.2, 0.35)
    root_x = direction * span * np.linspace(-1.0, 1.0, frames)
    yaw = np.full(frames, direction * np.pi / 2 * rng.choice([1.0, 0.8]))
    return dict(angles=angles, root_x=root_x, yaw=yaw, bounce=-0.012 * np.abs(np.sin(2 * np.pi * gait * t)))


def _turn(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """Free arm motion while the body turns between facing the camera and a side view."""
    base = _smooth(rng, frames)
    start, end = rng.choice([0.0, np.pi / 2, -np.pi / 2], size=2, replace=False)
    ramp = np.clip((np.arange(frames) - frames * 0.25) / max(frames * 0.5, 1.0), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no jerk at either end
    return dict(base, yaw=start + (end - start) * ramp)


def _expression(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening like speech or singing, eyes open with blinks every two to four seconds."""
    mouth = np.clip(smooth_noise(rng, frames, 1, (0.03, 0.15))[:, 0] * 1.2, 0, 1)
    eyes = np.ones(frames)
    start = int(rng.integers(0, 40))
    while start < frames:
        eyes[start] = 0.0
        eyes[max(start - 1, 0)] = min(eyes[max(start - 1, 0)], 0.5)
        if start + 1 < frames:
            eyes[start + 1] = 0.5
        start += int(rng.integers(30, 65))
    return mouth, eyes


SAMPLERS = {"smooth": _smooth, "dance": _dance, "walk": _walk, "turn": _turn}


def sample_motion(seed: int, frames: int, kind: str | None = None) -> Motion:
    """The motion of ``seed`` over ``frames`` frames: the same arguments always give the same motion.

    Args:
        seed: any non-negative integer.
        frames: number of frames F (>= 1).
        kind: one of MOTION_KINDS, or None to draw one from the seed.
    """
    if frames < 1:
        raise InputError(f"frames={frames} is below 1: a motion needs at least one frame")
    if kind is not None and kind not in MOTION_KINDS:
        raise InputError(f"motion kind {kind!r} is unknown: use one of {MOTION_KINDS} or None")
    rng = np.random.default_rng(np.random.SeedSequence([MOTION_TAG, int(seed)]))
    chosen = MOTION_KINDS[int(rng.integers(len(MOTION_KINDS)))]
    kind = kind or chosen
    parts = SAMPLERS[kind](rng, frames)
    mouth, eyes = _expression(rng, frames)
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Motion(
        seed=int(seed), kind=kind, angles=as32(parts["angles"]), root_x=as32(parts["root_x"]),
        bounce=as32(parts.get("bounce", np.zeros(frames))), yaw=as32(parts["yaw"]),
        mouth=as32(mouth), eyes=as32(eyes))
