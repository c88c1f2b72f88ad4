"""Character replacement's inputs (the Cut Out Person node): the person mask grown, the background with the person
cut out."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator_core.cues.replace import cut_out, grow_masks
from directanimator_core.errors import InputError


def test_grow_is_a_round_dilation_by_the_given_radius() -> None:
    masks = np.zeros((2, 21, 21), np.uint8)
    masks[:, 10, 10] = 255
    grown = grow_masks(masks, 3)
    ys, xs = np.nonzero(grown[0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (7, 13, 7, 13)
    assert grown[0, 7, 7] == 0  # round, not a square: the corner stays out
    assert np.array_equal(grown[0], grown[1])


def test_grow_zero_keeps_the_masks_and_negative_is_refused() -> None:
    masks = np.random.default_rng(0).integers(0, 2, (3, 8, 8)).astype(np.uint8) * 255
    assert grow_masks(masks, 0) is masks
    with pytest.raises(InputError, match="grow=-1 is negative"):
        grow_masks(masks, -1)


def test_cut_out_blacks_the_person_and_keeps_the_rest() -> None:
    frames = np.random.default_rng(1).integers(1, 256, (2, 6, 8, 3)).astype(np.uint8)
    masks = np.zeros((2, 6, 8), np.uint8)
    masks[:, 1:4, 2:5] = 255
    out = cut_out(frames, masks)
    assert (out[:, 1:4, 2:5] == 0).all()
    keep = masks == 0
    assert np.array_equal(out[keep], frames[keep])


def test_cut_out_in_place_blacks_the_given_frames_themselves() -> None:
    frames = np.random.default_rng(2).integers(1, 256, (2, 6, 8, 3)).astype(np.uint8)
    masks = np.zeros((2, 6, 8), np.uint8)
    masks[1, 2:5, 1:3] = 255
    expected = cut_out(frames, masks)
    assert cut_out(frames, masks, in_place=True) is frames and np.array_equal(frames, expected)


def test_cut_out_wants_one_mask_per_frame_at_the_frames_size() -> None:
    with pytest.raises(InputError, match="one mask per frame"):
        cut_out(np.zeros((2, 6, 8, 3), np.uint8), np.zeros((2, 6, 6), np.uint8))
    with pytest.raises(InputError, match="mask is 1 x 8x6 but the video is 2 x 8x6"):
        cut_out(np.zeros((2, 6, 8, 3), np.uint8), np.zeros((1, 6, 8), np.uint8), in_place=True)
