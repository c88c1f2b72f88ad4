"""HOG's people search over parts of a frame (cues/hog_search.py) is the whole-frame search, window for
window: over the whole frame it returns what OpenCV's detectMultiScale returns, over a region the very
windows of the whole-frame search that lie in it, so what the tracker finds does not hang on where a
region starts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from directanimator_core.cues import detectors, hog_search, segment
from directanimator_core.cues.config import SegmentConfig
from harness import media


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    # vtest at its own size and enlarged as find_people enlarges it (people under the 128-pixel window)
    clip = media.vtest_frames(30, step=5)
    return [clip[0], cv2.resize(clip[2], None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR), clip[4]]


def _rows(rects: np.ndarray, scores: np.ndarray) -> list[tuple]:
    return sorted((*map(int, r), round(float(s), 9)) for r, s in zip(np.asarray(rects).reshape(-1, 4),
                                                                       np.asarray(scores).ravel()))


def test_over_the_whole_frame_it_is_detect_multi_scale(frames) -> None:
    hog = detectors._hog()
    found = 0
    for image in frames:
        theirs = hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        ours = hog_search.detect(hog, image, [(0, 0, image.shape[1], image.shape[0])])
        assert _rows(*ours) == _rows(*theirs)
        found += len(ours[0])
    assert found >= 5, "the frames should hold people for the comparison to mean something"


def test_a_region_holds_exactly_the_whole_frame_windows_inside_it(frames) -> None:
    hog = detectors._hog()
    rng = np.random.default_rng(3)
    for image in frames[:2]:
        height, width = image.shape[:2]
        every, scores = hog_search.windows(hog, image, [(0, 0, width, height)])
        assert len(every) > 20
        for _ in range(4):
            x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            region = (x0, y0, min(width, x0 + int(rng.integers(150, width))),
                      min(height, y0 + int(rng.integers(200, height))))
            inside = (((every[:, 0] >= region[0]) | (region[0] == 0)) & ((every[:, 1] >= region[1]) | (region[1] == 0))
                      & ((every[:, 0] + every[:, 2] <= region[2]) | (region[2] == width))
                      & ((every[:, 1] + every[:, 3] <= region[3]) | (region[3] == height)))
            assert _rows(*hog_search.windows(hog, image, [region])) == _rows(every[inside], scores[inside])


def test_a_walker_is_found_alike_wherever_the_searched_region_starts() -> None:
    # detectMultiScale on crops gives the walker a box that moves with the crop's corner (its pyramid and
    # window grid follow the crop); the region search gives the whole-frame box from each region
    frame = media.vtest_frames(1)[0]
    threshold = SegmentConfig().hog_threshold
    around = [(600, 190, 740, 380), (601, 191, 741, 381), (603, 186, 739, 383)]  # all hold the walker at x 643-688
    ours = [[b for b, _ in detectors.detect_people(frame, 1.5, threshold, [region])] for region in around]
    assert all(len(found) == 1 for found in ours), ours
    whole = [b for b, _ in detectors.detect_people(frame, 1.5, threshold)]
    assert all(any(np.array_equal(found[0], b) for b in whole) for found in ours)
    cropped = [detectors.detect_people(frame[y0:y1, x0:x1], 1.5, threshold)[0][0] + [x0, y0, x0, y0]
               for x0, y0, x1, y1 in around]
    assert len({tuple(np.round(b, 3)) for b in cropped}) == 3, "crops were expected to disagree (the reason for all this)"


def test_grouping_drops_thin_groups_and_keeps_the_best_score() -> None:
    rects = np.array([[10, 10, 64, 128], [12, 10, 64, 128], [10, 12, 64, 128], [300, 10, 64, 128]])
    scores = np.array([0.5, 1.5, 1.0, 3.0])
    grouped, best = hog_search.group(rects, scores)
    assert _rows(grouped, best) == [(11, 11, 64, 128, 1.5)]  # the lone window at x=300 has no support
    assert hog_search.group(rects[:2], scores[:2])[0].shape == (0, 4)
    clipped, _ = hog_search.clip(np.array([[-6, 5, 20, 20], [-30, 0, 10, 10]]), np.array([1.0, 2.0]), 100, 100)
    assert clipped.tolist() == [[0, 5, 14, 20]]


def test_find_people_with_a_motion_mask_searches_only_who_moves() -> None:
    frames = media.vtest_frames(8)
    background = np.median(frames, axis=0).astype(np.uint8)
    frame = frames[0]
    min_area = 0.004 * frame.shape[0] * frame.shape[1]
    moving = segment.motion_mask(frame, background, SegmentConfig().motion_threshold)
    regions = segment.search_regions(moving, min_area)
    searched = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
    assert 0 < searched < 0.5 * frame.shape[0] * frame.shape[1], "a few walkers should not mean the whole frame"
    people = segment.find_people(frame, SegmentConfig().hog_threshold, min_area, moving)
    everyone = segment.find_people(frame, SegmentConfig().hog_threshold, min_area)
    assert people and all(any(np.array_equal(p, q) for q in everyone) for p in people), \
        "a walker found in a moving region is the box the whole-frame search gives"
    still = np.zeros_like(moving)
    faces = detectors.detect_faces(frame, max(12, int(0.04 * min(frame.shape[:2]))))
    assert segment.search_regions(still, min_area) == []
    assert len(segment.find_people(frame, 0.0, min_area, still)) == len(faces), "nothing moves: only the faces' bodies"
    everywhere = np.full_like(moving, 255)
    assert segment.search_regions(everywhere, min_area) == [(0, 0, frame.shape[1], frame.shape[0])]
