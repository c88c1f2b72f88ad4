"""Hostile model files: every bad file a user can pick is refused with one line that names the file and
says what to do (a CheckpointError), before a tensor is read, through every loader that can meet it:
the node's pre-check (pipeline.loaded_model.check_model_files), the trainer's loader (load_backbone / load_model),
the VAE and adapter loaders and the ONNX detectors. Pickles are written here on purpose; a trap in
each proves the loaders never unpickle them. Also what must load: ComfyUI's per-tensor fp8 with its
``.comfy_quant`` descriptors (uint8 container too), a Wan 2.1 VAE bundled under ``first_stage_model.``
or ``vae.``, and the default CueFusionConfig on a backbone shallower than its Same2X depth."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from directanimator_core.pipeline.loaded_model import check_model_files
from directanimator_core.cues import detectors
from directanimator_core.errors import CheckpointError
from directanimator_core.models.checkpoints.adapter import load_adapter, load_model, save_adapter
from directanimator_core.models.checkpoints.backbone import COMFY_PREFIX, load_backbone, read_header
from directanimator_core.models.config import CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion
from directanimator_core.models.layers import CastLinear
from directanimator_core.models.registry import PRESETS
from directanimator_core.models.vae import TINY_VAE, build_vae
from directanimator_core.models.checkpoints.vae import load_wan_vae
from directanimator_core.models.wan_dit import WanDiT, build_backbone, init_weights
from directanimator_core.offload.lowbit import quantize_fp8

TINY = PRESETS["tiny"]
FP8_DESCRIPTOR = b'{"format": "float8_e4m3fn"}'


class Trap:
    """Unpickling this touches a marker file: the proof that a loader unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def dit() -> WanDiT:
    return init_weights(build_backbone(TINY, device=torch.device("cpu")), torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def good(dit: WanDiT, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good base (ComfyUI layout) and a good adapter for it."""
    folder = tmp_path_factory.mktemp("good")
    base, adapter = folder / "wan_tiny.safetensors", folder / "adapter.safetensors"
    save(dit.state_dict(), base, prefix=COMFY_PREFIX)
    save_adapter(CueFusion(TINY, CueFusionConfig(same2x_depth=1)).init_weights(), adapter)
    return {"base": base, "adapter": adapter}


def save(tensors: dict[str, torch.Tensor], path: Path, prefix: str = "", metadata: dict[str, str] | None = None) -> Path:
    save_file({prefix + k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def raw_safetensors(path: Path, header: object, data: bytes) -> Path:
    """A file in safetensors' framing (8-byte length, header, data) with whatever header is given."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def refusal(call: Callable[[], object], path: Path) -> str:
    """The message of the CheckpointError ``call`` raises: one line, naming ``path``'s file."""
    with pytest.raises(CheckpointError) as error:
        call()
    text = str(error.value)
    assert path.name in text, text
    assert "\n" not in text and "\r" not in text, text
    assert error.value.__cause__ is None or isinstance(error.value.__cause__, CheckpointError), "chained library error"
    return text


def fp8_tensors(model: WanDiT, scale_name: str = "weight_scale") -> dict[str, torch.Tensor]:
    """Every Linear weight in fp8 with a per-tensor scale under ``scale_name`` (ComfyUI's newer names)."""
    linears = {n + ".weight" for n, m in model.named_modules() if isinstance(m, CastLinear)}
    out = {}
    for key, value in model.state_dict().items():
        if key in linears:
            out[key], scale = quantize_fp8(value, torch.float8_e4m3fn, scaled=True)
            out[key[: -len("weight")] + scale_name] = scale
        else:
            out[key] = value
    return out


# -- files that are not safetensors at all, or damaged ones: the same line from every loader --------------------

def bad_empty(folder: Path) -> Path:
    path = folder / "empty.safetensors"
    path.write_bytes(b"")
    return path


def bad_truncated(folder: Path) -> Path:
    whole = save({"blocks.0.ffn.0.weight": torch.ones(64, 64)}, folder / "whole.safetensors").read_bytes()
    path = folder / "truncated.safetensors"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def bad_random(folder: Path) -> Path:
    path = folder / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def bad_zip_pickle(folder: Path) -> Path:
    path = folder / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "trap": Trap(folder / "unpickled")}, path)
    return path


def bad_legacy_pickle(folder: Path) -> Path:
    path = folder / "model.pt"
    torch.save({"trap": Trap(folder / "unpickled")}, path, _use_new_zipfile_serialization=False)
    return path


def bad_plain_pickle(folder: Path) -> Path:
    path = folder / "pytorch_model.bin"  # protocol 0: no magic byte, caught by its absurd "header length"
    path.write_bytes(pickle.dumps(Trap(folder / "unpickled"), protocol=0))
    return path


