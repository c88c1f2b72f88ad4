"""Who a synthetic figure is: body proportions, colours, clothing pattern, hair and face, from a seed.

An identity holds no motion, so any identity can perform any motion (motion.py). Lengths are in
stature units (head top to ankle = 1); the renderer scales them by ``stature`` times the frame height.
Every colour the figure paints lies in the studio range [16, 239] per channel, so a background outside
that range (pure black, say) can never be confused with the figure: the mask tests rely on it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

Colour = tuple[int, int, int]  # RGB, each in [16, 239]

PATTERNS = ("plain", "stripes", "checks", "dots")
HAIR_STYLES = ("short", "long", "bun", "bald")
FIGURE_MIN, FIGURE_MAX = 16, 239
IDENTITY_TAG = 0x1D  # domain tag: identity, motion and scene draws from one seed never share a stream

# Skin tones from light to dark; an identity's skin is a jittered point between two neighbours.
SKIN_TONES = np.array([[241, 214, 190], [224, 182, 150], [198, 145, 110], [160, 110, 75], [110, 72, 50],
                       [75, 50, 36]], dtype=np.float64)
HAIR_TONES = np.array([[30, 24, 20], [70, 45, 25], [120, 80, 40], [200, 160, 90], [150, 60, 30],
                       [180, 180, 175]], dtype=np.float64)


@dataclass(frozen=True)
class Identity:
    """One figure's look. Lengths in stature units; angles in radians; colours RGB in [16, 239]."""

    seed: int
    stature: float  # head top to ankle, as a fraction of the frame height
    head_radius: float
    neck: float
    torso: float  # neck to pelvis
    shoulder_half: float
    hip_half: float
    chest_depth_half: float  # the torso's half width seen from the side
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    foot: float
    arm_width: float  # limb radii
    leg_width: float
    skin: Colour
    hair: Colour
    hair_style: str  # one of HAIR_STYLES
    shirt: Colour
    shirt_accent: Colour
    shirt_pattern: str  # one of PATTERNS
    pants: Colour
    pants_accent: Colour
    pants_pattern: str
    pattern_period: float  # one repeat of the clothing pattern, stature units (a few pixels)
    pattern_angle: float
    shoes: Colour
    long_sleeves: bool
    eye_spacing: float  # azimuth of each eye from the face centre on the head sphere
    eye_size: float  # head-radius units
    eye_colour: Colour
    mouth_width: float  # head-radius units
    brow_tilt: float
    brow_thickness: float  # head-radius units

    @property
    def leg(self) -> float:
        return self.thigh + self.shin


def studio(rgb: np.ndarray) -> Colour:
    """A colour clipped into the figure's studio range."""
    clipped = np.clip(np.rint(rgb), FIGURE_MIN, FIGURE_MAX).astype(int)
    return (int(clipped[0]), int(clipped[1]), int(clipped[2]))


def _hsv(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb) * 255.0


def _between(rng: np.random.Generator, tones: np.ndarray) -> np.ndarray:
    i = int(rng.integers(len(tones) - 1))
    return tones[i] + rng.uniform() * (tones[i + 1] - tones[i]) + rng.normal(0, 6, 3)


def _proportions(rng: np.random.Generator) -> dict[str, float]:
    """Segment lengths with per-person variation, normalised so head top to ankle is exactly 1."""
    vary = lambda mean, spread: mean * (1.0 + rng.uniform(-spread, spread))  # noqa: E731
    raw = dict(head_radius=vary(0.068, 0.18), neck=vary(0.035, 0.3), torso=vary(0.30, 0.12),
               thigh=vary(0.245, 0.12), shin=vary(0.235, 0.12))
    height = 2 * raw["head_radius"] + raw["neck"] + raw["torso"] + raw["thigh"] + raw["shin"]
    scaled = {k: v / height for k, v in raw.items()}
    scaled.update(shoulder_half=vary(0.115, 0.2), hip_half=vary(0.08, 0.2), chest_depth_half=vary(0.06, 0.2),
                  upper_arm=vary(0.17, 0.12), forearm=vary(0.15, 0.12), foot=vary(0.075, 0.15),
                  arm_width=vary(0.03, 0.25), leg_width=vary(0.04, 0.25))
    return scaled


def sample_identity(seed: int) -> Identity:
    """The identity of ``seed``: the same seed always gives the same figure.

    Args:
        seed: any non-negative integer (see dataset.py for the train / held-out convention).
    """
    rng = np.random.default_rng(np.random.SeedSequence([IDENTITY_TAG, int(seed)]))
    body = _proportions(rng)
    skin = _between(rng, SKIN_TONES)
    hair = _between(rng, HAIR_TONES)
    shirt = _hsv(rng, (0.2, 0.9), (0.35, 0.95))
    pants = _hsv(rng, (0.1, 0.7), (0.15, 0.7))
    return Identity(
        seed=int(seed),
        stature=float(rng.uniform(0.55, 0.78)),
        **{k: float(v) for k, v in body.items()},
        skin=studio(skin),
        hair=studio(hair),
        hair_style=HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=[0.4, 0.3, 0.2, 0.1]))],
        shirt=studio(shirt),
        shirt_accent=studio(_contrast(rng, shirt)),
        shirt_pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        pants=studio(pants),
        pants_accent=studio(_contrast(rng, pants)),
        pants_pattern=PATTERNS[int(rng.choice(len(PATTERNS), p=[0.55, 0.2, 0.15, 0.1]))],
        pattern_period=float(rng.uniform(0.025, 0.05)),
        pattern_angle=float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4])),
        shoes=studio(_hsv(rng, (0.0, 0.5), (0.05, 0.5))),
        long_sleeves=bool(rng.uniform() < 0.5),
        eye_spacing=float(rng.uniform(0.33, 0.5)),
        eye_size=float(rng.uniform(0.13, 0.2)),
        eye_colour=studio(_between(rng, HAIR_TONES[:3]) * 0.8),
        mouth_width=float(rng.uniform(0.35, 0.6)),
        brow_tilt=float(rng.uniform(-0.3, 0.3)),
        brow_thickness=float(rng.uniform(0.06, 0.12)),
    )


def _contrast(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A pattern colour far enough from ``base`` that the pattern is plainly visible."""
    other = _hsv(rng, (0.0, 1.0), (0.1, 1.0))
    while np.abs(other - base).max() < 90:
        other = _hsv(rng, (0.0, 1.0), (0.1, 1.0))
    return other
