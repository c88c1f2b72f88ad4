"""The Wan DiT backbone: equivalence with ComfyUI's own WanModel (comfy/ldm/wan/model.py) on the same random
weights, text-to-video, image-to-video (CLIP branch) and per-frame timesteps; shapes; input checks; hooks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness.comfyui import comfyui_dir
from harness.wan_dit import max_diff, randomise, run_comfy_wan, run_ours, tiny_inputs

from directanimator_core.errors import InputError
from directanimator_core.models.checkpoints.backbone import COMFYUI, from_native, load_backbone
from directanimator_core.models.conditioning import Conditioning
from directanimator_core.models.hooks import BlockHook, BlockReader
from directanimator_core.models.registry import PRESETS
from directanimator_core.models.wan_dit import WanDiT, build_backbone

TOLERANCE = 1e-4  # fp32 round-off through 2 blocks (outputs are O(1))
CONFIGS = {
    **PRESETS,
    # Wan 2.2 TI2V 5B's shape: 48 latent channels in and out, no image branch
    "tiny-ti2v": replace(PRESETS["tiny"], in_dim=48, out_dim=48),
    # Wan 2.1 FLF2V: the image branch with a learned position embedding over first + last frame CLIP tokens
    "tiny-flf2v": replace(PRESETS["tiny-i2v"], flf_tokens=10),
}


def tiny_model(name: str, seed: int = 0) -> WanDiT:
    return randomise(build_backbone(CONFIGS[name]), seed)


@pytest.mark.comfy
@pytest.mark.parametrize("name", ["tiny", "tiny-i2v", "tiny-ti2v", "tiny-flf2v"])
def test_matches_comfyui_wanmodel(name: str, tmp_path: Path) -> None:
    """ComfyUI runs the random weights; ours loads them from a file in ComfyUI's own key layout."""
    source = tiny_model(name)
    comfy_file = tmp_path / "comfy_layout.safetensors"
    save_file({k: v.contiguous() for k, v in from_native(source.state_dict(), COMFYUI).items()}, str(comfy_file))
    model, report = load_backbone(comfy_file, compute_dtype=torch.float32, num_heads=2)
    assert report.ok and report.layout == COMFYUI
    tokens = 10 if model.config.flf_tokens else 5
    cases = {
        "one": tiny_inputs(model.config, image_tokens=tokens),
        "batch": tiny_inputs(model.config, batch=2, seed=2, image_tokens=tokens),
        "per_frame_t": tiny_inputs(model.config, seed=3, per_frame_t=True, image_tokens=tokens),
    }
    theirs = run_comfy_wan(comfyui_dir(), model.config, source.state_dict(), cases, tmp_path)
    for case_name, case in cases.items():
        ours = run_ours(model, case)
        assert ours.shape == case["x"].shape
        assert ours.abs().max() > 0.1  # a real output, not a zero head
        assert max_diff(ours, theirs[case_name]) < TOLERANCE, case_name


def test_module_names_are_wans() -> None:
    keys = set(build_backbone(PRESETS["tiny-i2v"], torch.device("meta")).state_dict())
    for key in ["patch_embedding.weight", "text_embedding.2.bias", "time_embedding.0.weight",
                "time_projection.1.weight", "blocks.1.self_attn.norm_q.weight", "blocks.0.norm3.weight",
                "blocks.0.cross_attn.k_img.weight", "blocks.0.cross_attn.norm_k_img.weight",
                "blocks.0.ffn.2.weight", "blocks.0.modulation", "head.head.weight", "head.modulation",
                "img_emb.proj.0.weight", "img_emb.proj.4.bias"]:
        assert key in keys, key
    assert not any("norm1" in k or "norm2" in k for k in keys)  # weightless in Wan too


def test_per_frame_timesteps_equal_to_one_timestep_when_all_equal() -> None:
    model = tiny_model("tiny")
    case = tiny_inputs(model.config)
    per_frame = dict(case, t=case["t"][:, None].expand(-1, case["x"].shape[2]))
    torch.testing.assert_close(run_ours(model, case), run_ours(model, per_frame), rtol=1e-5, atol=1e-5)


def test_hooks_see_every_block_and_can_change_tokens() -> None:
    model = tiny_model("tiny")
    case = tiny_inputs(model.config)
    reader = BlockReader([0, 1])
    base = run_ours(model, case, hook=reader)
    assert sorted(reader.states) == [0, 1] and reader.states[1].shape == (1, 3 * 2 * 3, 64)

    class Nudge(BlockHook):
        def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
            return tokens + torch.linspace(0, 1, tokens.shape[-1]) if index == 1 else tokens  # not a constant: LayerNorm removes those

    assert max_diff(run_ours(model, case, hook=Nudge()), base) > 1e-3


@pytest.mark.parametrize("change, message", [
    (lambda c: dict(c, x=c["x"][:, :8]), "takes \\(B, 16"),
    (lambda c: dict(c, x=c["x"][..., :5]), "multiple of the patch"),
    (lambda c: dict(c, context=c["context"][..., :8]), "text context"),
    (lambda c: dict(c, t=torch.zeros(2)), "timestep shape"),
    (lambda c: dict(c, y=torch.zeros(1, 20, 3, 4, 6)), "image conditioning \\(20 ch\\)"),
])
def test_bad_inputs_are_refused_with_the_rule(change, message: str) -> None:
    model = tiny_model("tiny")
    with pytest.raises(InputError, match=message):
        run_ours(model, change(tiny_inputs(model.config)))


def test_i2v_needs_its_image_inputs() -> None:
    model = tiny_model("tiny-i2v")
    case = tiny_inputs(model.config)
    with pytest.raises(InputError, match="clip_fea is None"):
        model(case["x"], case["t"], case["context"], Conditioning(image=case["y"]))
    with pytest.raises(InputError, match="pass Conditioning.image"):
        model(case["x"], case["t"], case["context"], Conditioning(clip_fea=case["clip_fea"]))
    with pytest.raises(InputError, match=r"clip_fea has shape \(1, 5, 1024\); this backbone takes \(B, L, 1280\)"):
        model(case["x"], case["t"], case["context"], Conditioning(image=case["y"], clip_fea=case["clip_fea"][..., :1024]))
