"""Long-video windows: the plan covers the clip, blending is exact where windows agree, and the windowed
latent path equals animate() when one window holds the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from directanimator_core.pipeline.single_pass import animate
from directanimator_core.pipeline.windowed import WindowConfig, animate_latents
from directanimator_core.cues.triplet import CueTriplet
from directanimator_core.errors import InputError, Interrupted, NumericError
from directanimator_core.models.config import CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.registry import get_preset
from directanimator_core.models.vae import TINY_VAE, build_vae
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.sampling import SamplerConfig
from directanimator_core.sampling.windows import blend_windows, plan_windows, windowed_velocity

PLANS = [(21, 21, 4), (30, 21, 4), (57, 21, 5), (250, 21, 4), (4, 3, 1), (7, 3, 2)]


@pytest.mark.parametrize("total,length,overlap", PLANS)
def test_plan_covers_every_frame_with_equal_windows(total, length, overlap) -> None:
    plan = plan_windows(total, length, overlap)
    covered = torch.zeros(total, dtype=torch.int64)
    for i in range(len(plan.starts)):
        covered[plan.latent_slice(i)] += 1
        assert plan.latent_slice(i).stop <= total
        pixels = plan.pixel_slice(i)
        assert (pixels.stop - pixels.start - 1) % 4 == 0 and pixels.stop <= 4 * (total - 1) + 1
    assert covered.min() >= 1 and plan.starts[0] == 0 and plan.starts[-1] + plan.length == total
    gaps = [b - a for a, b in zip(plan.starts, plan.starts[1:])]
    assert all(plan.length - gap >= overlap for gap in gaps)


@pytest.mark.parametrize("total,length,overlap", PLANS)
def test_blending_is_exact_where_windows_agree(total, length, overlap, generator) -> None:
    video = torch.randn(1, 16, total, 3, 5, generator=generator)
    plan = plan_windows(total, length, overlap)
    parts = [video[:, :, plan.latent_slice(i)] for i in range(len(plan.starts))]
    assert torch.equal(blend_windows(parts, plan), video)


def test_blend_ramps_from_the_earlier_window_to_the_later() -> None:
    plan = plan_windows(6, 4, 2)  # windows [0, 4) and [2, 6)
    parts = [torch.zeros(1, 1, 4, 1, 1), torch.ones(1, 1, 4, 1, 1)]
    out = blend_windows(parts, plan).flatten().tolist()
    assert out == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]  # the later window's first frame (the reference slot) weighs 0


def test_windowed_velocity_of_a_frame_local_model_is_the_whole_velocity(generator) -> None:
    x = torch.randn(1, 4, 11, 2, 2, generator=generator)
    plan = plan_windows(11, 4, 2)
    local = windowed_velocity(lambda xw, sigma, index: xw * sigma, plan)
    assert torch.equal(local(x, torch.tensor(3.0)), x * 3.0)


def test_window_settings_are_checked() -> None:
    with pytest.raises(InputError, match="4n \\+ 1"):
        WindowConfig(frames=80)
    with pytest.raises(InputError, match="multiple of 4"):
        WindowConfig(frames=81, overlap=6)
    with pytest.raises(InputError, match="overlap"):
        plan_windows(10, 3, 3)


# -- the latent path on tiny models ------------------------------------------------------------------------------

FRAMES, SIZE = 5, 32
CONFIG = SamplerConfig(steps=3, cfg_text=1.0, cfg_cues=1.0, seed=1)


def tiny_triplet(frames: int = FRAMES, size: int = SIZE) -> CueTriplet:
    rng = np.random.default_rng(0)
    body = np.zeros((frames, size, size), np.uint8)
    body[:, 8:28, 10:22] = 255
    flags = np.ones(frames, bool)
    return CueTriplet(pose=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
                      face=rng.integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8), body_mask=body,
                      face_mask=body // 2, person=flags, face_found=flags, quality=np.ones(frames, np.float32),
                      alignment=None)


class Recorder(torch.nn.Module):
    """Delegates to a CueFusionDiT and keeps the shape of what each call was given."""

    def __init__(self, inner: CueFusionDiT) -> None:
        super().__init__()
        self.inner, self.backbone, self.calls = inner, inner.backbone, []

    def forward(self, x, timestep, context, cond, hook=None):
        self.calls.append(tuple(x.shape))
        return self.inner(x, timestep, context, cond, hook)


@pytest.fixture(scope="module")
def parts():
    generator = torch.Generator().manual_seed(0)
    config = get_preset("tiny-i2v")
    backbone = init_weights(build_backbone(config, device=torch.device("cpu")), generator)
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02, generator=generator)  # not a zero velocity
    adapter = CueFusion(config, CueFusionConfig(same2x_depth=1)).init_weights(generator)
    with torch.no_grad():  # open gates, so the cues change the output
        for block in adapter.blocks.values():
            block.gate.normal_(0, 0.5, generator=generator)
    torch.manual_seed(0)
    return {"model": CueFusionDiT(backbone, adapter).eval(), "vae": build_vae(TINY_VAE).eval(),
            "reference": torch.rand(1, 3, SIZE, SIZE, generator=generator) * 2 - 1,
            "text": torch.randn(1, 6, config.text_dim, generator=generator),
            "clip": torch.randn(1, 257, 1280, generator=generator)}


def model_of(parts, gates: bool = True) -> Recorder:
    return Recorder(parts["model"])


def encoder(vae):
    return lambda video: vae.encode(video)


def test_one_window_equals_animate(parts) -> None:
    model = model_of(parts, gates=True)
    triplet = tiny_triplet(9)
    kwargs = {"text": parts["text"], "clip_fea": parts["clip"]}
    expected = animate(parts["reference"], triplet, model, parts["vae"], CONFIG, decode=False, **kwargs).latents
    got = animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_long_clip_runs_in_windows_and_reproduces(parts) -> None:
    model = model_of(parts, gates=True)
    triplet = tiny_triplet(17)  # 5 latent frames; windows of 3 latent frames overlapping by 1
    windows = WindowConfig(frames=9, overlap=4)
    kwargs = {"text": parts["text"], "clip_fea": parts["clip"], "windows": windows}
    first = animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, **kwargs)
    seen = set(model.calls)
    assert seen == {(1, 16, 3, 4, 4)} and len(model.calls) == 2 * CONFIG.steps
    again = animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, **kwargs)
    assert first.shape == (1, 16, 5, 4, 4) and torch.equal(first, again)


def test_resizes_to_a_set_size_and_refuses_a_mismatch(parts) -> None:
    model = model_of(parts)
    triplet = tiny_triplet(5, size=48)
    with pytest.raises(InputError, match="connect the same reference image"):
        animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, clip_fea=parts["clip"])
    out = animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, clip_fea=parts["clip"],
                          size=(16, 32))
    assert out.shape == (1, 16, 2, 2, 4)
    with pytest.raises(InputError, match="multiple of 16"):
        animate_latents(parts["reference"], triplet, model, encoder(parts["vae"]), CONFIG, clip_fea=parts["clip"],
                        size=(24, 32))


def test_a_cancel_lands_within_one_block(parts) -> None:
    model = model_of(parts)
    with pytest.raises(Interrupted, match="before block 0"):  # the first block of the first model call
        animate_latents(parts["reference"], tiny_triplet(5), model, encoder(parts["vae"]), CONFIG,
                        clip_fea=parts["clip"], should_stop=lambda: bool(model.calls))
    assert len(model.calls) == 1


def test_denoise_below_one_starts_from_the_init_latent(parts) -> None:
    triplet, kwargs = tiny_triplet(5), {"clip_fea": parts["clip"]}
    run = lambda config, **more: animate_latents(parts["reference"], triplet, model_of(parts),  # noqa: E731
                                                 encoder(parts["vae"]), config, **kwargs, **more)
    init = run(CONFIG)
    low = SamplerConfig(steps=3, cfg_text=1.0, seed=2, denoise=0.02)  # starts at sigma 0.09
    kept = run(low, init_latent=init)
    assert (kept - init).abs().mean() < 0.25 * (run(SamplerConfig(steps=3, cfg_text=1.0, seed=2)) - init).abs().mean()
    with pytest.raises(InputError, match="init latent of shape"):
        run(low, init_latent=init[:, :, :1])
    with pytest.raises(InputError, match="init latent is 64x64 pixels but the output is 32x32"):
        run(low, init_latent=torch.cat([init, init], 3).repeat_interleave(2, 4)[:, :, :, :8, :8])
    with pytest.raises(InputError, match="init latent of shape .* is not a Wan 2.1 video latent"):
        run(low, init_latent=init[:, :4])
    with pytest.raises(InputError, match="init_latent holds NaN"):
        run(low, init_latent=init * float("nan"))
    with pytest.raises(InputError, match="no init_latent is connected: connect the encoded input video"):
        run(low)


def test_nan_weights_are_caught_at_the_first_model_call(parts) -> None:
    model = parts["model"]
    weight = model.backbone.head.head.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[0, 0] = float("nan")
        with pytest.raises(NumericError, match="the model's output became NaN or infinite at sigma 1.000"):
            animate_latents(parts["reference"], tiny_triplet(5), model_of(parts), encoder(parts["vae"]), CONFIG,
                            clip_fea=parts["clip"])
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    with pytest.raises(InputError, match="positive holds NaN"):
        animate_latents(parts["reference"], tiny_triplet(5), model_of(parts), encoder(parts["vae"]), CONFIG,
                        clip_fea=parts["clip"], text=parts["text"] * float("nan"))
