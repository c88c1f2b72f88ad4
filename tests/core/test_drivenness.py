"""The driven-ness score (default_model/drivenness.py): its pieces on exact synthetic truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from directanimator_core.default_model.drivenness import (FigureTruth, blank_triplet, dilate, figure_from_background,
                                                          iou, region_psnr, region_ssim, variant_triplets)
from directanimator_core.default_model.evaluate import heldout_pair
from directanimator_core.default_model.metrics import ssim
from directanimator_core.default_model.recipe import DEFAULT

RECIPE = replace(DEFAULT, frames=5)


@pytest.fixture(scope="module")
def pairs():
    return heldout_pair(RECIPE, 0), heldout_pair(RECIPE, 1)


def test_region_scores_match_the_whole_frame_scores_on_a_full_region() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    full = np.ones(a.shape[:3], bool)
    mse = np.mean((a.astype(float) - b) ** 2, axis=(1, 2, 3))
    assert region_psnr(a, b, full) == pytest.approx(np.mean(10 * np.log10(255 ** 2 / mse)))
    assert region_ssim(a, b, full) == pytest.approx(ssim(a, b))
    half = full.copy()
    half[:, :, 12:] = False
    c = b.copy()
    c[:, :, 12:] = 0  # damage outside the region changes nothing inside it
    assert region_psnr(a, c, half) == pytest.approx(region_psnr(a, b, half))


def test_the_figure_found_against_the_known_background_is_the_truths(pairs) -> None:
    pair = pairs[0]
    truth = FigureTruth.of(pair)
    found = figure_from_background(truth.frames, truth.background)
    assert iou(found, truth.figure) > 0.8  # figure pixels of nearly the background's colour are missed
    assert (found <= dilate(truth.figure, 2)).all()  # nothing found away from the figure
    assert not figure_from_background(truth.background, truth.background).any()
    assert truth.region.sum() > truth.figure.sum() and (truth.region >= truth.figure).all()


def test_scores_tell_the_truth_from_the_reference_and_from_an_empty_scene(pairs) -> None:
    pair = pairs[0]
    truth = FigureTruth.of(pair)
    exact = truth.score(truth.frames)
    copy = truth.score(np.repeat(pair.reference[None], len(truth.frames), 0))
    empty = truth.score(truth.background)
    assert exact["fig_psnr"] == 100.0 and exact["iou"] > 0.8
    assert empty["iou"] == 0.0 and empty["fig_psnr"] < 20
    assert copy["fig_psnr"] < 25 and copy["iou"] < exact["iou"]


def test_variant_cues_differ_where_they_should(pairs) -> None:
    pair, other = pairs
    cues = variant_triplets(pair, other, RECIPE)
    assert not np.array_equal(cues["own"].pose, cues["other"].pose)
    assert cues["own"].alignment.size == cues["other"].alignment.size == pair.reference.shape[:2]
    blank = cues["blank"]
    assert (blank.pose == 128).all() and not blank.face.any() and not blank.body_mask.any()
    assert not blank.face_mask.any() and not blank.person.any()
    assert blank_triplet(cues["own"]).pose.shape == cues["own"].pose.shape


def test_the_vae_ceiling_row_is_the_truth_through_the_bundled_vae(pairs) -> None:
    """The ceiling is below the exact truth (the VAE loses detail), above an empty scene in the figure, and
    summarise turns it into the headroom over blank cues."""
    from directanimator_core.default_model import VAE_FILE
    from directanimator_core.default_model.drivenness import CEILING, summarise, through_vae
    from directanimator_core.models.checkpoints.vae import load_wan_vae

    pair = pairs[0]
    truth = FigureTruth.of(pair)
    vae = load_wan_vae(VAE_FILE)[0]
    decoded = through_vae(vae, truth.frames)
    assert decoded.shape == truth.frames.shape and decoded.dtype == np.uint8
    ceiling, empty = truth.score(decoded), truth.score(truth.background)
    assert 15 < ceiling["fig_psnr"] < 60 and ceiling["psnr"] > ceiling["fig_psnr"]
    assert ceiling["fig_psnr"] > empty["fig_psnr"] + 1 and ceiling["iou"] > empty["iou"] + 0.1
    row = {"own": empty, "blank": empty, CEILING: ceiling}
    assert summarise([row])["headroom_over_blank"] == pytest.approx(ceiling["fig_psnr"] - empty["fig_psnr"])
