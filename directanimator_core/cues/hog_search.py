"""OpenCV's HOG people search, window for window, over parts of an image only.

``cv2.HOGDescriptor.detectMultiScale`` scores every 64x128 window of an image pyramid, groups the hits
and returns the groups. Most of a frame of a static shot holds nobody who moves, so the tracker asks
for the windows inside a few regions only. Run on crops, detectMultiScale would give other answers:
its pyramid sizes and window grid follow the crop, so a person's box would depend on where the crop
starts (and a clip's answer on its length, through the median background the regions come from).
Here each pyramid level is the whole image resized exactly as detectMultiScale resizes it, the
windows are scored on a crop of that level aligned to the level's window grid, and only windows whose
pixels (and their gradient neighbours) lie inside the crop are kept: they are the very windows, with
the very scores, of the whole-image search. The grouping is OpenCV's (HOGDescriptor::groupRectangles)
done again on the kept windows. With the whole image as the one region it returns what
detectMultiScale returns (tests/core/test_hog_search.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import cv2
import numpy as np

WINDOW = (64, 128)  # the default people detector's window, (w, h)
STRIDE = 8  # window stride and HOG padding, as detectors.detect_people asks detectMultiScale for
PYRAMID_STEP = 1.05
MAX_LEVELS = 64  # HOGDescriptor's nlevels
GROUP_THRESHOLD = 2  # detectMultiScale's finalThreshold: a group needs more windows than this
GROUP_EPS = 0.2
Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels


def detect(hog: cv2.HOGDescriptor, image: np.ndarray, regions: Sequence[Region]) -> tuple[np.ndarray, np.ndarray]:
    """detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05) over windows inside ``regions``.

    Returns:
        (N, 4) int rects x, y, w, h clipped to the image, and (N,) float scores (a group's best window).
    """
    rects, scores = windows(hog, image, regions)
    rects, scores = group(rects, scores)
    return clip(rects, scores, image.shape[1], image.shape[0])


def levels(width: int, height: int) -> list[float]:
    """The pyramid's scales, as detectMultiScale chooses them."""
    scales, scale = [], 1.0
    while len(scales) < MAX_LEVELS and _round(width / scale) >= WINDOW[0] and _round(height / scale) >= WINDOW[1]:
        scales.append(scale)
        scale *= PYRAMID_STEP
    return scales or [1.0]


def windows(hog: cv2.HOGDescriptor, image: np.ndarray, regions: Sequence[Region]) -> tuple[np.ndarray, np.ndarray]:
    """Every hit (score >= 0) of the whole-image pyramid whose window, in image pixels, lies inside a region
    (a region reaching the image's edge takes in the windows over HOG's padding there, as the whole search
    does). Returns (N, 4) int rects x, y, w, h and (N,) float scores."""
    height, width = image.shape[:2]

    def level_hits(scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
        size = (_round(width / scale), _round(height / scale))
        level = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
        win = np.array([_round(WINDOW[0] * scale), _round(WINDOW[1] * scale)])
        return [_level_hits(hog, level, scale, win, region, (width, height)) for region in regions]

    # levels run side by side, as detectMultiScale runs them (OpenCV lets go of the GIL); the order of
    # the hits does not matter, the grouping is a partition
    with ThreadPoolExecutor(max_workers=max(1, min(cv2.getNumThreads(), 8))) as pool:
        hits = [hit for level in pool.map(level_hits, levels(width, height)) for hit in level]
    if not hits:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    return np.concatenate([r for r, _ in hits]), np.concatenate([s for _, s in hits])


def _level_hits(hog: cv2.HOGDescriptor, level: np.ndarray, scale: float, win: np.ndarray, region: Region,
                full: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The hits of one pyramid level inside one region: (N, 4) rects x, y, w, h in image pixels, (N,) scores."""
    level_h, level_w = level.shape[:2]
    # the crop: the region in level pixels, two strides wider, its corner on the window grid
    x0 = max(0, (int(region[0] / scale) - 2 * STRIDE) // STRIDE * STRIDE)
    y0 = max(0, (int(region[1] / scale) - 2 * STRIDE) // STRIDE * STRIDE)
    x1 = min(level_w, int(np.ceil(region[2] / scale)) + 2 * STRIDE)
    y1 = min(level_h, int(np.ceil(region[3] / scale)) + 2 * STRIDE)
    if x1 - x0 < WINDOW[0] or y1 - y0 < WINDOW[1]:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    points, weights = hog.detect(level[y0:y1, x0:x1], hitThreshold=0, winStride=(STRIDE, STRIDE),
                                 padding=(STRIDE, STRIDE))
    points = np.asarray(points, np.int64).reshape(-1, 2)
    weights = np.asarray(weights, np.float64).ravel()
    # Exact windows only: where the crop is cut inside the level, a window must not touch the cut, whose
    # gradients HOG computes from its own border padding instead of the level's pixels.
    px, py = points[:, 0], points[:, 1]
    exact = ((x0 == 0) | (px >= 1)) & ((y0 == 0) | (py >= 1)) & \
            ((x1 == level_w) | (px + WINDOW[0] < x1 - x0)) & ((y1 == level_h) | (py + WINDOW[1] < y1 - y0))
    ix = _round_array((px + x0) * scale)
    iy = _round_array((py + y0) * scale)
    left, top = (-np.inf if region[0] <= 0 else region[0]), (-np.inf if region[1] <= 0 else region[1])
    right = np.inf if region[2] >= full[0] else region[2]
    bottom = np.inf if region[3] >= full[1] else region[3]
    inside = (ix >= left) & (iy >= top) & (ix + win[0] <= right) & (iy + win[1] <= bottom)
    keep = exact & inside
    rects = np.stack([ix[keep], iy[keep], np.full(keep.sum(), win[0]), np.full(keep.sum(), win[1])], 1)
    return rects.astype(np.int64), weights[keep]


def group(rects: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HOGDescriptor::groupRectangles(eps 0.2, threshold 2): windows joined when every side is within eps of
    the smaller one's size, a group's box the mean of its windows and its score the best one, groups of at
    most GROUP_THRESHOLD windows and small groups inside a larger, better supported one dropped."""
    if len(rects) == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    labels = _partition(rects)
    count = labels.max() + 1
    members = np.bincount(labels, minlength=count)
    sums = np.zeros((count, 4))
    np.add.at(sums, labels, rects.astype(np.float64))
    means = _round_array(sums / members[:, None])
    best = np.full(count, -np.inf)
    np.maximum.at(best, labels, scores)
    out_rects, out_scores = [], []
    for i in range(count):
        if members[i] <= GROUP_THRESHOLD:
            continue
        if not any(_inside(means[i], members[i], means[j], members[j]) for j in range(count)
                   if j != i and members[j] > GROUP_THRESHOLD):
            out_rects.append(means[i])
            out_scores.append(best[i])
    if not out_rects:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    return np.array(out_rects, np.int64), np.array(out_scores)


def _partition(rects: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 of the classes of cv::partition with SimilarRects(GROUP_EPS) (its transitive closure)."""
    x, y, w, h = (rects[:, k].astype(np.float64) for k in range(4))
    delta = GROUP_EPS * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    similar = (np.abs(x[:, None] - x[None]) <= delta) & (np.abs(y[:, None] - y[None]) <= delta) & \
              (np.abs((x + w)[:, None] - (x + w)[None]) <= delta) & (np.abs((y + h)[:, None] - (y + h)[None]) <= delta)
    labels = np.full(len(rects), -1)
    k = 0
    for start in range(len(rects)):
        if labels[start] >= 0:
            continue
        stack = [start]
        labels[start] = k
        while stack:
            i = stack.pop()
            for j in np.nonzero(similar[i] & (labels < 0))[0]:
                labels[j] = k
                stack.append(j)
        k += 1
    return labels


def _inside(r1: np.ndarray, n1: int, r2: np.ndarray, n2: int) -> bool:
    """OpenCV's test for a small group inside a larger one that has more support."""
    dx, dy = _round(r2[2] * GROUP_EPS), _round(r2[3] * GROUP_EPS)
    return bool(r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                and r1[1] + r1[3] <= r2[1] + r2[3] + dy and (n2 > max(3, n1) or n1 < 3))


def clip(rects: np.ndarray, scores: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rects cut to the image, the empty ones dropped (detectMultiScale's clipObjects)."""
    if len(rects) == 0:
        return rects, scores
    x0 = np.maximum(rects[:, 0], 0)
    y0 = np.maximum(rects[:, 1], 0)
    x1 = np.minimum(rects[:, 0] + rects[:, 2], width)
    y1 = np.minimum(rects[:, 1] + rects[:, 3], height)
    keep = (x1 > x0) & (y1 > y0)
    return np.stack([x0, y0, x1 - x0, y1 - y0], 1)[keep], scores[keep]


def _round(value: float) -> int:
    """cvRound: to the nearest integer, halves to even (lrint)."""
    return int(np.rint(value))


def _round_array(values: np.ndarray) -> np.ndarray:
    return np.rint(values).astype(np.int64)
