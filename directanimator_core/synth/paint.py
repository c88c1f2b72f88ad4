"""Anti-aliased shape painting with exact coverage: the canvas the renderer composites parts onto.

Each part is a polygon filled with OpenCV's anti-aliased rasteriser (sub-pixel vertices) into a
coverage buffer over the part's bounding box only, then alpha-composited in float32. Coverage below
FRINGE is dropped, so every pixel the figure touches moves by at least FRINGE x (distance of the figure
palette from the background) and the person mask "coverage > 0" is exactly the set of changed pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

FRINGE = 32  # of 255: fainter anti-aliasing coverage is dropped (see module docstring)
SUBPIXEL_BITS = 4
PATTERN_SHARPNESS = 2.5  # >1 squares the pattern's sine waves into crisp-edged, still anti-aliased, bands


@dataclass(frozen=True)
class Flat:
    """A single fill colour."""

    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Pattern:
    """Clothing texture in the part's own frame (it moves and turns with the limb).

    kind: plain / stripes / checks / dots. period: pixels per repeat. origin: (x, y) pixel anchor.
    angle: radians of the pattern's axis in the picture.
    """

    kind: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    period: float
    origin: tuple[float, float]
    angle: float

    def weights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Accent weight in [0, 1] at pixel centres (x, y), broadcast shapes."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.origin[0], y - self.origin[1]
        u = (c * dx + s * dy) * (2 * np.pi / self.period)
        v = (-s * dx + c * dy) * (2 * np.pi / self.period)
        band = lambda t: np.clip(0.5 + PATTERN_SHARPNESS * np.sin(t), 0.0, 1.0)  # noqa: E731
        if self.kind == "stripes":
            return band(v)
        if self.kind == "checks":
            return np.abs(band(u) - band(v))
        if self.kind == "dots":
            return np.clip(PATTERN_SHARPNESS * (np.cos(u) * np.cos(v) - 0.45), 0.0, 1.0)
        return np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), dtype=np.float32)


Fill = Flat | Pattern


class Canvas:
    """One frame being painted: colour (H, W, 3) float32, coverage (H, W) float32, part labels (H, W) uint8."""

    def __init__(self, background: np.ndarray) -> None:
        self.rgb = np.array(background, dtype=np.float32, copy=True)
        self.height, self.width = self.rgb.shape[:2]
        self.cover = np.zeros((self.height, self.width), dtype=np.float32)
        self.label = np.zeros((self.height, self.width), dtype=np.uint8)

    def paint(self, polygon: np.ndarray, fill: Fill, label: int) -> None:
        """Composite one filled polygon over what is already painted.

        Args:
            polygon: (N, 2) float pixel coordinates (x, y), pixel centres at integers.
            fill: Flat colour or Pattern.
            label: the part id written where this polygon covers at least half a pixel.
        """
        if len(polygon) < 3:
            return
        low = np.floor(polygon.min(axis=0)).astype(int) - 1
        high = np.ceil(polygon.max(axis=0)).astype(int) + 2
        x0, y0 = max(low[0], 0), max(low[1], 0)
        x1, y1 = min(high[0], self.width), min(high[1], self.height)
        if x1 <= x0 or y1 <= y0:
            return
        coverage = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        points = np.rint((polygon - (x0, y0)) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(coverage, [points], 255, cv2.LINE_AA, shift=SUBPIXEL_BITS)
        coverage[coverage < FRINGE] = 0
        alpha = coverage.astype(np.float32) * (1.0 / 255.0)
        colour = self._colour(fill, x0, y0, x1, y1)
        region = self.rgb[y0:y1, x0:x1]
        region += (colour - region) * alpha[..., None]
        cover = self.cover[y0:y1, x0:x1]
        cover += (1.0 - cover) * alpha
        self.label[y0:y1, x0:x1][coverage >= 128] = label

    @staticmethod
    def _colour(fill: Fill, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        if isinstance(fill, Flat) or fill.kind == "plain":
            return np.asarray(fill.colour, dtype=np.float32)
        x = np.arange(x0, x1, dtype=np.float32)[None, :]
        y = np.arange(y0, y1, dtype=np.float32)[:, None]
        w = fill.weights(x, y).astype(np.float32)[..., None]  # (h, w, 1)
        base, accent = np.asarray(fill.colour, np.float32), np.asarray(fill.accent, np.float32)
        return base + (accent - base) * w


# Shapes: every one is an (N, 2) polygon in pixel coordinates.

@lru_cache(maxsize=None)
def _unit_circle(count: int, start: float, stop: float, endpoint: bool = True) -> np.ndarray:
    """(count, 2) cos / sin of evenly spaced angles; cached because shapes are built per part per frame."""
    t = np.linspace(start, stop, count, endpoint=endpoint)
    table = np.stack([np.cos(t), np.sin(t)], axis=1)
    table.flags.writeable = False
    return table


def circle_arc(centre: np.ndarray, radius: float, start: float, stop: float, count: int) -> np.ndarray:
    """Points on a circle from angle ``start`` to ``stop`` (radians, picture axes), (count, 2)."""
    return np.asarray(centre, np.float64) + radius * _unit_circle(count, start, stop)


def capsule(a: np.ndarray, b: np.ndarray, radius_a: float, radius_b: Optional[float] = None,
            count: int = 9) -> np.ndarray:
    """A tapered capsule (a limb) from ``a`` to ``b``: two half discs joined by straight sides.

    Args:
        a: (2,) start point.
        b: (2,) end point.
        radius_a: radius at ``a`` (pixels).
        radius_b: radius at ``b``; None = radius_a.
        count: points per half disc.
    """
    radius_b = radius_a if radius_b is None else radius_b
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    length = (dx * dx + dy * dy) ** 0.5
    along = np.array([dx / length, dy / length]) if length > 1e-9 else np.array([1.0, 0.0])
    across = np.array([-along[1], along[0]])
    half = _unit_circle(count, -np.pi / 2, np.pi / 2)  # (count, 2): cos, sin
    local = half[:, :1] * along + half[:, 1:] * across  # the half disc facing along the limb
    return np.concatenate([np.asarray(b, np.float64) + radius_b * local, np.asarray(a, np.float64) - radius_a * local])


def ellipse(centre: np.ndarray, axes: tuple[float, float], angle: float, count: int = 24) -> np.ndarray:
    """An ellipse with half axes (along ``angle``, across it), (count, 2)."""
    local = _unit_circle(count, 0.0, 2 * np.pi, False) * np.array([axes[0], axes[1]])
    c, s = np.cos(angle), np.sin(angle)
    return np.asarray(centre, np.float64) + local @ np.array([[c, s], [-s, c]])


def clip_half_plane(polygon: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """The part of a convex polygon where ``point . normal <= offset`` (one Sutherland-Hodgman pass)."""
    side = polygon @ normal - offset  # (N,) <= 0 inside
    kept = []
    for i in range(len(polygon)):
        p, q, sp, sq = polygon[i], polygon[(i + 1) % len(polygon)], side[i], side[(i + 1) % len(polygon)]
        if sp <= 0:
            kept.append(p)
        if (sp <= 0) != (sq <= 0):
            kept.append(p + (q - p) * (sp / (sp - sq)))
    return np.array(kept) if kept else np.zeros((0, 2))
