"""CueFusion: a fresh (zero-gated) adapter leaves the backbone's output exactly unchanged (and equal to
ComfyUI's WanModel), the gates get gradient at once and the adapter acts after one step, cue shapes are
checked, and the adapter file round-trips alone and merged with its base model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harness.comfyui import comfyui_dir
from harness.wan_dit import max_diff, randomise, run_comfy_wan, run_ours, tiny_inputs

from directanimator_core.errors import CheckpointError, InputError
from directanimator_core.models.checkpoints.adapter import (UMT5_WIDTH, load_adapter, load_model, save_adapter,
                                                            save_merged, text_free)
from directanimator_core.models.conditioning import Conditioning, CueLatents
from directanimator_core.models.config import BackboneConfig, CueFusionConfig
from directanimator_core.models.cue_embed import pack_mask
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.hooks import BlockReader
from directanimator_core.models.registry import PRESETS
from directanimator_core.models.wan_dit import build_backbone

CUES = CueFusionConfig(cue_channels=16, mask_channels=4, same2x_depth=1)


def make_model(name: str = "tiny", cues: CueFusionConfig = CUES, seed: int = 0) -> CueFusionDiT:
    torch.manual_seed(seed)
    backbone = randomise(build_backbone(PRESETS[name]), seed)
    return CueFusionDiT(backbone, CueFusion(backbone.config, cues).init_weights()).eval()


def make_cues(case: dict[str, torch.Tensor], seed: int = 5) -> CueLatents:
    g = torch.Generator().manual_seed(seed)
    b, _, t, h, w = case["x"].shape
    return CueLatents(pose=torch.randn((b, 16, t, h, w), generator=g), face=torch.randn((b, 16, t, h, w), generator=g),
                      pose_mask=torch.rand((b, 4, t, h, w), generator=g), face_mask=torch.rand((b, 4, t, h, w), generator=g))


def randomise_adapter(adapter: CueFusion, seed: int = 3) -> CueFusion:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in adapter.parameters():
            param.copy_(0.1 * torch.randn(param.shape, generator=g))
    return adapter


# -- a fresh adapter is a no-op ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "tiny-i2v"])
def test_fresh_adapter_leaves_the_output_exactly_unchanged(name: str) -> None:
    model = make_model(name)
    case = tiny_inputs(model.backbone.config, per_frame_t=name == "tiny")
    with_cues = run_ours(model, case, cues=make_cues(case))
    assert torch.equal(with_cues, run_ours(model, case))
    assert torch.equal(with_cues, run_ours(model.backbone, case))


@pytest.mark.comfy
def test_fresh_adapter_model_equals_comfyui_wanmodel(tmp_path: Path) -> None:
    model = make_model("tiny-i2v")
    case = tiny_inputs(model.backbone.config, batch=2)
    theirs = run_comfy_wan(comfyui_dir(), model.backbone.config, model.backbone.state_dict(), {"i2v": case}, tmp_path)
    assert max_diff(run_ours(model, case, cues=make_cues(case)), theirs["i2v"]) < 1e-4


def test_gates_get_gradient_first_and_the_adapter_acts_after_one_step() -> None:
    model = make_model()
    model.backbone.requires_grad_(False)
    adapter = model.adapter.train()
    case = tiny_inputs(model.backbone.config)
    cues = make_cues(case)
    target = torch.randn_like(case["x"])
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad()
        out = model(case["x"], case["t"], case["context"], Conditioning(cues=cues))
        torch.nn.functional.mse_loss(out, target).backward()
        optimizer.step()

    step()
    gate_grads = [block.gate.grad.abs().max().item() for block in adapter.blocks.values()]
    assert all(g > 0 for g in gate_grads)
    assert adapter.cue_projection[1].weight.grad.abs().max() == 0  # zero until the gates open (adaLN-Zero)
    base = run_ours(model, case)
    assert max_diff(run_ours(model, case, cues=cues), base) > 1e-4
    step()
    assert adapter.cue_projection[1].weight.grad.abs().max() > 0
    assert adapter.pose_embedding.proj.weight.grad.abs().max() > 0 and adapter.face_embedding.proj.weight.grad.abs().max() > 0
    assert torch.equal(run_ours(model, case), base)  # the backbone itself never moved


def test_fused_blocks_are_configurable_and_checked() -> None:
    model = make_model(cues=CueFusionConfig(blocks=(1,), same2x_depth=1))
    assert list(model.adapter.blocks) == ["1"]
    randomise_adapter(model.adapter)
    case = tiny_inputs(model.backbone.config)
    reader = BlockReader([0])
    run_ours(model, case, hook=reader, cues=make_cues(case))
    plain = BlockReader([0])
    run_ours(model.backbone, case, hook=plain)
    assert torch.equal(reader.states[0], plain.states[0])  # block 0 is not fused: same hidden states
    with pytest.raises(CheckpointError, match=r"CueFusion blocks \[5\] do not exist in a backbone of 2 blocks"):
        CueFusion(PRESETS["tiny"], CueFusionConfig(blocks=(5,), same2x_depth=1))
    assert CueFusion(PRESETS["tiny"], CueFusionConfig()).config.same2x_depth == 1  # the default, clamped (logged)
    with pytest.raises(CheckpointError, match="same2x_depth=-1 names no block of a 2-block backbone: use 0..1"):
        CueFusion(PRESETS["tiny"], CueFusionConfig(same2x_depth=-1))


def test_cues_off_the_latent_grid_are_refused() -> None:
    model = make_model()
    case = tiny_inputs(model.backbone.config)
    cues = make_cues(case)
    bad = CueLatents(pose=cues.pose[:, :, :2], face=cues.face, pose_mask=cues.pose_mask, face_mask=cues.face_mask)
    with pytest.raises(InputError, match=r"cue latent pose has shape \(1, 16, 2, 4, 6\); CueFusion needs \(1, 16, 3, 4, 6\)"):
        run_ours(model, case, cues=bad)


def test_pack_mask_maps_pixel_frames_onto_latent_frames() -> None:
    mask = torch.zeros(1, 9, 16, 24)
    mask[:, 0, :8, :8] = 1  # first frame, top-left latent pixel
    mask[:, 5] = 1  # pixel frame 5 -> latent frame 2, slot 0
    packed = pack_mask(mask)
    assert packed.shape == (1, 4, 3, 2, 3)
    assert torch.equal(packed[0, :, 0, 0, 0], torch.ones(4)) and packed[0, :, 0, 1, 1].sum() == 0
    assert torch.equal(packed[0, :, 2, 0, 0], torch.tensor([1.0, 0, 0, 0]))
    with pytest.raises(InputError, match="4k \\+ 1 frames"):
        pack_mask(torch.zeros(1, 8, 16, 16))


# -- the adapter file --------------------------------------------------------------------------------

def test_adapter_file_round_trips_with_its_metadata(tmp_path: Path) -> None:
    model = make_model()
    randomise_adapter(model.adapter)
    path = save_adapter(model.adapter, tmp_path / "adapter.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta, keys = handle.metadata(), list(handle.keys())
    assert meta["format"] == "directanimator.cuefusion" and meta["format_version"] == "1"
    assert meta["same2x_depth"] == "1" and json.loads(meta["directanimator.backbone"])["dim"] == 64
    assert all(k.startswith("cuefusion.") for k in keys) and "cuefusion.blocks.1.gate" in keys
    loaded = load_adapter(path, model.backbone.config)
    assert loaded.config == CUES
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.adapter.state_dict().items())
    case = tiny_inputs(model.backbone.config)
    cues = make_cues(case)
    assert max_diff(run_ours(model, case, cues=cues), run_ours(model, case)) > 1e-3  # a trained adapter acts
    again = CueFusionDiT(model.backbone, loaded)
    assert torch.equal(run_ours(again, case, cues=cues), run_ours(model, case, cues=cues))


def test_base_plus_adapter_and_merged_file_load_the_same_model(tmp_path: Path) -> None:
    model = make_model("tiny-i2v")
    randomise_adapter(model.adapter)
    base = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(base))
    adapter = save_adapter(model.adapter, tmp_path / "adapter.safetensors")
    merged = save_merged(model, tmp_path / "merged.safetensors")
    case = tiny_inputs(model.backbone.config)
    cues = make_cues(case)
    expected = run_ours(model, case, cues=cues)
    apart = load_model(base, adapter, compute_dtype=torch.float32, num_heads=2)
    together = load_model(merged, compute_dtype=torch.float32)  # the head count comes from its metadata
    assert max_diff(run_ours(apart, case, cues=cues), expected) < 1e-5
    assert max_diff(run_ours(together, case, cues=cues), expected) < 1e-5


def test_a_text_free_model_gives_the_zero_context_output_for_any_text(tmp_path: Path) -> None:
    """A model trained on a zero text context, widened to umT5's width with a zero text input: the same
    velocity as before on the zero context, exactly, and that same velocity for any other text."""
    model = make_model("tiny-i2v")
    randomise_adapter(model.adapter)
    merged = save_merged(model, tmp_path / "merged.safetensors")
    with safe_open(str(merged), framework="pt") as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    wide, wide_metadata = text_free(tensors, metadata)
    save_file(wide, str(tmp_path / "wide.safetensors"), metadata=wide_metadata)
    widened = load_model(tmp_path / "wide.safetensors", compute_dtype=torch.float32)
    assert widened.backbone.config.text_dim == UMT5_WIDTH
    assert tensors["text_embedding.0.weight"].shape[1] == model.backbone.config.text_dim != UMT5_WIDTH
    case = tiny_inputs(model.backbone.config)
    cues = make_cues(case)
    zero = {**case, "context": torch.zeros(1, 7, model.backbone.config.text_dim)}
    expected = run_ours(model, zero, cues=cues)
    assert torch.equal(run_ours(widened, {**case, "context": torch.zeros(1, 7, UMT5_WIDTH)}, cues=cues), expected)
    texted = run_ours(widened, {**case, "context": torch.randn(1, 7, UMT5_WIDTH)}, cues=cues)
    assert torch.equal(texted, expected)
    assert max_diff(run_ours(model, case, cues=cues), expected) > 1e-4  # the original did read its text


def test_wrong_files_are_refused_naming_expected_and_found(tmp_path: Path) -> None:
    model = make_model()
    base = tmp_path / "wan_base.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(base))
    with pytest.raises(CheckpointError, match=r"not a CueFusion adapter: expected metadata format='directanimator.cuefusion', "
                                              r"found None and 0 adapter tensors and keys like \['blocks"):
        load_adapter(base, model.backbone.config)
    adapter = save_adapter(model.adapter, tmp_path / "adapter.safetensors")
    other = BackboneConfig(dim=128, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32)
    with pytest.raises(CheckpointError, match="trained on a backbone of width 64, 2 blocks.*this backbone has width 128"):
        load_adapter(adapter, other)
    with pytest.raises(CheckpointError, match="holds no CueFusion adapter"):
        load_model(base, num_heads=2)
    fresh = load_model(base, new_adapter=CUES, compute_dtype=torch.float32, num_heads=2)
    case = tiny_inputs(model.backbone.config)
    assert torch.equal(run_ours(fresh, case, cues=make_cues(case)), run_ours(fresh.backbone, case))


def test_uint8_masks_pooled_in_chunks_equal_packing_the_whole_float_mask() -> None:
    from directanimator_core.models.cue_embed import pack_uint8_mask

    mask = np.random.default_rng(0).integers(0, 256, (37, 24, 40), dtype=np.uint8)
    whole = pack_mask(torch.from_numpy(mask)[None].float() / 255.0)
    assert pack_uint8_mask(mask, chunk=5).shape == whole.shape == (1, 4, 10, 3, 5)
    torch.testing.assert_close(pack_uint8_mask(mask, chunk=5), whole)
    with pytest.raises(InputError, match="multiples of 8"):
        pack_uint8_mask(mask[:, :20])
