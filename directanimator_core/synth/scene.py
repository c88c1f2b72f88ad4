"""Where a synthetic figure stands: background texture, ground line and camera jitter, from a seed.

Backgrounds use the full colour range (the figure keeps to [16, 239], identity.py). The camera moves
a little every frame (translation and scale, a smooth random walk): the same affine map moves the
background and the figure, as a hand-held camera would.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUNDS = ("noise", "gradient", "tiles", "flat")
SCENE_TAG = 0x3F


@dataclass(frozen=True)
class Scene:
    """Background and camera. colours: up to three RGB colours the background mixes; jitter: camera
    shake amplitude as a fraction of the frame size (0 = still camera); ground: the ground line as a
    fraction of frame height."""

    seed: int
    background: str  # one of BACKGROUNDS
    colours: tuple[tuple[int, int, int], ...]
    jitter: float
    ground: float
    detail: float  # noise grain / tile count, relative


def flat_scene(colour: tuple[int, int, int] = (0, 0, 0), jitter: float = 0.0, ground: float = 0.93) -> Scene:
    """A single-colour background (pick one outside [16, 239] to tell figure pixels from background).

    Args:
        colour: RGB of every background pixel.
        jitter: camera shake amplitude (fraction of the frame size).
        ground: the ground line, fraction of frame height.
    """
    return Scene(seed=0, background="flat", colours=(tuple(int(c) for c in colour),), jitter=jitter, ground=ground,
                 detail=0.0)


def sample_scene(seed: int) -> Scene:
    """The scene of ``seed``.

    Args:
        seed: any non-negative integer.
    """
    rng = np.random.default_rng(np.random.SeedSequence([SCENE_TAG, int(seed)]))
    kind = BACKGROUNDS[int(rng.choice(3, p=[0.45, 0.25, 0.3]))]
    hue = rng.uniform()
    colours = tuple(_colour(hue + rng.uniform(-0.15, 0.15), rng) for _ in range(3))
    return Scene(seed=int(seed), background=kind, colours=colours, jitter=float(rng.uniform(0.003, 0.015)),
                 ground=float(rng.uniform(0.9, 0.96)), detail=float(rng.uniform(0.0, 1.0)))


def _colour(hue: float, rng: np.random.Generator) -> tuple[int, int, int]:
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.05, 0.6), rng.uniform(0.2, 1.0))
    return tuple(int(round(c * 255)) for c in rgb)


def render_background(scene: Scene, height: int, width: int) -> np.ndarray:
    """The background picture, (H, W, 3) float32 RGB in [0, 255].

    Args:
        scene: which background.
        height: H.
        width: W.
    """
    colours = np.array(scene.colours, dtype=np.float32)
    if scene.background == "flat":
        return np.broadcast_to(colours[0], (height, width, 3)).astype(np.float32)
    rng = np.random.default_rng(np.random.SeedSequence([SCENE_TAG, scene.seed, 1]))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if scene.background == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * x / width + np.sin(angle) * y / height)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        weight = t[..., None]
    elif scene.background == "tiles":
        count = 3 + int(scene.detail * 6)
        size = max(height, width) / count
        weight = (((x // size) + (y // size)) % 2)[..., None] * 0.6 + 0.2
        floor = (y > scene.ground * height)[..., None]
        weight = np.where(floor, 1.0 - weight * 0.5, weight)
    else:  # smooth noise: a coarse random grid upsampled with cubic interpolation
        cells = 3 + int(scene.detail * 8)
        grid = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
        weight = np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)[..., None]
    picture = colours[0] * (1 - weight) + colours[1] * weight
    shade = np.clip(1.05 - 0.25 * (y / height), 0, 1.2)[..., None]  # light from above
    return np.clip(picture * shade, 0, 255).astype(np.float32)


def camera_path(scene: Scene, frames: int) -> np.ndarray:
    """Per-frame camera (dx, dy, scale): dx, dy fractions of the frame size, scale about 1, (F, 3).

    Args:
        scene: jitter amplitude and seed.
        frames: F.
    """
    if scene.jitter == 0.0:
        return np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (frames, 1))
    rng = np.random.default_rng(np.random.SeedSequence([SCENE_TAG, scene.seed, 2]))
    steps = rng.normal(0, 1, size=(frames, 3))
    # A causal smoothed walk (an AR(1) process): frame f never depends on later frames, so a clip's
    # camera path is the prefix of any longer clip's, and a one-frame reference matches frame 0.
    shake = np.empty((frames, 3))
    state = steps[0]
    for f in range(frames):
        state = 0.85 * state + np.sqrt(1 - 0.85 ** 2) * steps[f]
        shake[f] = state
    shake = np.clip(shake, -2.0, 2.0) * scene.jitter
    return np.stack([shake[:, 0], shake[:, 1], 1.0 + 2.0 * shake[:, 2]], axis=1).astype(np.float32)
