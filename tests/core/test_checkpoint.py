"""Backbone checkpoints: three key layouts -> one native state dict, config from shapes for the real Wan
sizes (meta tensors, no memory), load reports on broken or foreign files, stored dtypes incl. scaled fp8."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness.wan_dit import max_diff, randomise, run_ours, tiny_inputs

from directanimator_core.errors import CheckpointError
from directanimator_core.models.checkpoints.backbone import (
    COMFYUI, DIFFUSERS, WAN, config_from_state_dict, detect_layout, from_native, load_backbone, prepare_backbone,
    to_native)
from directanimator_core.models.layers import CastLinear
from directanimator_core.models.registry import PRESETS
from directanimator_core.models.wan_dit import WanDiT, build_backbone
from directanimator_core.offload.lowbit import quantize_fp8

LAYOUTS = (WAN, COMFYUI, DIFFUSERS)


@pytest.fixture(scope="module")
def tiny() -> WanDiT:
    return randomise(build_backbone(PRESETS["tiny-i2v"]), seed=0)


def save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


# -- layouts -----------------------------------------------------------------------------------------

def test_three_layouts_give_one_native_state_dict(tiny: WanDiT) -> None:
    native = tiny.state_dict()
    for layout in LAYOUTS:
        written = from_native(native, layout)
        assert detect_layout(written) == layout
        back = to_native(written)
        assert back.layout == layout
        assert back.tensors.keys() == native.keys()
        assert all(back.tensors[k] is native[k] for k in native)  # renamed, never copied


def test_diffusers_names_are_diffusers_own(tiny: WanDiT) -> None:
    keys = set(from_native(tiny.state_dict(), DIFFUSERS))
    for key in ["condition_embedder.time_proj.weight", "condition_embedder.time_embedder.linear_1.weight",
                "condition_embedder.text_embedder.linear_2.bias", "condition_embedder.image_embedder.ff.net.0.proj.weight",
                "condition_embedder.image_embedder.norm2.bias", "scale_shift_table", "proj_out.weight",
                "patch_embedding.weight", "blocks.1.attn1.to_out.0.weight", "blocks.0.attn1.norm_q.weight",
                "blocks.0.attn2.add_k_proj.weight", "blocks.0.attn2.norm_added_k.weight", "blocks.0.ffn.net.0.proj.bias",
                "blocks.0.ffn.net.2.weight", "blocks.0.scale_shift_table"]:
        assert key in keys, key
    # diffusers numbers the norms in call order: Wan's cross-attention norm3 is its norm2, and nothing is norm3
    assert "blocks.0.norm2.weight" in keys and not any(".norm3." in k for k in keys)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_and_runs_identically(tiny: WanDiT, layout: str, tmp_path: Path) -> None:
    tensors = from_native(tiny.state_dict(), layout)
    if layout == COMFYUI:  # a ComfyUI checkpoint bundles other models: ignored, and said so
        tensors["first_stage_model.decoder.conv1.weight"] = torch.zeros(3)
    model, report = load_backbone(save(tensors, tmp_path / f"{layout}.safetensors"), compute_dtype=torch.float32,
                                  num_heads=2)
    assert report.ok and report.layout == layout and report.config == PRESETS["tiny-i2v"]
    assert report.ignored == (("first_stage_model.decoder.conv1.weight",) if layout == COMFYUI else ())
    case = tiny_inputs(tiny.config)
    assert max_diff(run_ours(model, case), run_ours(tiny, case)) < 1e-5  # same weights; CPU kernels may reorder sums


def test_shards_load_as_one(tiny: WanDiT, tmp_path: Path) -> None:
    items = sorted(tiny.state_dict().items())
    half = len(items) // 2
    paths = [save(dict(items[:half]), tmp_path / "a.safetensors"), save(dict(items[half:]), tmp_path / "b.safetensors")]
    model, report = load_backbone(paths, compute_dtype=torch.float32, num_heads=2)
    assert report.ok
    case = tiny_inputs(tiny.config)
    assert max_diff(run_ours(model, case), run_ours(tiny, case)) < 1e-5  # same weights; CPU kernels may reorder sums


# -- config from shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.1-flf2v-14b",
                                  "wan2.2-ti2v-5b", "wan2.2-i2v-a14b"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_real_wan_sizes_are_read_from_shapes(name: str, layout: str) -> None:
    meta = build_backbone(PRESETS[name], torch.device("meta"))  # full size, zero bytes
    assert all(p.is_meta for p in meta.parameters())
    native = to_native(from_native(meta.state_dict(), layout))
    assert config_from_state_dict(native.tensors) == PRESETS[name]


def test_meta_model_holds_no_weights_until_loaded(tiny: WanDiT) -> None:
    model, report, tensors = prepare_backbone(tiny.state_dict(), "tiny", num_heads=2)
    assert report.ok and all(p.is_meta for p in model.parameters())
    model.load_state_dict(tensors, strict=True, assign=True)
    assert not any(p.is_meta for p in model.parameters())


# -- refusals ----------------------------------------------------------------------------------------

def test_missing_and_misshapen_keys_are_counted_and_named(tiny: WanDiT, tmp_path: Path) -> None:
    tensors = dict(tiny.state_dict())
    del tensors["blocks.1.ffn.2.bias"]
    tensors["blocks.0.cross_attn.o.weight"] = torch.zeros(64, 32)
    tensors["blocks.0.lora_down.weight"] = torch.zeros(4, 64)
    path = save(tensors, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_backbone(path, num_heads=2)
    text = str(error.value)
    assert "broken.safetensors (wan layout)" in text
    assert "missing 1 (e.g. 'blocks.1.ffn.2.bias')" in text
    assert "unexpected 1 (e.g. 'blocks.0.lora_down.weight')" in text
    assert "wrong shape 1 (e.g. 'blocks.0.cross_attn.o.weight')" in text


def test_an_unrelated_model_is_refused_naming_expected_and_found(tmp_path: Path) -> None:
    path = save({"net.layer.weight": torch.ones(4), "conv1.weight": torch.ones(2)}, tmp_path / "mystery.safetensors")
    with pytest.raises(CheckpointError, match=r"mystery.safetensors is not a Wan diffusion model: expected a key "
                                              r"'model.diffusion_model.head.modulation' \(comfyui\).*found 2 keys like "
                                              r"'conv1.weight'"):
        load_backbone(path)
    vae = save({"decoder.middle.0.residual.0.gamma": torch.ones(4), "conv1.weight": torch.ones(2)},
               tmp_path / "wan_2.1_vae.safetensors")  # a known other model is named for what it is
    with pytest.raises(CheckpointError, match=r"wan_2.1_vae.safetensors is a Wan 2.1 VAE \(found "
                                              r"'decoder.middle.0.residual.0.gamma'\), not a Wan diffusion model"):
        load_backbone(vae)


def test_a_wan_variant_is_named(tiny: WanDiT, tmp_path: Path) -> None:
    tensors = from_native(tiny.state_dict(), COMFYUI)
    tensors["model.diffusion_model.vace_patch_embedding.weight"] = torch.zeros(64, 96, 1, 2, 2)
    with pytest.raises(CheckpointError, match="vace.safetensors is a Wan VACE model"):
        load_backbone(save(tensors, tmp_path / "vace.safetensors"), num_heads=2)


def test_pickles_truncated_and_missing_files_are_refused(tiny: WanDiT, tmp_path: Path) -> None:
    pickled = tmp_path / "model.pth"
    torch.save(tiny.state_dict(), pickled)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"a": 1}))
    good = save(tiny.state_dict(), tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (pickled, raw):
        with pytest.raises(CheckpointError, match="not a readable safetensors file.*never loaded"):
            load_backbone(path, num_heads=2)
    with pytest.raises(CheckpointError, match="truncated.safetensors is not a readable safetensors file: .*truncated"):
        load_backbone(truncated, num_heads=2)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(tmp_path / "nowhere.safetensors")


def test_head_count_is_asked_for_when_shapes_cannot_tell(tiny: WanDiT) -> None:
    with pytest.raises(CheckpointError, match="width 64 is not a multiple of Wan's 128-wide heads.*pass num_heads"):
        config_from_state_dict(tiny.state_dict())


# -- stored dtypes -----------------------------------------------------------------------------------

def fp8_copy(model: WanDiT, dtype: torch.dtype, scaled: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(file tensors with every Linear weight in fp8 (+ scale_weight), the same weights dequantised in fp32)."""
    stored, exact = {}, dict(model.state_dict())
    linears = {n + ".weight" for n, m in model.named_modules() if isinstance(m, CastLinear)}
    for key, value in model.state_dict().items():
        if key in linears:
            q, scale = quantize_fp8(value, dtype, scaled=scaled)
            stored[key] = q
            exact[key] = q.float() * (1 if scale is None else scale)
            if scale is not None:
                stored[key[: -len("weight")] + "scale_weight"] = scale
        else:
            stored[key] = value
    return stored, exact


