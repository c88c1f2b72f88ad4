"""Clips with exact tracking truth, made of real pixels: two walkers cut out of vtest.avi and walked
across vtest's own empty pavement along known paths, so the true box of each is known in every frame.

- ``background()``: the per-pixel median of 60 frames spread over vtest.avi (the walkers gone).
- ``sprites(name)``: a walker's frames cut out of vtest by motion against that background (RGB + mask):
  "dark" is the man in black of frames 0-23, "light" the woman in a pale top of frames 120-143.
- ``compose(walks, ...)``: a clip in which each walk pastes one walker's sprites, in turn (so the legs
  move), with the sprite's feet on a known path; nearer walkers (lower feet) hide farther ones. It
  returns the frames and, per walker, the true box of the pasted mask in each frame (NaN when off
  the frame) and the share of the walker's mask still seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from . import media

FRAME = (20, 340, 288, 768)  # the part of vtest the clips show: y0, y1, x0, x1 (pavement, lawn, the wall's cabinets)
# Hand-checked start boxes (x0, y0, x1, y1 in vtest pixels) of the two walkers, and the frames they are cut from.
WALKERS = {"dark": (0, (640, 240, 686, 322)), "light": (120, (684, 213, 729, 312))}
SPRITE_FRAMES = 24
# Of the cut frames, those that hold the walker alone (checked by eye): the pale woman is crossed by a
# man in black in her frames 8-12 (cut out with her); the man in black's frame 23 is cut short.
KEEP = {"dark": tuple(range(22)), "light": tuple(range(8)) + tuple(range(13, 24))}


def background() -> np.ndarray:
    """(576, 768, 3) uint8 RGB: vtest.avi with nobody on it (median of 60 frames over its 795)."""
    def make(tmp):
        capture = cv2.VideoCapture(str(media.opencv_doc_file("vtest.avi")))
        frames, index = [], 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % 13 == 0:
                frames.append(frame)
            index += 1
        capture.release()
        path = tmp / "vtest_background.png"
        cv2.imwrite(str(path), np.median(np.stack(frames), axis=0).astype(np.uint8))
        return path

    return cv2.cvtColor(cv2.imread(str(media._cached("vtest_background.png", make))), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Sprite:
    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool, the walker


def sprites(name: str) -> list[Sprite]:
    """SPRITE_FRAMES consecutive cut-outs of one walker (WALKERS), each cropped to its mask's box."""
    empty = background()

    def make(tmp):
        start, box = WALKERS[name]
        frames = media.vtest_frames(SPRITE_FRAMES, start=start)
        arrays = {}
        for k, frame in enumerate(frames):
            box, rgb, mask = _cut(frame, empty, np.array(box, float))
            arrays[f"rgb{k}"], arrays[f"mask{k}"] = rgb, mask
        path = tmp / f"sprites_{name}.npz"
        np.savez_compressed(path, **arrays)
        return path

    data = np.load(media._cached(f"sprites_{name}.npz", make))
    return [Sprite(data[f"rgb{k}"], data[f"mask{k}"]) for k in KEEP[name]]


