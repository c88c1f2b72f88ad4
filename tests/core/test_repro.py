"""The seeded reproduction table (default_model/repro.py): its worlds, pair sets, scorer and summary."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from directanimator_core.default_model import VAE_FILE, repro
from directanimator_core.default_model.cache import ENCODED
from directanimator_core.default_model.drivenness import run_driven_pair
from directanimator_core.default_model.evaluate import heldout_pair
from directanimator_core.default_model.recipe import DEFAULT, quick
from directanimator_core.default_model.same2x_run import data_config, stage_world, write_base
from directanimator_core.default_model.world import exact_triplet, segmented_triplet
from directanimator_core.models.checkpoints.adapter import load_model
from directanimator_core.models.checkpoints.vae import load_wan_vae
from directanimator_core.train.cache import read_entry

QUICK = quick(repro.TABLE_RECIPE)


def test_inside_tells_points_in_a_quadrilateral_from_points_outside() -> None:
    quad = np.array([[0.0, 0.0], [4.0, 0.0], [5.0, 6.0], [-1.0, 6.0]])
    assert repro._inside(np.array([2.0, 3.0]), quad) and repro._inside(np.array([4.5, 5.9]), quad)
    assert not repro._inside(np.array([-0.9, 1.0]), quad) and not repro._inside(np.array([2.0, 6.5]), quad)
    assert repro._inside(np.array([2.0, 3.0]), quad[::-1])  # either winding


def test_the_occlusion_set_is_the_first_pairs_with_a_wrist_over_the_torso() -> None:
    recipe = replace(DEFAULT, frames=9)
    chosen = repro.occlusion_indices(recipe, count=3, min_frames=2)
    assert len(chosen) == 3 and chosen == sorted(chosen)
    for index in range(chosen[-1] + 1):
        pair = heldout_pair(recipe, index)
        counts = (repro.wrist_over_torso(pair.driving.render).sum(), repro.wrist_over_torso(pair.truth.render).sum())
        assert (min(counts) >= 2) == (index in chosen), (index, counts)
    with pytest.raises(ValueError, match="search further"):
        repro.occlusion_indices(recipe, count=3, min_frames=2, search=chosen[1] + 1)


def test_segmenter_cues_are_the_built_in_segmenters_not_the_exact_masks() -> None:
    pair = heldout_pair(DEFAULT, 0)
    exact = exact_triplet(pair.driving.render, DEFAULT, pair.reference_render)
    noisy = segmented_triplet(pair.driving.render, DEFAULT, pair.reference_render)
    assert noisy.pose.shape == exact.pose.shape and noisy.body_mask.shape == exact.body_mask.shape
    a, b = exact.body_mask > 127, noisy.body_mask > 127
    overlap = (a & b).sum() / max((a | b).sum(), 1)
    assert 0.3 < overlap < 0.999  # the same person, found with the segmenter's errors
    assert not np.array_equal(noisy.pose, exact.pose)


def world_tensors(world: Path, recipe) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for stage in (1, 2):
        cache = Path(data_config(recipe, world, stage).cache)
        out |= {p.stem: read_entry(p) for p in sorted(cache.glob("*.safetensors"))}
    return out


@pytest.fixture(scope="module")
def base_world(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("worlds") / "base"
    folder.mkdir()
    shutil.copyfile(VAE_FILE, folder / "vae.safetensors")
    stage_world(QUICK, folder, base=False)
    return folder


@pytest.mark.parametrize("row", ["skeleton", "no_location"])
def test_a_variant_world_reusing_the_base_entries_equals_one_built_from_scratch(base_world: Path, row: str) -> None:
    variant = replace(QUICK, **repro.TRAINED[row].change)
    built = {}
    for name, reuse, encode in (("reused", base_world, repro.TRAINED[row].encode), ("scratch", None, ENCODED)):
        folder = base_world.parent / f"{row}_{name}"
        folder.mkdir()
        shutil.copyfile(VAE_FILE, folder / "vae.safetensors")
        record = stage_world(variant, folder, reuse=reuse, encode=encode, base=False)
        built[name] = world_tensors(folder, variant)
    assert record["encoded"] == sorted(ENCODED)
    base = world_tensors(base_world, QUICK)
    assert built["reused"].keys() == built["scratch"].keys() == base.keys()
    for clip, tensors in built["scratch"].items():
        assert tensors.keys() == built["reused"][clip].keys()
        for key, tensor in tensors.items():
            assert torch.equal(tensor, built["reused"][clip][key]), (clip, key)
    changed = {k for clip in base for k in base[clip] if not torch.equal(base[clip][k], built["scratch"][clip][k])}
    assert changed == ({"pose"} if row == "skeleton" else {"pose_mask", "face_mask"})


def test_a_writer_refuses_to_encode_what_an_entry_does_not_hold() -> None:
    from directanimator_core.default_model.cache import EntryWriter

    with pytest.raises(ValueError, match="only"):
        EntryWriter(data_config(QUICK, Path("x"), 1), QUICK, None, VAE_FILE, Path("y"), frozenset({"figure"}))


def test_the_scorer_gives_the_driven_ness_benchs_scores(tmp_path: Path) -> None:
    """Encoding each pair once for many models changes nothing: the scores equal drivenness.run_driven_pair's."""
    recipe = replace(quick(DEFAULT), frames=5)
    write_base(recipe, tmp_path / "base.safetensors")
    model = load_model(tmp_path / "base.safetensors", compute_dtype=torch.float32).eval()
    vae = load_wan_vae(VAE_FILE)[0]
    scorer = repro.Scorer(vae, recipe, pairs=1, steps=2)
    ours = scorer.score(model, recipe, "main", seed=3)
    again = scorer.score(model, recipe, "main", seed=3)  # from the cache
    reference = run_driven_pair(model, vae, recipe, heldout_pair(recipe, 0), heldout_pair(recipe, 1),
                                recipe.sampler(2, seed=3), ("own", "blank")).scores
    for method in ("own", "blank", "copy", "warp", "vae"):
        assert ours["per_pair"][0][method] == reference[method] == again["per_pair"][0][method], method