def bad_huge_header(folder: Path) -> Path:
    path = folder / "huge_header.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}" + bytes(64))
    return path


def bad_not_json(folder: Path) -> Path:
    return raw_safetensors(folder / "not_json.safetensors", b"this is not json at all", bytes(16))


def bad_past_end(folder: Path) -> Path:
    header = {"blocks.0.ffn.0.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return raw_safetensors(folder / "past_end.safetensors", header, bytes(8))


def bad_span(folder: Path) -> Path:
    header = {"blocks.0.ffn.0.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}
    return raw_safetensors(folder / "span.safetensors", header, bytes(8))


NOT_SAFETENSORS = {  # builder -> what the message must say
    bad_empty: r"is empty \(0 bytes\), not a safetensors model: the download or copy did not finish",
    bad_truncated: r"is not a readable safetensors file: tensor .* ends at byte \S+ of the data but the file holds "
                   r"\S+ data bytes \(truncated\): download or copy it again",
    bad_random: "is not a readable safetensors file: its first 8 bytes announce a",
    bad_zip_pickle: r"is a zip archive .*pickles are never loaded .*convert it to safetensors",
    bad_legacy_pickle: r"is a Python pickle .*pickles are never loaded .*convert it to safetensors",
    bad_plain_pickle: r"its first 8 bytes announce a .*convert it to safetensors",
    bad_huge_header: r"its first 8 bytes announce a 1,000,000,000,000-byte header but the file has",
    bad_not_json: r"is not a readable safetensors file: its header is not JSON",
    bad_past_end: r"tensor 'blocks.0.ffn.0.weight' ends at byte 16 of the data but the file holds 8 data bytes",
    bad_span: r"tensor 'blocks.0.ffn.0.weight' is F32 \[4\] \(16 bytes\) but its data_offsets span 8 bytes",
}
LOADERS = {  # name -> how a loader meets the bad file, given (bad, good files)
    "node base": lambda bad, good: check_model_files(bad, None),
    "node base + adapter": lambda bad, good: check_model_files(bad, good["adapter"]),
    "node adapter": lambda bad, good: check_model_files(good["base"], bad),
    "trainer base": lambda bad, good: load_model(bad, new_adapter=CueFusionConfig(), compute_dtype=torch.float32),
    "trainer adapter": lambda bad, good: load_model(good["base"], adapter_path=bad, num_heads=2,
                                                    compute_dtype=torch.float32),
    "load_backbone": lambda bad, good: load_backbone(bad),
    "load_adapter": lambda bad, good: load_adapter(bad, TINY),
    "load_wan_vae": lambda bad, good: load_wan_vae(bad),
}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("build", NOT_SAFETENSORS, ids=lambda b: b.__name__)
def test_a_file_that_is_not_safetensors_is_refused_in_one_line_by_every_loader(build, loader, good, tmp_path) -> None:
    bad = build(tmp_path)
    text = refusal(lambda: LOADERS[loader](bad, good), bad)
    assert re.search(NOT_SAFETENSORS[build], text), text
    assert not (tmp_path / "unpickled").exists()  # never unpickled


def test_read_header_accepts_what_safetensors_writes(good) -> None:
    header = read_header(good["base"])
    assert COMFY_PREFIX + "head.modulation" in header.tensors and header.metadata == {}


# -- safetensors files of the wrong model: named for what they are, and what to pick ------------------------------

def sd_unet(folder: Path) -> Path:
    keys = ["input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight", "middle_block.0.emb_layers.1.weight",
            "out.2.weight", "time_embed.0.weight"]
    tensors = {COMFY_PREFIX + k: torch.zeros(4, 4) for k in keys}
    tensors["first_stage_model.decoder.mid.block_1.norm1.weight"] = torch.zeros(4)
    return save(tensors, folder / "sd_xl_base_1.0.safetensors")


def wan_vae(folder: Path) -> Path:
    return save(build_vae(TINY_VAE).state_dict(), folder / "wan_2.1_vae.safetensors")


def test_an_sd_unet_is_named_not_called_a_plain_wan_checkpoint(good, tmp_path) -> None:
    bad = sd_unet(tmp_path)
    for call in (lambda: check_model_files(bad, None), lambda: check_model_files(bad, good["adapter"]),
                 lambda: load_backbone(bad)):
        text = refusal(call, bad)
        assert "plain Wan" not in text
        assert text.startswith("sd_xl_base_1.0.safetensors is a Stable Diffusion-style UNet (SD 1.x / 2.x / SDXL) "
                               "(found 'model.diffusion_model.input_blocks.0.0.weight'), not a Wan diffusion model"), text
        assert text.endswith("pick a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models folder) instead")


def test_a_vae_given_as_the_dit_is_named(good, tmp_path) -> None:
    bad = wan_vae(tmp_path)
    for call in (lambda: check_model_files(bad, None), lambda: load_backbone(bad),
                 lambda: load_model(bad, new_adapter=CueFusionConfig())):
        text = refusal(call, bad)
        assert text == ("wan_2.1_vae.safetensors is a Wan 2.1 VAE (found 'decoder.middle.0.residual.0.gamma'), not a "
                        "Wan diffusion model (which has 'head.modulation'): use it as the VAE and pick a Wan 2.1 / 2.2 "
                        "diffusion model (ComfyUI's diffusion_models folder) here")


def test_a_dit_given_as_the_vae_is_named(good) -> None:
    text = refusal(lambda: load_wan_vae(good["base"]), good["base"])
    assert text == ("wan_tiny.safetensors is a Wan DiT diffusion model (found 'model.diffusion_model.head.modulation'), "
                    "not a Wan 2.1 VAE (which has 'decoder.middle.0.residual.0.gamma'): pick the VAE file (ComfyUI's "
                    "wan_2.1_vae.safetensors in models/vae)")


def test_an_adapter_given_as_the_base_is_named(good) -> None:
    bad = good["adapter"]
    for call in (lambda: check_model_files(bad, None), lambda: check_model_files(bad, bad), lambda: load_backbone(bad)):
        text = refusal(call, bad)
        assert text.startswith("adapter.safetensors is a DirectAnimator (CueFusion) adapter (found 'cuefusion."), text
        assert text.endswith("pick it as the adapter and a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models "
                             "folder) as the base model")


def test_a_dit_or_vae_given_as_the_adapter_is_named(good, tmp_path) -> None:
    text = refusal(lambda: check_model_files(good["base"], good["base"]), good["base"])
    assert "holds no DirectAnimator adapter tensors ('cuefusion....'); it is a Wan DiT diffusion model" in text
    vae = wan_vae(tmp_path)
    assert "; it is a Wan 2.1 VAE (found" in refusal(lambda: check_model_files(good["base"], vae), vae)


def test_a_real_wan_file_without_adapter_is_still_a_plain_wan_checkpoint(good) -> None:
    text = refusal(lambda: check_model_files(good["base"], None), good["base"])
    assert text.startswith("wan_tiny.safetensors is a plain Wan checkpoint with no DirectAnimator adapter in it")


# -- quantized weights: per-tensor fp8 loads (ComfyUI's descriptors too), the rest is refused by name -------------

def test_per_row_fp8_scales_are_refused_by_name(dit, tmp_path) -> None:
    tensors = fp8_tensors(dit)
    rows = tensors["blocks.0.ffn.0.weight"].shape[0]
    for shape, name in (((rows,), "rows.safetensors"), ((rows, 1), "rows2d.safetensors")):
        tensors["blocks.0.ffn.0.weight_scale"] = torch.full(shape, 0.01)
        bad = save(tensors, tmp_path / name, prefix=COMFY_PREFIX)
        for call in (lambda: check_model_files(bad, None), lambda: load_backbone(bad, num_heads=2)):
            text = refusal(call, bad)
            assert (f"{name} stores per-row or per-block fp8 scales ('model.diffusion_model.blocks.0.ffn.0.weight_scale' "
                    f"has shape {list(shape)}), which this pack does not load") in text
            assert text.endswith("use the model's bf16 / fp16 release or a per-tensor fp8-scaled one")


def test_comfy_quant_fp8_descriptors_load_like_the_plain_scaled_file(dit, good, tmp_path) -> None:
    plain = fp8_tensors(dit)
    reference, _ = load_backbone(save(plain, tmp_path / "scaled.safetensors"), compute_dtype=torch.float32, num_heads=2)
    layers = [k[: -len(".weight_scale")] for k in plain if k.endswith(".weight_scale")]
    described = dict(plain) | {layer + ".comfy_quant": torch.tensor(list(FP8_DESCRIPTOR), dtype=torch.uint8)
                               for layer in layers}
    in_uint8 = dict(described) | {layer + ".weight": plain[layer + ".weight"].view(torch.uint8) for layer in layers}
    for tensors, name in ((described, "quant.safetensors"), (in_uint8, "quant_u8.safetensors")):
        path = save(tensors, tmp_path / name, prefix=COMFY_PREFIX)
        check_model_files(path, good["adapter"])  # the node's pre-check lets it through
        model, report = load_backbone(path, compute_dtype=torch.float32, num_heads=2)
        assert report.ok and report.scaled == len(layers)
        assert model.blocks[0].ffn[0].weight.dtype == torch.float8_e4m3fn
        ours, theirs = model.state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k].float(), theirs[k].float()) for k in ours), name