@pytest.mark.parametrize("dtype, scaled", [(torch.float8_e4m3fn, False), (torch.float8_e5m2, False),
                                           (torch.float8_e4m3fn, "scale_weight"), (torch.float8_e4m3fn, "weight_scale")])
def test_fp8_weights_stay_fp8_and_compute_what_they_store(tiny: WanDiT, dtype: torch.dtype, scaled,
                                                          tmp_path: Path) -> None:
    stored, exact = fp8_copy(tiny, dtype, bool(scaled))
    if scaled == "scale_weight":  # ComfyUI's scaled-fp8 file: prefixed keys, the marker tensor, input scales
        stored = from_native(stored, COMFYUI) | {"model.diffusion_model.scaled_fp8": torch.empty(0, dtype=dtype),
                                                 "model.diffusion_model.blocks.0.ffn.0.scale_input": torch.ones(())}
    elif scaled == "weight_scale":  # ComfyUI's per-layer mixed-precision names
        stored = {k.replace(".scale_weight", ".weight_scale"): v for k, v in stored.items()}
        stored["blocks.0.ffn.0.input_scale"] = torch.ones(())
    model, report = load_backbone(save(stored, tmp_path / "fp8.safetensors"), compute_dtype=torch.float32,
                                  num_heads=2)
    assert report.ok and report.scaled == (32 if scaled else 0)  # 12 Linears per block x 2 + 8 outside
    assert model.blocks[0].ffn[0].weight.dtype == dtype  # held in fp8, upcast per call
    assert model.time_embedding[0].weight.dtype == torch.float32  # fp32 island, dequantised at load
    reference = build_backbone(tiny.config)
    reference.load_state_dict(exact)
    case = tiny_inputs(tiny.config)
    ours, ideal = run_ours(model, case), run_ours(reference, case)
    assert max_diff(ours, ideal) < 1e-4  # exactly the stored weights, up to fp32 round-off
    error = max_diff(ours, run_ours(tiny, case)) / run_ours(tiny, case).abs().max().item()
    assert error < (0.5 if dtype == torch.float8_e5m2 else 0.25)  # within the format's few mantissa bits


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_files_load_close_to_fp32(tiny: WanDiT, dtype: torch.dtype, tolerance: float,
                                                 tmp_path: Path) -> None:
    stored = {k: v.to(dtype) for k, v in tiny.state_dict().items()}
    model, report = load_backbone(save(stored, tmp_path / "half.safetensors"), compute_dtype=dtype, num_heads=2)
    assert report.dtypes == (str(dtype).removeprefix("torch."),)
    assert model.blocks[0].self_attn.q.weight.dtype == dtype and model.blocks[0].modulation.dtype == torch.float32
    case = tiny_inputs(tiny.config)
    reference = run_ours(tiny, case)
    assert max_diff(run_ours(model, case), reference) / reference.abs().max().item() < tolerance * 10
