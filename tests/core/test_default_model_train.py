"""The default-model run: the VAE's pass-through start, a quick run end to end (resume, recipe guard), and
the bundled model against the baselines on held-out pairs (the issue's bar)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from directanimator_core.default_model import MODEL_FILE, VAE_FILE
from directanimator_core.default_model.recipe import DEFAULT, quick
from directanimator_core.default_model.vae_init import passthrough_init
from directanimator_core.default_model.vae_train import save_vae
from directanimator_core.errors import InputError
from directanimator_core.models.vae import VAEConfig, build_vae, normalize_latents
from directanimator_core.models.checkpoints.vae import load_wan_vae
from directanimator_core.synth import same_id_clip, split_seed


def pictures(count: int, size: int = 64) -> torch.Tensor:
    """(count, 3, 1, size, size) synthetic training frames in [-1, 1]."""
    frames = [same_id_clip(split_seed("train", i), 1, size, size).render.frames[0] for i in range(count)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[:, :, None].float() / 127.5 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / F.mse_loss(a, b)))


def test_passthrough_start_pools_in_and_upsamples_out() -> None:
    torch.manual_seed(0)
    vae = passthrough_init(build_vae(VAEConfig(dim=16)), pictures(16))
    images = pictures(20)[16:]  # pictures the heads were not fitted on
    nearest = F.interpolate(F.avg_pool3d(images, (1, 8, 8)), scale_factor=(1, 8, 8), mode="nearest")
    with torch.no_grad():
        decoded = vae.decode(vae.encode(images, chunk_frames=None), chunk_latents=None)
    assert psnr(decoded, nearest) > 24  # the start is (nearly) nearest-upsampled average pooling
    assert psnr(decoded, images) > 16


def test_passthrough_start_decodes_what_the_latent_says() -> None:
    # the failure it prevents: a decoder whose output ignores the latent (default start, after training)
    torch.manual_seed(0)
    vae = passthrough_init(build_vae(VAEConfig(dim=16)), pictures(16))
    with torch.no_grad():
        latent = vae.encode(pictures(2), chunk_frames=None)
        change = (vae.decode(latent[:1]) - vae.decode(latent[1:])).abs().mean()
    assert change > 0.05


def test_passthrough_start_keeps_wans_layout(tmp_path) -> None:
    vae = passthrough_init(build_vae(VAEConfig(dim=16)), pictures(4))
    path = save_vae(vae, tmp_path / "vae.safetensors")
    loaded = load_wan_vae(path)[0]
    assert loaded.state_dict().keys() == build_vae(VAEConfig(dim=16)).state_dict().keys()
    for key, value in vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_quick_run_trains_resumes_and_guards_its_folder(tmp_path) -> None:
    from directanimator_core.default_model.train import run_all

    out = tmp_path / "run"
    record = run_all(quick(), out)
    for name in ("vae.safetensors", "stage1/model.safetensors", "stage2/model.safetensors"):
        assert (out / name).is_file()
    assert record["stages"]["stage2"]["steps"] == quick().stage2_steps
    before = (out / "stage2" / "model.safetensors").stat().st_mtime_ns
    assert run_all(quick(), out)["stages"] == json.loads(json.dumps(record["stages"]))  # every stage reused
    assert (out / "stage2" / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(InputError, match="holds a run of another recipe"):
        run_all(replace(quick(), seed=1), out)


def test_ema_spans_at_most_a_tenth_of_a_stage_and_is_off_for_tiny_runs() -> None:
    from directanimator_core.default_model.same2x_run import ema_decay

    assert ema_decay(0.999, 3000) == pytest.approx(1 - 10 / 3000)  # span 300 steps, not 1,000
    assert ema_decay(0.999, 100_000) == 0.999
    assert ema_decay(0.999, 2) == 0.0


BUNDLED = pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()), reason="no bundled default model")
DRIVEN_MARGIN_DB = 1.0  # a cue-blind model: ~0 (earlier bundled models +0.05 and +0.2 dB, the current +0.43 on 8 pairs)


@BUNDLED
@pytest.mark.xfail(strict=True, reason="issue 12: the bundled model follows its cues only faintly (own minus blank +0.43 dB in the figure "
                   "on the 8 pairs, about +1 dB on pairs 0 and 2 at 20 steps; docs/driven.md); "
                   "when a driven model lands this passes, and strict xfail then fails until the mark is removed")
def test_bundled_model_is_driven_by_its_cues() -> None:
    """Own cues must beat blank cues in the figure region on every one of two held-out pairs: a model that
    ignores its cues (the earlier bundled one: +0.05 dB) fails."""
    from directanimator_core.default_model.drivenness import run_driven_pair
    from directanimator_core.default_model.evaluate import heldout_pair
    from directanimator_core.demo import load_default
    from directanimator_core.sampling import SamplerConfig

    torch.set_num_threads(1)
    model, vae, recipe = load_default(MODEL_FILE, VAE_FILE)
    sampler = SamplerConfig(steps=10, cfg_text=1.0, cfg_cues=1.0, shift=recipe.timestep_shift, solver="euler")
    for index in (0, 1):
        pair = heldout_pair(recipe, index)
        scores = run_driven_pair(model, vae, recipe, pair, pair, sampler, ("own", "blank")).scores
        margin = scores["own"]["fig_psnr"] - scores["blank"]["fig_psnr"]
        assert margin > DRIVEN_MARGIN_DB, (index, margin, scores)
        assert scores["own"]["iou"] > scores["blank"]["iou"], (index, scores)


@pytest.fixture(scope="module")
def heldout_means() -> dict:
    """Whole-frame PSNR and SSIM of the bundled model and both baselines over the README's 8 held-out pairs."""
    from directanimator_core.default_model.drivenness import run_driven_pair
    from directanimator_core.default_model.evaluate import heldout_pair
    from directanimator_core.demo import load_default

    torch.set_num_threads(1)
    model, vae, recipe = load_default(MODEL_FILE, VAE_FILE)
    rows = [run_driven_pair(model, vae, recipe, heldout_pair(recipe, i), heldout_pair(recipe, i), recipe.sampler(20),
                            ("own",)).scores for i in range(8)]
    return {m: {k: np.mean([r[m][k] for r in rows]) for k in ("psnr", "ssim")} for m in ("own", "copy", "warp")}


@BUNDLED
def test_bundled_model_beats_copy_and_warp_on_heldout_pairs(heldout_means) -> None:
    """Whole-frame PSNR over both baselines and SSIM over the warp (a bar a cue-blind model clears too)."""
    mean = heldout_means
    for baseline, metric in (("copy", "psnr"), ("warp", "psnr"), ("warp", "ssim")):
        assert mean["own"][metric] > mean[baseline][metric], (baseline, metric, mean)


@BUNDLED
@pytest.mark.xfail(strict=True, reason="issue 12: on the fixed world (a cross-ID truth over the reference's still "
                   "background) copying the reference scores SSIM 0.804 on the 8 pairs and the bundled model 0.797; "
                   "when a model beats it this passes, and strict xfail then fails until the mark is removed")
def test_bundled_model_beats_the_copy_baseline_in_ssim(heldout_means) -> None:
    assert heldout_means["own"]["ssim"] > heldout_means["copy"]["ssim"], heldout_means
