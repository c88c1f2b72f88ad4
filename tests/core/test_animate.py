"""animate(): the whole path on tiny models: what the model is given, determinism, guidance, refusals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from directanimator_core.pipeline.single_pass import Animation, animate, video_tensor
from directanimator_core.cues.align import Alignment
from directanimator_core.cues.triplet import CueTriplet
from directanimator_core.errors import InputError, Interrupted
from directanimator_core.models.config import CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.registry import get_preset
from directanimator_core.models.vae import TINY_VAE, build_vae, normalize_latents
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.sampling import SamplerConfig

FRAMES, SIZE = 5, 32
CONFIG = SamplerConfig(steps=3, cfg_text=1.0, cfg_cues=1.0, seed=1)


def tiny_triplet(frames: int = FRAMES, size: int = SIZE) -> CueTriplet:
    rng = np.random.default_rng(0)
    pose = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8)  # smaller crops, zoomed by animate
    body = np.zeros((frames, size, size), np.uint8)
    body[:, 8:28, 10:22] = 255
    face_mask = np.zeros_like(body)
    face_mask[:, 8:14, 12:20] = 200
    flags = np.ones(frames, bool)
    return CueTriplet(pose=pose, face=face, body_mask=body, face_mask=face_mask, person=flags, face_found=flags,
                      quality=np.ones(frames, np.float32), alignment=None)


class Recorder(torch.nn.Module):
    """Delegates to a CueFusionDiT and keeps what each call was given."""

    def __init__(self, inner: CueFusionDiT) -> None:
        super().__init__()
        self.inner, self.backbone, self.calls = inner, inner.backbone, []

    def forward(self, x, timestep, context, cond):
        self.calls.append((x.clone(), timestep.clone(), context, cond))
        return self.inner(x, timestep, context, cond)


@pytest.fixture(scope="module")
def parts():
    generator = torch.Generator().manual_seed(0)
    config = get_preset("tiny-i2v")
    backbone = init_weights(build_backbone(config, device=torch.device("cpu")), generator)
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02, generator=generator)  # not a zero velocity
    adapter = CueFusion(config, CueFusionConfig(same2x_depth=1)).init_weights(generator)
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE).eval()
    reference = torch.rand(1, 3, SIZE, SIZE, generator=generator) * 2 - 1
    text = torch.randn(1, 6, config.text_dim, generator=generator)
    negative = torch.randn(1, 4, config.text_dim, generator=generator)
    clip = torch.randn(1, 257, 1280, generator=generator)
    return {"backbone": backbone, "adapter": adapter, "vae": vae, "reference": reference, "text": text,
            "negative": negative, "clip": clip}


def model_of(parts, gates: bool = False) -> Recorder:
    adapter = parts["adapter"]
    if gates:  # a trained-looking adapter: open gates so the cues change the output
        adapter = CueFusion(parts["backbone"].config, CueFusionConfig(same2x_depth=1))
        adapter.load_state_dict(parts["adapter"].state_dict())
        with torch.no_grad():
            for block in adapter.blocks.values():
                block.gate.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return Recorder(CueFusionDiT(parts["backbone"], adapter).eval())


def run(parts, model=None, config=CONFIG, **kwargs) -> Animation:
    kwargs = {"text": parts["text"], "clip_fea": parts["clip"]} | kwargs
    return animate(parts["reference"], kwargs.pop("triplet", tiny_triplet()), model or model_of(parts),
                   parts["vae"], config, **kwargs)


def test_shapes_range_and_determinism(parts) -> None:
    a, b = run(parts), run(parts)
    assert a.latents.shape == (1, 16, 2, 4, 4) and a.frames.shape == (1, 3, FRAMES, SIZE, SIZE)
    assert a.frames.min() >= -1 and a.frames.max() <= 1
    assert torch.equal(a.frames, b.frames)
    assert not torch.equal(a.latents, run(parts, config=replace(CONFIG, seed=2)).latents)


def test_the_model_gets_wan_timesteps_the_reference_and_the_encoded_cues(parts) -> None:
    model = model_of(parts)
    triplet = tiny_triplet()
    run(parts, model, triplet=triplet)
    assert len(model.calls) == CONFIG.steps
    x, timestep, context, cond = model.calls[0]
    assert timestep.tolist() == [1000.0]  # sigma 1 at the first step of a shifted schedule
    assert torch.equal(context, parts["text"])
    vae = parts["vae"]
    with torch.no_grad():
        pose = normalize_latents(vae.encode(video_tensor(triplet.pose)))
        reference_video = torch.zeros(1, 3, FRAMES, SIZE, SIZE)
        reference_video[:, :, 0] = parts["reference"][0]
        reference_latent = normalize_latents(vae.encode(reference_video))
    torch.testing.assert_close(cond.cues.pose, pose)
    mask = cond.image[:, :4]
    assert torch.all(mask[:, :, 0] == 1) and torch.all(mask[:, :, 1:] == 0)  # frame 0 given, the rest generated
    torch.testing.assert_close(cond.image[:, 4:], reference_latent)
    assert cond.cues.face.shape == pose.shape  # the 16x16 face crops were zoomed to the frame
    assert cond.cues.pose_mask.shape == (1, 4, 2, 4, 4)


def test_guidance_calls_and_a_fresh_adapter_is_a_no_op(parts) -> None:
    guided = replace(CONFIG, cfg_text=3.0, cfg_cues=2.0)
    model = model_of(parts)
    with_cue_guidance = run(parts, model, config=guided, negative_text=parts["negative"])
    assert len(model.calls) == 3 * CONFIG.steps
    contexts = [call[2] for call in model.calls[:3]]
    assert contexts[1] is not contexts[0] and torch.equal(contexts[1], parts["negative"])
    assert model.calls[2][3].cues is None and model.calls[0][3].cues is not None
    # zero gates: the cue-free call equals the full one, so cue guidance changes nothing
    without = run(parts, config=replace(guided, cfg_cues=1.0), negative_text=parts["negative"])
    torch.testing.assert_close(with_cue_guidance.latents, without.latents)


def test_open_gates_make_the_cues_matter(parts) -> None:
    cued = run(parts, model_of(parts, gates=True), decode=False)
    plain = run(parts, decode=False)
    assert cued.frames is None
    assert not torch.allclose(cued.latents, plain.latents)


def test_should_stop_interrupts(parts) -> None:
    model = model_of(parts)
    with pytest.raises(Interrupted):
        run(parts, model, should_stop=lambda: len(model.calls) >= 1)
    assert len(model.calls) == 1


@pytest.mark.parametrize(("change", "match"), [
    ({"triplet": tiny_triplet(frames=6)}, "6 frames; the causal VAE needs 4n \\+ 1"),
    ({"triplet": tiny_triplet(size=48)}, "cue frames are 48x48 but the reference is 32x32"),
    ({"clip_fea": None}, "needs the reference's CLIP vision features"),
    ({"config": replace(CONFIG, cfg_text=4.0)}, "cfg_text=4.0 needs negative_text"),
    ({"config": replace(CONFIG, denoise=0.5)}, "denoise=0.5"),
])
def test_bad_inputs_are_refused_before_any_work(parts, change, match) -> None:
    model = model_of(parts)
    with pytest.raises(InputError, match=match):
        run(parts, model, **change)
    assert model.calls == []


def test_a_text_to_video_backbone_is_refused(parts) -> None:
    t2v = CueFusionDiT(build_backbone(get_preset("tiny"), device=torch.device("meta")),
                       CueFusion(get_preset("tiny"), CueFusionConfig(same2x_depth=1)))
    with pytest.raises(InputError, match="no image input"):
        animate(parts["reference"], tiny_triplet(), t2v, parts["vae"], CONFIG)

