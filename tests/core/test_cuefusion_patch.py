"""CueFusionPatch: CueFusion driven from a block loop the pack does not own (ComfyUI's WanModel runs its own)
gives exactly what our own backbone's hooked loop gives, for a batch of 2 sharing one set of cues (cond and
uncond in one CFG call), and refuses what it cannot align in one line."""

from __future__ import annotations

import pytest
import torch

from harness.wan_dit import randomise, tiny_inputs

from directanimator_core.errors import InputError
from directanimator_core.models.conditioning import Conditioning, CueLatents
from directanimator_core.models.config import CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.cuefusion_patch import CueFusionPatch, check_host
from directanimator_core.models.registry import PRESETS
from directanimator_core.models.rope import rope_table
from directanimator_core.models.wan_dit import build_backbone


def model_and_cues(fused=None) -> tuple[CueFusionDiT, dict, CueLatents]:
    torch.manual_seed(0)
    backbone = randomise(build_backbone(PRESETS["tiny-i2v"]), 0)
    adapter = randomise(CueFusion(backbone.config, CueFusionConfig(blocks=fused, same2x_depth=1)), 3)  # every weight acts
    case = tiny_inputs(backbone.config, batch=2, per_frame_t=True)
    g = torch.Generator().manual_seed(5)
    _, _, t, h, w = case["x"].shape
    cues = CueLatents(*(torch.randn((1, c, t, h, w), generator=g) for c in (16, 16, 4, 4)))
    return CueFusionDiT(backbone, adapter).eval(), case, cues


def host_forward(model: CueFusionDiT, patch: CueFusionPatch, case: dict) -> torch.Tensor:
    """A foreign block loop, the way ComfyUI's WanModel.forward_orig runs: it owns the blocks and calls the patch."""
    backbone = model.backbone
    model_in = torch.cat([case["x"], case["y"]], dim=1)
    tokens, grid = backbone.patchify(model_in)
    e, e0 = backbone.embed_time(case["t"])
    text, image = backbone.embed_context(case["context"], case.get("clip_fea"))
    rope = rope_table(grid, backbone.config.head_dim, backbone.config.rope_theta)
    hook = patch.begin(e, model_in.shape)
    for index, block in enumerate(backbone.blocks):
        if index in patch.blocks:
            tokens = patch.fuse(hook, index, tokens)
        tokens = block(tokens, e0, rope, text, image)
    return backbone.unpatchify(backbone.head(tokens, e), grid)


@pytest.mark.parametrize("fused", [None, (1,)])
def test_a_foreign_block_loop_gives_our_backbones_output_for_a_batch_sharing_one_set_of_cues(fused) -> None:
    model, case, cues = model_and_cues(fused)
    with torch.no_grad():
        ours = model(case["x"], case["t"], case["context"],
                     Conditioning(image=case["y"], clip_fea=case.get("clip_fea"), cues=cues))
        host = host_forward(model, CueFusionPatch(model.adapter, cues), case)
        plain = model(case["x"], case["t"], case["context"], Conditioning(image=case["y"], clip_fea=case.get("clip_fea")))
    assert torch.equal(host, ours)
    assert (host - plain).abs().max() > 1e-3  # the cues act


def test_a_context_window_takes_its_frames_of_the_cues() -> None:
    model, case, cues = model_and_cues()
    window = [2]  # the last latent frame, as ComfyUI's context windows index it
    e, _ = model.backbone.embed_time(case["t"][:, window])
    shape = torch.Size((2, 36, 1, *case["x"].shape[3:]))
    sliced = CueLatents(*(t[:, :, window] for t in (cues.pose, cues.face, cues.pose_mask, cues.face_mask)))
    hook = CueFusionPatch(model.adapter, cues).begin(e, shape, frames=window)
    expected = CueFusionPatch(model.adapter, sliced).begin(e, shape)
    assert torch.equal(hook.pose, expected.pose) and torch.equal(hook.face, expected.face)
    with pytest.raises(InputError, match="a context window covers latent frames up to 3, but the cues cover 3"):
        CueFusionPatch(model.adapter, cues).begin(e, shape, frames=[3])


def test_what_cannot_be_aligned_is_refused_in_one_line() -> None:
    model, case, cues = model_and_cues()
    patch = CueFusionPatch(model.adapter, cues)
    config = model.backbone.config
    with pytest.raises(InputError, match=r"width 64, 2 blocks, patch \(1, 2, 2\); this MODEL has width 128, 2 blocks"):
        check_host(model.adapter, 128, config.num_layers, config.patch_size)
    patch.check_backbone(config.dim, config.num_layers, config.patch_size)  # the right host passes
    with pytest.raises(InputError, match="cue latent pose has shape"):
        patch.check_latent(torch.Size((2, 36, 3, 8, 6)))
    e, _ = model.backbone.embed_time(case["t"])
    hook = patch.begin(e, torch.Size((2, 36, *case["x"].shape[2:])))
    extra = torch.zeros(2, hook.pose.shape[1] + 4, config.dim)  # a host that prepends reference tokens
    with pytest.raises(InputError, match="another patch adds tokens"):
        patch.fuse(hook, 0, extra)
    with pytest.raises(InputError, match="ran without the cue set-up") as refused:
        patch.fuse(None, 0, extra)
    assert "\n" not in str(refused.value)
