"""The cues' fast paths give what the plain whole-frame computations give, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from directanimator_core.cues import location, lowpass, segment


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 96, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("count", [5, 6])
def test_median_background_is_numpys_median(frames, count) -> None:
    sample = {i: f for i, f in enumerate(frames[:count])}
    expected = np.median(np.stack(frames[:count]), axis=0).astype(np.uint8)
    assert np.array_equal(segment.background_of(sample, count), expected)


def test_motion_mask_takes_the_largest_channel_difference(frames) -> None:
    moving = segment.motion_mask(frames[0], frames[1], 28)
    raw = (cv2.absdiff(frames[0], frames[1]).max(axis=2) > 28).astype(np.uint8) * 255
    side = 3
    raw = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    assert np.array_equal(moving, cv2.morphologyEx(raw, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)))


def _pose(frames: np.ndarray) -> np.ndarray:
    """A driver-like patch in the middle and one at a corner, on neutral grey."""
    pose = np.full_like(frames, 128)
    pose[:, 30:60, 50:70] = frames[:, 30:60, 50:70]
    pose[:, :10, -8:] = frames[:, :10, -8:]
    pose[2] = 128  # a frame with nobody
    return pose


@pytest.mark.parametrize("greyscale", [False, True])
@pytest.mark.parametrize("cutoff", [0.02, 0.04, 0.1])
def test_lowpass_around_the_driver_equals_the_whole_frame(frames, greyscale, cutoff) -> None:
    pose = _pose(frames)
    assert np.array_equal(lowpass.lowpass(pose, cutoff, greyscale, flat=128), lowpass.lowpass(pose, cutoff, greyscale))


@pytest.mark.parametrize("grid", [0, 16])
def test_softening_around_the_mask_equals_the_whole_frame(grid) -> None:
    masks = np.zeros((3, 96, 128), np.uint8)
    masks[0, 40:70, 50:80] = 255
    masks[1, :12, 120:] = 255  # at a corner: reflected as the whole frame is
    whole = []
    for mask in masks:
        mask = location._grid_max(mask, grid) if grid > 1 else mask
        whole.append(cv2.GaussianBlur(mask, (0, 0), 8.0))
    assert np.array_equal(location.soften(masks, 8.0, grid), np.stack(whole))