def test_uint8_weights_without_an_fp8_descriptor_are_refused(dit, tmp_path) -> None:
    tensors = fp8_tensors(dit)
    tensors["blocks.0.ffn.0.weight"] = tensors["blocks.0.ffn.0.weight"].view(torch.uint8)
    bad = save(tensors, tmp_path / "int.safetensors")
    text = refusal(lambda: load_backbone(bad, num_heads=2), bad)
    assert "int.safetensors stores 'blocks.0.ffn.0.weight' as U8, not as floating-point weights" in text


@pytest.mark.parametrize("descriptor, metadata, expected", [
    (b'{"format": "nvfp4"}', None, r"stores layer '.*blocks.0.ffn.0' in ComfyUI's quantized format 'nvfp4', which "
                                   r"this pack does not load"),
    (b"\xff\xfe not json", None, r"the ComfyUI quantization descriptor of layer '.*blocks.0.ffn.0' is not JSON"),
    (None, {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": {
        "blocks.0.ffn.0": {"format": "int8_blockwise", "group_size": 128}}})},
     r"stores layer 'blocks.0.ffn.0' in ComfyUI's quantized format 'int8_blockwise'"),
    (None, {"_quantization_metadata": "{broken"}, r"its _quantization_metadata is not ComfyUI's JSON table of layers"),
])
def test_other_comfy_quant_formats_are_refused_in_one_sentence(dit, tmp_path, descriptor, metadata, expected) -> None:
    tensors = fp8_tensors(dit)
    if descriptor is not None:
        tensors["blocks.0.ffn.0.comfy_quant"] = torch.tensor(list(descriptor), dtype=torch.uint8)
    bad = save(tensors, tmp_path / "quantized.safetensors", prefix=COMFY_PREFIX if descriptor else "",
               metadata=metadata)
    for call in (lambda: check_model_files(bad, None), lambda: load_backbone(bad, num_heads=2)):
        text = refusal(call, bad)
        assert re.search(expected, text), text
        assert "bf16 / fp16 or fp8-scaled release" in text