def _cut(frame: np.ndarray, empty: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The walker near ``box``: pixels that differ from the empty scene, inside the box grown by a
    quarter, largest part; returns the next frame's search box, the crop and its mask."""
    height, width = frame.shape[:2]
    tall = box[3] - box[1]
    x0, y0 = int(max(0, box[0] - 0.25 * tall)), int(max(0, box[1] - 0.15 * tall))
    x1, y1 = int(min(width, box[2] + 0.25 * tall)), int(min(height, box[3] + 0.15 * tall))
    diff = cv2.absdiff(frame[y0:y1, x0:x1], empty[y0:y1, x0:x1]).max(axis=2) > 30
    diff = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    diff = cv2.morphologyEx(diff, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(diff, connectivity=8)
    part = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(part)
    tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    crop = (slice(tight[1], tight[3]), slice(tight[0], tight[2]))
    found = tight + np.array([x0, y0, x0, y0])
    return found.astype(float), frame[y0:y1, x0:x1][crop].copy(), part[crop].copy()


@dataclass(frozen=True)
class Walk:
    """One walker's path: feet (bottom centre) at ``start`` + t * ``step`` (pixels of the clip) for
    frames ``first`` <= t < ``last``; ``mirror`` flips the sprite (to walk the other way)."""

    name: str
    start: tuple[float, float]
    step: tuple[float, float]
    first: int = 0
    last: int = 10 ** 9
    mirror: bool = False
    scale: float = 1.0


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    boxes: np.ndarray  # (walkers, F, 4) the true box of each walker's mask on the frame; NaN when not on it
    seen: np.ndarray  # (walkers, F) share of the walker's mask in view and not hidden by a nearer walker
    names: tuple[str, ...]  # each walk's walker (one walker may walk twice)

    def visible(self, name: str, least: float = 0.5) -> np.ndarray:
        """(F,) bool: frames where at least ``least`` of walker ``name`` is seen."""
        return np.any([self.seen[k] >= least for k, n in enumerate(self.names) if n == name], axis=0)

    def walks_followed(self, boxes: np.ndarray, found: np.ndarray, least: float = 0.3) -> list[int]:
        """Which walk (an index into the clip's walks) each found box is on: the one whose true box it overlaps
        most (IoU >= ``least``); -1 on none. For clips where one walker walks twice (names alike)."""
        out = []
        for t in range(len(found)):
            overlaps = [iou(boxes[t], self.boxes[k, t]) if found[t] else 0.0 for k in range(len(self.names))]
            out.append(int(np.argmax(overlaps)) if max(overlaps) >= least else -1)
        return out

    def followed(self, boxes: np.ndarray, found: np.ndarray, least: float = 0.3) -> list[Optional[str]]:
        """Whom each found box is on: the walker whose true box it overlaps most (IoU >= ``least``); None
        where it is on no one, and where it overlaps two walkers' boxes by IoU 0.5 or more each (one in
        front of the other: a box cannot tell whom it is on)."""
        out: list[Optional[str]] = []
        for t in range(len(found)):
            overlaps = [iou(boxes[t], self.boxes[k, t]) if found[t] else 0.0 for k in range(len(self.names))]
            order = np.argsort(overlaps)[::-1]
            both = len(order) > 1 and overlaps[order[1]] >= 0.5 and self.names[order[1]] != self.names[order[0]]
            out.append(self.names[order[0]] if overlaps[order[0]] >= least and not both else None)
        return out


def compose(walks: list[Walk], count: int) -> Clip:
    """A clip of ``count`` frames on vtest's empty pavement (FRAME) with each walk pasted on it."""
    y0, y1, x0, x1 = FRAME
    stage = background()[y0:y1, x0:x1]
    height, width = stage.shape[:2]
    cut = {name: sprites(name) for name in {w.name for w in walks}}
    frames = np.repeat(stage[None], count, axis=0)
    boxes = np.full((len(walks), count, 4), np.nan)
    seen = np.zeros((len(walks), count))
    for t in range(count):
        placed = []  # (feet y, walker, mask on the frame)
        for k, walk in enumerate(walks):
            if not walk.first <= t < walk.last:
                continue
            sprite = cut[walk.name][(t - walk.first) % len(cut[walk.name])]
            rgb, mask = sprite.rgb, sprite.mask
            if walk.mirror:
                rgb, mask = rgb[:, ::-1], mask[:, ::-1]
            if walk.scale != 1.0:
                size = (max(1, round(rgb.shape[1] * walk.scale)), max(1, round(rgb.shape[0] * walk.scale)))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            fx = walk.start[0] + (t - walk.first) * walk.step[0]
            fy = walk.start[1] + (t - walk.first) * walk.step[1]
            left, top = int(round(fx - rgb.shape[1] / 2)), int(round(fy - rgb.shape[0]))
            full = np.zeros((height, width), bool)
            layer = np.zeros((height, width, 3), np.uint8)
            ys, xs = slice(max(top, 0), min(top + rgb.shape[0], height)), slice(max(left, 0), min(left + rgb.shape[1], width))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            sy, sx = slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left)
            full[ys, xs], layer[ys, xs] = mask[sy, sx], rgb[sy, sx]
            if full.any():
                ys_, xs_ = np.nonzero(full)
                boxes[k, t] = [xs_.min(), ys_.min(), xs_.max() + 1, ys_.max() + 1]
            placed.append((fy, k, full, layer, mask.sum()))
        hidden = np.zeros((height, width), bool)
        for fy, k, full, layer, total in sorted(placed, key=lambda p: -p[0]):  # nearest first
            seen[k, t] = (full & ~hidden).sum() / max(total, 1)
            hidden |= full
        for fy, k, full, layer, total in sorted(placed, key=lambda p: p[0]):  # farthest painted first
            frames[t][full] = layer[full]
    return Clip(frames, boxes, seen, tuple(w.name for w in walks))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0


def crossing(count: int = 70) -> Clip:
    """The man in black walks right from the left edge, the pale woman left from the right, a little
    farther away; they cross in the middle (about frame 33), he in front, hiding her for a few frames."""
    return compose([Walk("dark", (40, 300), (6, 0), mirror=True), Walk("light", (440, 285), (-6, 0))], count)


def twins_crossing(count: int = 70) -> Clip:
    """The pale woman twice, at the same distance, walking towards each other: no look tells the two apart
    where they cross (about frame 33)."""
    return compose([Walk("light", (40, 285), (6, 0), mirror=True), Walk("light", (440, 285), (-6, 0))], count)


def exit_and_return(count: int = 110) -> Clip:
    """The man in black walks out of the left edge (gone from about frame 42); the pale woman walks in at
    that edge at frame 48; the man comes back in at the right edge at frame 75, farther away, walking left."""
    return compose([Walk("dark", (300, 300), (-8, 0), last=60), Walk("light", (-20, 300), (5, 0), first=48, mirror=True),
                    Walk("dark", (500, 285), (-6, 0), first=75)], count)
