"""PSNR / SSIM of the default model's scoring, and the two baselines."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator_core.default_model.baselines import box_transform, copy_reference, warp_reference
from directanimator_core.default_model.metrics import psnr, ssim
from directanimator_core.errors import InputError


def frames(seed: int, shape=(3, 32, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_psnr_known_value_and_identity() -> None:
    a = np.full((2, 16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE 100 everywhere
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert psnr(a, a) == 100.0


def test_ssim_equals_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = frames(0), frames(1)
    b = ((a.astype(int) + b.astype(int)) // 2).astype(np.uint8)  # correlated, so SSIM is far from 0
    expected = np.mean([metrics.structural_similarity(x, y, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                                      use_sample_covariance=True, data_range=255)
                        for x, y in zip(a, b)])
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(InputError, match="same size|one size"):
        psnr(frames(0), frames(1, (3, 32, 32, 3)))
    with pytest.raises(InputError, match="SSIM window"):
        ssim(frames(0, (1, 8, 8, 3)), frames(1, (1, 8, 8, 3)))


def test_copy_reference_repeats() -> None:
    reference = frames(2)[0]
    out = copy_reference(reference, 5)
    assert out.shape == (5, *reference.shape) and (out == reference).all()


def test_box_transform_maps_box_onto_box() -> None:
    start, box = np.array([10.0, 10.0, 20.0, 30.0]), np.array([5.0, 0.0, 25.0, 40.0])
    matrix = box_transform(start, box)
    corners = np.array([[10.0, 10.0, 1.0], [20.0, 30.0, 1.0]]) @ matrix.T
    assert corners == pytest.approx(np.array([[5.0, 0.0], [25.0, 40.0]]))


def test_warp_reference_follows_the_driver_box() -> None:
    reference = np.zeros((32, 32, 3), np.uint8)
    reference[8:16, 8:16] = 200
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 8:16, 8:16] = 255
    masks[1, 8:16, 18:26] = 255  # the driver moved 10 pixels right
    out = warp_reference(reference, masks)
    assert (out[0] == reference).all()
    assert (out[1, 8:16, 18:26] == 200).all() and (out[1, 10:14, 8:12] == 0).all()