def test_a_double_scaled_layer_is_refused(dit, tmp_path) -> None:
    tensors = fp8_tensors(dit) | {"blocks.0.ffn.0.weight_scale_2": torch.ones(())}
    bad = save(tensors, tmp_path / "nvfp4.safetensors")
    assert "holds 'blocks.0.ffn.0.weight_scale_2', a double-scaled quantized format" in refusal(
        lambda: load_backbone(bad, num_heads=2), bad)


# -- a VAE bundled in a larger file loads; the default adapter config fits a shallow backbone ---------------------

@pytest.mark.parametrize("prefix", ["first_stage_model.", "vae."])
def test_a_wan_vae_bundled_under_a_prefix_loads(prefix, dit, tmp_path) -> None:
    vae = build_vae(TINY_VAE)
    with torch.no_grad():
        for param in vae.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())) * 0.1)
    tensors = {prefix + k: v for k, v in vae.state_dict().items()}
    tensors |= {COMFY_PREFIX + k: v for k, v in dit.state_dict().items()}  # the DiT beside it, as ComfyUI bundles
    tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(4)
    path = save(tensors, tmp_path / "bundle.safetensors")
    loaded, report = load_wan_vae(path)
    assert report.ok and report.layout == "wan"
    assert len(report.ignored) == len(dit.state_dict()) + 1 and all(not k.startswith(prefix) for k in report.ignored)
    assert loaded.state_dict().keys() == vae.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in vae.state_dict().items())


def test_the_default_cuefusion_config_builds_on_a_shallow_backbone(good, caplog) -> None:
    adapter = CueFusion(TINY, CueFusionConfig())  # same2x_depth 10 on 2 blocks
    assert adapter.config.same2x_depth == TINY.num_layers - 1 and list(adapter.blocks) == ["0", "1"]
    assert "same2x_depth=10 is past the last block of this 2-block backbone: using block 1" in caplog.text
    model = load_model(good["base"], new_adapter=CueFusionConfig(), compute_dtype=torch.float32, num_heads=2)
    assert model.adapter.config.same2x_depth == 1


# -- ONNX detectors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"not an onnx model", None], ids=["empty", "text", "safetensors"])
def test_a_non_onnx_detector_or_segmenter_is_refused_in_one_line(content, good, tmp_path) -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    for role, call in (("yunet_face", lambda p: detectors.detect_faces(image, 12, str(p))),
                       ("centerface", lambda p: detectors.detect_faces(image, 12, str(p))),
                       ("segmenter", lambda p: detectors.onnx_segmenter(str(p)))):
        path = tmp_path / f"{role}.onnx"
        path.write_bytes(good["adapter"].read_bytes() if content is None else content)
        text = refusal(lambda: call(path), path)
        assert text.startswith(f"{path.name} is not an ONNX model OpenCV can read"), text
        assert text.endswith("in models/directanimator, or the built-in one")