def result(row: str, seed: int, fig: float, blank: float = 15.0, sets: tuple = ("main",)) -> dict:
    score = {"fig_psnr": fig, "iou": 0.2, "psnr": 20.0, "ssim": 0.7}
    means = {"own": score, "blank": score | {"fig_psnr": blank}, "copy": score, "warp": score, "vae": score}
    return {"row": row, "seed": seed, "scores": {s: {"pairs": [0], "mean": means if s == "main" else {"own": score}}
                                                 for s in sets}}


def test_the_summary_gives_mean_and_spread_over_seeds_and_paired_differences() -> None:
    results = [result("ours", 0, 17.0, sets=("main", "segmenter")), result("ours", 1, 18.0, sets=("main", "segmenter")),
               result("skeleton", 0, 16.0), result("skeleton", 1, 16.5), result("no_face", 0, 17.5)]
    summary = repro.summary(results)
    ours = summary["table"]["ours (stage 2, L_S2X)"]
    assert ours["seeds"] == [0, 1] and ours["fig_psnr"]["mean"] == pytest.approx(17.5)
    assert ours["fig_psnr"]["std"] == pytest.approx(np.std([17.0, 18.0], ddof=1))
    assert ours["own_minus_blank"]["mean"] == pytest.approx(2.5) and ours["minus_ours"] is None
    skeleton = summary["table"]["pose cue = skeleton map"]
    assert skeleton["minus_ours"]["mean"] == pytest.approx(-1.25)  # (16 - 17 + 16.5 - 18) / 2
    assert summary["table"]["without face cue"]["fig_psnr"]["std"] is None  # one seed
    assert "without location cue" not in summary["table"]  # never run
    assert "ours, built-in segmenter cues" in summary["table"]
    text = repro.markdown(summary)
    assert "17.50 ± 0.71" in text and "(1 seed)" in text


def test_a_saved_result_is_reused_and_one_lacking_an_evaluation_set_is_completed(tmp_path: Path, monkeypatch) -> None:
    recipe = replace(quick(DEFAULT), frames=5)
    model_file = tmp_path / "base.safetensors"
    write_base(recipe, model_file)
    scorer = repro.Scorer(load_wan_vae(VAE_FILE)[0], recipe, pairs=1, steps=1)
    results = tmp_path / "results"
    results.mkdir()
    path = repro.result_path(results, "no_face", 0)
    path.write_text(json.dumps({"row": "no_face", "seed": 0, "scores": {}, "train_s": 12.5}))
    monkeypatch.setattr(repro, "train_row", lambda *args: model_file)  # the model trained before
    done = repro.run_row(tmp_path, "no_face", 0, scorer, recipe, results)
    assert list(done["scores"]) == ["main"] and done["rescored"] == ["main"] and done["train_s"] == 12.5
    assert json.loads(path.read_text()) == done and repro.complete(done)

    def never(*args):
        raise AssertionError("a complete result is not trained or scored again")

    monkeypatch.setattr(repro, "train_row", never)
    assert repro.run_row(tmp_path, "no_face", 0, scorer, recipe, results) == done
