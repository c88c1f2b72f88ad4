"""The pose cue's frequency-domain low-pass, on real footage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from directanimator_core.cues.config import PoseConfig
from directanimator_core.cues.lowpass import gaussian_response, high_frequency_energy, lowpass
from directanimator_core.errors import InputError
from harness import media


def test_lowpass_removes_high_frequency_energy() -> None:
    frames = media.vtest_frames(2)
    before = high_frequency_energy(frames)
    after = high_frequency_energy(lowpass(frames, cutoff=0.04))
    assert before > 0.01  # grass, bricks, gravel: real texture to remove
    assert after < 0.15 * before  # what is left is mostly the uint8 rounding, which is white noise


def test_lower_cutoff_removes_more() -> None:
    frame = media.astronaut()[None]
    energies = [high_frequency_energy(lowpass(frame, cutoff), above=0.08) for cutoff in (0.2, 0.08, 0.03)]
    assert energies[0] > energies[1] > energies[2]


def test_lowpass_keeps_the_picture() -> None:
    """Low frequencies (silhouette, layout) survive: the mean and a heavily blurred copy agree."""
    frame = media.astronaut()[None]
    out = lowpass(frame, 0.04)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert abs(out.astype(float).mean() - frame.astype(float).mean()) < 2.0
    wide = lowpass(frame, 0.5)
    assert np.abs(wide.astype(int) - frame.astype(int)).mean() < 2.0  # sigma 0.5 passes nearly all


def test_matches_a_spatial_gaussian_blur() -> None:
    """A Gaussian of sigma_f cycles/pixel in frequency is a Gaussian of 1/(2 pi sigma_f) pixels in space: the
    frequency-domain filter (the definition, which lowpass itself runs as OpenCV's blur at this cut-off)
    against OpenCV's spatial blur."""
    import cv2

    from directanimator_core.cues.lowpass import _lowpass

    frame = media.astronaut()[None, 128:384, 128:384]
    cutoff = 0.05
    sigma = 1 / (2 * np.pi * cutoff)
    spatial = cv2.GaussianBlur(frame[0], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    ours = _lowpass(np.ascontiguousarray(frame), cutoff, False)[0]
    inner = (slice(20, -20), slice(20, -20))  # borders differ by padding only
    assert np.abs(ours[inner].astype(int) - spatial[inner].astype(int)).mean() < 1.0


def test_greyscale_has_equal_channels() -> None:
    out = lowpass(media.astronaut()[None], 0.1, greyscale=True)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_response_is_one_at_dc() -> None:
    response = gaussian_response(32, 32, 0.1)
    assert response.shape == (32, 17) and torch.isclose(response[0, 0], torch.tensor(1.0))


@pytest.mark.parametrize("cutoff", [0.0, -0.1, 0.7])
def test_cutoff_out_of_range_is_named(cutoff: float) -> None:
    with pytest.raises(InputError, match=f"cutoff={cutoff} is outside"):
        PoseConfig(cutoff=cutoff)


@pytest.mark.parametrize("cutoff", [0.03, 0.04, 0.08, 0.15])
@pytest.mark.parametrize("greyscale", [False, True])
def test_the_fast_spatial_blur_equals_the_frequency_domain_filter(cutoff: float, greyscale: bool) -> None:
    """lowpass runs a separable blur for these cut-offs; the FFT filter (the definition, H(f) on the
    reflect-padded frame) is the reference: equal to the 8-bit rounding, borders included."""
    from directanimator_core.cues.lowpass import _lowpass

    frames = np.ascontiguousarray(media.pan_clip(media.astronaut(), 2, size=200))
    fast, reference = lowpass(frames, cutoff, greyscale), _lowpass(frames, cutoff, greyscale)
    difference = np.abs(fast.astype(int) - reference.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_a_wide_cutoff_keeps_the_frequency_filter() -> None:
    from directanimator_core.cues.lowpass import _lowpass

    frames = np.ascontiguousarray(media.astronaut()[None, :96, :96])
    assert np.array_equal(lowpass(frames, 0.3), _lowpass(frames, 0.3, False))
