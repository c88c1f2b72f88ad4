"""Wan DiT checkpoint keys: detect the layout, rename to Wan's names, read the config from shapes, load.

The one module that knows backbone key names. Everything layout-specific is data at the top.

Layouts (found from sentinel keys, as ComfyUI's model_detection does):
- ``wan``: the official Wan 2.1 / 2.2 names (``blocks.0.self_attn.q.weight``, ``head.modulation``). Native.
- ``comfyui``: the same names under ``model.diffusion_model.`` (a ComfyUI-saved model or checkpoint;
  keys of other models in the file, such as ``first_stage_model.``, are ignored and reported).
- ``diffusers``: ``WanTransformer3DModel`` (``condition_embedder.time_proj``, ``blocks.0.attn1.to_q``,
  ``scale_shift_table``...), as written by diffusers' ``convert_wan_to_diffusers.py``. diffusers
  numbers the block norms in call order, so its ``norm2`` is Wan's cross-attention ``norm3``.
Stored dtypes: fp32, bf16, fp16, fp8 (e4m3fn, e5m2) and ComfyUI's scaled fp8 (a ``scaled_fp8``
marker tensor plus one ``<layer>.scale_weight`` per Linear, comfy/ops.py; or its newer per-layer
``<layer>.weight_scale``, comfy/quant_ops.py, named by its ``_quantization_metadata`` or, in files of
ComfyUI releases newer than the 0.3.75 the tests run, by per-layer ``<layer>.comfy_quant`` tensors: the
UTF-8 JSON ``{"format": "float8_e4m3fn"}`` as uint8; an fp8 weight held in a uint8 container is viewed as
fp8). ``float8_e4m3fn`` is the one format 0.3.75's ``QUANT_ALGOS`` defines (weight = q * scalar scale);
``float8_e5m2`` is read the same way. Input scales only feed ComfyUI's fp8 matmul and are dropped.
Per-row or per-block scales and every other quantized format (nvfp4, int8 blockwise...) are refused by
name: their layout is not in ComfyUI's code this pack is tested against.

Only safetensors files are read; nothing is ever unpickled. ``read_header`` (header.py)
checks a file from its first bytes and its header alone (empty, truncated, a pickle or zip, a header too
large, not JSON, offsets past the end or disagreeing with dtype and shape) and ``check_backbone_files``
names what a wrong file
is (an SD UNet, a VAE, an adapter, a text encoder...) from its keys, so every refusal is one line naming
the file, before any tensor is read. The VAE and adapter loaders and the trainer use the same two.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch
from safetensors import SafetensorError, safe_open

from ...errors import CheckpointError
from ..config import BackboneConfig
from ..layers import CastLinear
from .header import (  # noqa: F401 - read_header re-exported for the other loaders
    DOWNLOAD_AGAIN, FLOAT_DTYPES, SafetensorsHeader, _unreadable, one_line, read_header)
from ..wan_dit import WanDiT, build_backbone

log = logging.getLogger(__name__)

WAN, COMFYUI, DIFFUSERS = "wan", "comfyui", "diffusers"
COMFY_PREFIX = "model.diffusion_model."
SENTINELS = {  # layout -> a key only that layout has (checked in this order)
    COMFYUI: COMFY_PREFIX + "head.modulation",
    WAN: "head.modulation",
    DIFFUSERS: "condition_embedder.time_proj.weight",
}
SCALED_FP8_MARKER = "scaled_fp8"  # ComfyUI: its dtype is the fp8 format (fp32 means e4m3fn)
DROPPED_SUFFIXES = (".scale_input", ".input_scale")  # fp8-matmul input scales: no effect on the weight
# ComfyUI's per-layer "mixed precision" fp8 (``_quantization_metadata``, comfy/quant_ops.py TensorCoreFP8Layout)
# stores the same per-tensor scale (weight = q * scale) under another name.
SCALE_ALIASES = {".weight_scale": ".scale_weight"}

# Wan module -> diffusers module. Top level, then inside ``blocks.N.``.
DIFFUSERS_TOP = {
    "patch_embedding": "patch_embedding",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
}
DIFFUSERS_BLOCK = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",  # the cross-attention norm (the one norm with weights)
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}
# Wan variants whose extra parts this backbone does not have: sentinel key -> what the file is.
OTHER_VARIANTS = {
    "vace_patch_embedding.weight": "Wan VACE",
    "control_adapter.conv.weight": "Wan Fun camera-control",
    "casual_audio_encoder.encoder.final_linear.weight": "Wan S2V (speech-to-video)",
    "audio_proj.audio_proj_glob_1.layer.bias": "HuMo",
    "face_adapter.fuser_blocks.0.k_norm.weight": "Wan Animate",
    "ref_conv.weight": "Wan Fun reference",
}
ADAPTER_PREFIX = "cuefusion."  # adapter tensors in a merged base + adapter file
BACKBONE_METADATA = "directanimator.backbone"  # backbone config JSON in files this pack writes
BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
WAN_HEAD_WIDTH = 128  # every released Wan uses 128-wide attention heads

# ComfyUI's mixed-precision descriptors (comfy/quant_ops.py QUANT_ALGOS; per-layer ``.comfy_quant`` tensors
# in newer files). Only per-tensor fp8 is read: weight = q * weight_scale, one scalar scale.
QUANT_DESCRIPTOR = ".comfy_quant"
QUANT_METADATA = "_quantization_metadata"
FP8_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
UNREAD_SCALE_SUFFIXES = (".weight_scale_2", ".pre_quant_scale")  # double-scaled / smoothed formats (nvfp4...)

# Wan VAE sentinels (checkpoints/vae.py reads them from here: one place for key names).
VAE_WAN_SENTINEL = "decoder.middle.0.residual.0.gamma"
VAE_DIFFUSERS_SENTINEL = "decoder.mid_block.resnets.0.norm1.gamma"
VAE_WAN22_SENTINEL = "decoder.upsamples.0.upsamples.0.residual.2.weight"  # Wan 2.2's 48-channel VAE
# What a file is, from a key it holds (the key itself, or the key under any prefix), for refusals that
# name it. (sentinel, kind, description); the first hit wins, so a full SD checkpoint is its UNet.
KNOWN_FILES = (
    ("head.modulation", "dit", "a Wan DiT diffusion model"),
    ("condition_embedder.time_proj.weight", "dit", "a Wan DiT diffusion model in diffusers layout"),
    ("blocks.0.self_attn.q.weight", "dit", "a Wan DiT diffusion model"),
    ("input_blocks.0.0.weight", "other", "a Stable Diffusion-style UNet (SD 1.x / 2.x / SDXL)"),
    ("double_blocks.0.img_attn.qkv.weight", "other", "a Flux- or HunyuanVideo-style diffusion model"),
    ("joint_blocks.0.x_block.attn.qkv.weight", "other", "a Stable Diffusion 3 diffusion model"),
    (VAE_WAN22_SENTINEL, "vae", "the Wan 2.2 VAE"),
    (VAE_WAN_SENTINEL, "vae", "a Wan 2.1 VAE"),
    (VAE_DIFFUSERS_SENTINEL, "vae", "a Wan 2.1 VAE (diffusers layout)"),
    ("decoder.mid.block_1.norm1.weight", "vae", "an image VAE (Stable Diffusion / Flux)"),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", "other", "a T5 / umT5 text encoder"),
    ("text_model.encoder.layers.0.self_attn.q_proj.weight", "other", "a CLIP text encoder"),
    ("vision_model.encoder.layers.0.self_attn.q_proj.weight", "other", "a CLIP vision encoder"),
)
LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora_unet_")
NOT_A_DIT_ADVICE = {  # what to do when the DiT loader is given one of these
    "vae": "use it as the VAE and pick a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models folder) here",
    "adapter": "pick it as the adapter and a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models folder) as "
               "the base model",
    "lora": "apply it with a LoRA loader and pick a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models "
            "folder) here",
}
PICK_A_DIT = "pick a Wan 2.1 / 2.2 diffusion model (ComfyUI's diffusion_models folder) instead"



@dataclass(frozen=True)
class LoadReport:
    """What a load found: layout, config, and keys the model lacked, left over, or shaped differently.

    ``ignored`` are keys of other models bundled in the file (a ComfyUI checkpoint's VAE, text encoder);
    ``scaled`` counts Linear layers that came with a ComfyUI ``scale_weight``; ``dtypes`` lists the
    stored dtypes seen.
    """

    layout: str
    config: Optional[BackboneConfig] = None
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    scaled: int = 0
    dtypes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


# -- layouts -----------------------------------------------------------------------------------------

def describe_file(keys: Iterable[str]) -> Optional[tuple[str, str, str]]:
    """What a file is from its keys, as (kind, description, the key that says so), or None when unknown.

    Kinds: ``"dit"`` (a Wan DiT), ``"adapter"`` (a CueFusion adapter), ``"vae"``, ``"lora"``, ``"other"``.

    Args:
        keys: every key of the file.
    """
    keys = list(keys)
    for sentinel, kind, description in KNOWN_FILES:
        key = next((k for k in keys if k == sentinel or k.endswith("." + sentinel)), None)
        if key is not None:
            return kind, description, key
    key = next((k for k in keys if k.startswith(ADAPTER_PREFIX)), None)
    if key is not None:
        return "adapter", "a DirectAnimator (CueFusion) adapter", key
    key = next((k for k in keys if any(marker in k for marker in LORA_MARKERS)), None)
    if key is not None:
        return "lora", "a LoRA", key
    return None


def detect_layout(keys: Iterable[str], source: str = "the file") -> str:
    """``"wan"``, ``"comfyui"`` or ``"diffusers"`` from sentinel keys; CheckpointError naming what was found.

    Args:
        keys: every key of the file(s).
        source: the file name, for messages.
    """
    keys = set(keys)
    for key in keys:
        bare = key[len(COMFY_PREFIX):] if key.startswith(COMFY_PREFIX) else key
        if bare in OTHER_VARIANTS:
            raise CheckpointError(f"{source} is a {OTHER_VARIANTS[bare]} model (found {key!r}), not a plain Wan DiT: "
                                  "DirectAnimator runs on Wan 2.1 / 2.2 T2V, I2V or TI2V diffusion models; load one")
    for layout, sentinel in SENTINELS.items():
        if sentinel in keys:
            return layout
    found = describe_file(keys)
    if found is not None and found[0] != "dit":
        kind, description, key = found
        raise CheckpointError(f"{source} is {description} (found {key!r}), not a Wan diffusion model (which has "
                              f"'{SENTINELS[WAN]}'): {NOT_A_DIT_ADVICE.get(kind, PICK_A_DIT)}")
    sample = ", ".join(repr(k) for k in sorted(keys)[:3]) or "no tensors"
    expected = ", ".join(f"'{s}' ({layout})" for layout, s in SENTINELS.items())
    raise CheckpointError(f"{source} is not a Wan diffusion model: expected a key {expected}; found {len(keys)} keys "
                          f"like {sample}: pick a Wan 2.1 / 2.2 file from ComfyUI's diffusion_models folder")


def _rename(key: str, table: Mapping[str, str]) -> Optional[str]:
    """Map the module part of ``key`` through ``table`` (exact module or module + '.param'); None if no entry."""
    for old, new in table.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def _diffusers_to_wan_key(key: str) -> str:
    block = BLOCK_KEY.match(key)
    if block:
        renamed = _rename(block[2], {v: k for k, v in DIFFUSERS_BLOCK.items()})
        return key if renamed is None else f"blocks.{block[1]}.{renamed}"
    renamed = _rename(key, {v: k for k, v in DIFFUSERS_TOP.items()})
    return key if renamed is None else renamed


def _wan_to_diffusers_key(key: str) -> str:
    block = BLOCK_KEY.match(key)
    if block:
        renamed = _rename(block[2], DIFFUSERS_BLOCK)
        return key if renamed is None else f"blocks.{block[1]}.{renamed}"
    renamed = _rename(key, DIFFUSERS_TOP)
    return key if renamed is None else renamed


@dataclass(frozen=True)
class NativeStateDict:
    """A state dict in Wan's names, with what the renaming set aside."""

    tensors: dict[str, torch.Tensor]
    layout: str
    ignored: tuple[str, ...] = ()
    scaled_fp8: Optional[torch.dtype] = None


def to_native(state_dict: Mapping[str, torch.Tensor], layout: Optional[str] = None) -> NativeStateDict:
    """Any supported layout -> Wan's names (``layout`` is detected when None).

    Args:
        state_dict: the file's tensors (meta tensors work: only names and shapes are used).
        layout: ``"wan"``, ``"comfyui"`` or ``"diffusers"``.
    """
    layout = layout or detect_layout(state_dict)
    ignored = []
    if layout == COMFYUI:
        ignored = sorted(k for k in state_dict if not k.startswith(COMFY_PREFIX))
        tensors = {k[len(COMFY_PREFIX):]: v for k, v in state_dict.items() if k.startswith(COMFY_PREFIX)}
    elif layout == DIFFUSERS:
        tensors = {_diffusers_to_wan_key(k): v for k, v in state_dict.items()}
    elif layout == WAN:
        tensors = dict(state_dict)
    else:
        raise CheckpointError(f"unknown checkpoint layout {layout!r}: use one of {list(SENTINELS)}")
    marker = tensors.pop(SCALED_FP8_MARKER, None)
    scaled = None if marker is None else (torch.float8_e4m3fn if marker.dtype == torch.float32 else marker.dtype)
    for key in [k for k in tensors if k.endswith(DROPPED_SUFFIXES)]:
        del tensors[key]
    for key in list(tensors):
        for alias, name in SCALE_ALIASES.items():
            if key.endswith(alias):
                tensors[key[: -len(alias)] + name] = tensors.pop(key)
    return NativeStateDict(tensors, layout, tuple(ignored), scaled)


def from_native(state_dict: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Wan's names -> ``layout``'s names (the inverse of to_native, for writing files other tools read).

    Args:
        state_dict: tensors in Wan's names.
        layout: ``"wan"``, ``"comfyui"`` or ``"diffusers"``.
    """
    if layout == COMFYUI:
        return {COMFY_PREFIX + k: v for k, v in state_dict.items()}
    if layout == DIFFUSERS:
        return {_wan_to_diffusers_key(k): v for k, v in state_dict.items()}
    if layout == WAN:
        return dict(state_dict)
    raise CheckpointError(f"unknown checkpoint layout {layout!r}: use one of {list(SENTINELS)}")


# -- config from shapes ------------------------------------------------------------------------------

def _shape(shapes: Mapping[str, Sequence[int]], key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"Wan weights lack '{key}', which gives the model's size: the file is incomplete "
                              "(a shard missing?) or not a Wan diffusion model")
    return tuple(shapes[key])


def config_from_state_dict(state_dict: Mapping[str, Union[torch.Tensor, Sequence[int]]],
                           num_heads: Optional[int] = None) -> BackboneConfig:
    """The backbone config read from tensor shapes in Wan's names (meta tensors or plain shapes work).

    Args:
        state_dict: Wan-named tensors, or key -> shape.
        num_heads: attention heads; None reads dim / 128, Wan's head width in every release.
    """
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state_dict.items()}
    dim = _shape(shapes, "head.modulation")[-1]
    patch = _shape(shapes, "patch_embedding.weight")
    if num_heads is None:
        if dim % WAN_HEAD_WIDTH:
            raise CheckpointError(f"width {dim} is not a multiple of Wan's {WAN_HEAD_WIDTH}-wide heads, so the head "
                                  "count cannot be read from shapes: pass num_heads")
        num_heads = dim // WAN_HEAD_WIDTH
    layers = {int(m[1]) for k in shapes if (m := BLOCK_KEY.match(k))}
    if layers != set(range(len(layers))) or not layers:
        raise CheckpointError(f"block indices {sorted(layers)[:8]}... are not 0..N-1: the file is incomplete "
                              "(a shard missing?)")
    image = shapes.get("img_emb.proj.0.weight")
    flf = shapes.get("img_emb.emb_pos")
    return BackboneConfig(
        dim=dim, ffn_dim=_shape(shapes, "blocks.0.ffn.0.weight")[0], num_layers=len(layers), num_heads=num_heads,
        in_dim=patch[1], out_dim=_shape(shapes, "head.head.weight")[0] // math.prod(patch[2:]),
        text_dim=_shape(shapes, "text_embedding.0.weight")[1], freq_dim=_shape(shapes, "time_embedding.0.weight")[1],
        patch_size=tuple(patch[2:]), image_dim=None if image is None else image[0],
        flf_tokens=None if flf is None else flf[1])


# -- checking and loading ----------------------------------------------------------------------------

def _attach_scales(model: WanDiT, tensors: dict[str, torch.Tensor]) -> int:
    """Give each CastLinear named by a ``<layer>.scale_weight`` key a (meta) scale buffer to load into;
    a scale for anything else stays and is reported as unexpected. Scales are scalars here
    (check_quantization refuses per-row ones first)."""
    count = 0
    for key in [k for k in tensors if k.endswith(".scale_weight")]:
        owner = key[: -len(".scale_weight")]
        try:
            layer = model.get_submodule(owner)
        except AttributeError:
            continue
        if isinstance(layer, CastLinear):
            layer.scale_weight = torch.empty((), device=layer.weight.device)
            tensors[key] = tensors[key].reshape(())
            count += 1
    return count


_SAFETENSORS_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
                      torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.uint8: "U8"}


def _apply_quantization(tensors: dict[str, torch.Tensor], metadata: Optional[Mapping[str, str]], source: str) -> None:
    """Check quantized weights (check_quantization), drop ``.comfy_quant`` descriptors, view uint8-held fp8 as fp8."""
    descriptors = {k[: -len(QUANT_DESCRIPTOR)]: v for k, v in tensors.items() if k.endswith(QUANT_DESCRIPTOR)}
    raw = {layer: bytes(v.detach().to(torch.uint8).flatten().tolist())
           for layer, v in descriptors.items() if not v.is_meta}  # meta tensors (shape-only checks) hold no bytes
    entries = {k: (_SAFETENSORS_NAMES.get(v.dtype, str(v.dtype).removeprefix("torch.")), tuple(v.shape))
               for k, v in tensors.items()}
    formats = check_quantization(entries, raw, metadata, source)
    for layer in descriptors:
        del tensors[layer + QUANT_DESCRIPTOR]
    for layer, dtype in formats.items():
        weight = tensors.get(layer + ".weight")
        if weight is not None and weight.dtype == torch.uint8:  # ComfyUI's uint8 container for fp8
            tensors[layer + ".weight"] = weight.view(dtype)


def check_state_dict(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], layout: str,
                     config: Optional[BackboneConfig] = None) -> LoadReport:
    """Compare names and shapes with ``model`` before anything is loaded.

    Args:
        model: the (meta) model to load into.
        tensors: Wan-named tensors.
        layout: where the names came from, for the report.
        config: the config the model was built from, for the report.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return LoadReport(
        layout=layout, config=config,
        missing=tuple(sorted(set(expected) - set(tensors))),
        unexpected=tuple(sorted(set(tensors) - set(expected))),
        mismatched=tuple(sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != expected[k])),
        dtypes=tuple(sorted({str(v.dtype).removeprefix("torch.") for v in tensors.values()})),
    )


def raise_for_report(report: LoadReport, source: str) -> None:
    """CheckpointError naming counts and examples of missing / unexpected / wrong-shape keys.

    Args:
        report: what check_state_dict found.
        source: the file name, for the message.
    """
    if report.ok:
        return
    parts = [f"{name} {len(keys)} (e.g. {keys[0]!r})" for name, keys in (
        ("missing", report.missing), ("unexpected", report.unexpected), ("wrong shape", report.mismatched)) if keys]
    raise CheckpointError(f"{source} ({report.layout} layout) does not fit the Wan DiT it describes: "
                          f"{'; '.join(parts)}: the file is damaged, incomplete or another model's")


# -- reading files -----------------------------------------------------------------------------------

def _shard_paths(paths: Union[str, Path, Sequence[Union[str, Path]]]) -> list[Path]:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if len(paths) == 1 and paths[0].is_dir():  # a diffusers ``transformer/`` folder: its shards
        folder = paths[0]
        paths = sorted(folder.glob("*.safetensors"))
        if not paths:
            raise CheckpointError(f"folder {folder} holds no .safetensors files: point at the model file or its folder")
    for path in paths:
        if not path.is_file():
            raise CheckpointError(f"model file {path} does not exist: check the path or ComfyUI's diffusion_models folder")
    return paths


def read_safetensors(paths: Union[str, Path, Sequence[Union[str, Path]]], skip_prefix: Optional[str] = None,
                     device: Optional[torch.device] = None, only_prefix: Optional[str] = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of one safetensors file or of shards; refuses anything else (pickles too).

    Every file's header is checked first (read_header), so a bad file is refused in one line naming it.

    Args:
        paths: a file, the shards of one model (keys must not repeat), or a folder of shards.
        skip_prefix: keys starting with this are not read (a merged file's adapter, read apart).
        device: where the tensors are created (default CPU).
        only_prefix: when given, only keys starting with this are read (one model of a bundle).
    """
    tensors, metadata = {}, {}
    for path in _shard_paths(paths):
        read_header(path)
        try:
            with safe_open(str(path), framework="pt", device=str(device or "cpu")) as handle:
                metadata.update(handle.metadata() or {})
                for key in handle.keys():
                    skipped = skip_prefix and key.startswith(skip_prefix)
                    if skipped or (only_prefix and not key.startswith(only_prefix)):
                        continue
                    if key in tensors:
                        raise CheckpointError(f"key '{key}' appears in two shards ({path.name} and another): "
                                              "pass each shard of one model once")
                    tensors[key] = handle.get_tensor(key)
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as error:
            raise _unreadable(path.name, one_line(error), DOWNLOAD_AGAIN + "; pickled .pth/.ckpt/.bin files are never "
                              "loaded: use the .safetensors release of the model") from None
    return tensors, metadata


# -- quantized weights -------------------------------------------------------------------------------

def quant_format(raw: bytes, layer: str, source: str) -> torch.dtype:
    """The fp8 dtype a ComfyUI ``.comfy_quant`` descriptor names; CheckpointError for any other format.

    Args:
        raw: the descriptor's bytes (UTF-8 JSON, e.g. ``{"format": "float8_e4m3fn"}``).
        layer: the layer it describes, for messages.
        source: the file name, for messages.
    """
    try:
        conf = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{source}: the ComfyUI quantization descriptor of layer {layer!r} is not JSON, so its "
                              "format is unknown: use the model's bf16 / fp16 or fp8-scaled release") from None
    return _fp8_format(conf, layer, source)


def _fp8_format(conf: object, layer: str, source: str) -> torch.dtype:
    fmt = conf.get("format") if isinstance(conf, dict) else None
    if fmt not in FP8_FORMATS:
        raise CheckpointError(f"{source} stores layer {layer!r} in ComfyUI's quantized format {fmt!r}, which this pack "
                              f"does not load (it reads {' or '.join(FP8_FORMATS)} with one scale per tensor): use the "
                              "model's bf16 / fp16 or fp8-scaled release")
    return FP8_FORMATS[fmt]


def _bare(key: str) -> str:
    return key[len(COMFY_PREFIX):] if key.startswith(COMFY_PREFIX) else key


def check_quantization(entries: Mapping[str, tuple[str, Sequence[int]]], descriptors: Mapping[str, bytes],
                       metadata: Optional[Mapping[str, str]], source: str) -> dict[str, torch.dtype]:
    """Refuse quantized weights this pack cannot read; return the fp8 dtype of each described layer.

    Read: fp8 weights with no scale or one scalar scale per tensor, described or not. Refused, in one
    line naming the file: per-row / per-block scales, double-scaled formats, any ``.comfy_quant`` or
    ``_quantization_metadata`` format but fp8, integer weights not described as fp8.

    Args:
        entries: the backbone's keys -> (safetensors dtype name, shape).
        descriptors: layer -> raw ``.comfy_quant`` bytes.
        metadata: the file's metadata (may hold ``_quantization_metadata``).
        source: the file name, for messages.
    """
    formats = {_bare(layer): quant_format(raw, layer, source) for layer, raw in descriptors.items()}
    if metadata and QUANT_METADATA in metadata:
        try:
            layers = json.loads(metadata[QUANT_METADATA]).get("layers", {})
            items = list(layers.items())
        except (json.JSONDecodeError, AttributeError):
            raise CheckpointError(f"{source}: its {QUANT_METADATA} is not ComfyUI's JSON table of layers, so its "
                                  "quantization is unknown: use the model's bf16 / fp16 or fp8-scaled release"
                                  ) from None
        formats |= {_bare(layer): _fp8_format(conf, layer, source) for layer, conf in items}
    for key, (dtype, shape) in entries.items():
        if key.endswith(QUANT_DESCRIPTOR):
            continue
        if key.endswith(UNREAD_SCALE_SUFFIXES):
            raise CheckpointError(f"{source} holds {key!r}, a double-scaled quantized format (nvfp4-style) this pack "
                                  "does not load: use the model's bf16 / fp16 or fp8-scaled release")
        if key.endswith(SCALE_SUFFIXES) and math.prod(shape) != 1:
            raise CheckpointError(f"{source} stores per-row or per-block fp8 scales ({key!r} has shape {list(shape)}), "
                                  "which this pack does not load (it reads one scale per tensor, as ComfyUI's scaled "
                                  "fp8): use the model's bf16 / fp16 release or a per-tensor fp8-scaled one")
        if dtype not in FLOAT_DTYPES and not (dtype == "U8" and key.endswith(".weight")
                                              and _bare(key)[: -len(".weight")] in formats):
            raise CheckpointError(f"{source} stores {key!r} as {dtype}, not as floating-point weights (an integer-"
                                  "quantized or other model's file): use an fp32, bf16, fp16 or fp8 Wan release")
    return formats


def _backbone_keys(keys: Iterable[str], layout: str) -> list[str]:
    keys = [k for k in keys if not k.startswith(ADAPTER_PREFIX)]
    return [k for k in keys if k.startswith(COMFY_PREFIX)] if layout == COMFYUI else keys


def check_backbone_files(headers: Sequence[SafetensorsHeader]) -> str:
    """From headers alone, refuse what is not a Wan DiT this pack loads (naming what it is); return its layout.

    Args:
        headers: read_header of the file, or of each shard.
    """
    source = headers[0].path.name
    everything = {k: e for h in headers for k, e in h.tensors.items()}
    own = [k for k in everything if not k.startswith(ADAPTER_PREFIX)]
    layout = detect_layout(own or everything, source)
    keys = _backbone_keys(own, layout)
    descriptors = {k[: -len(QUANT_DESCRIPTOR)]: h.read_bytes(k) for h in headers for k in h.tensors
                   if k in keys and k.endswith(QUANT_DESCRIPTOR)}
    metadata = {k: v for h in headers for k, v in h.metadata.items()}
    check_quantization({k: (everything[k].dtype, everything[k].shape) for k in keys}, descriptors, metadata, source)
    return layout


def _kept_fp32(key: str, keep: Sequence[str]) -> bool:
    return bool(set(key.split(".")) & set(keep))


def convert_for_load(model: WanDiT, tensors: dict[str, torch.Tensor], dtype: torch.dtype,
                     device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors in the dtypes they are kept in, popped from ``tensors`` one by one (one copy alive, not two).

    fp8 Linear weights stay fp8 with their scale (upcast per call); fp8 weights inside the model's
    ``_keep_in_fp32_modules`` are dequantised to fp32; everything else goes to ``dtype``.

    Args:
        model: the meta model (its ``_keep_in_fp32_modules`` hint and layer types); scales it drops are unset.
        tensors: checked Wan-named tensors; emptied.
        dtype: storage dtype of everything that is not fp8 or kept in fp32.
        device: where the tensors go.
    """
    keep = tuple(getattr(model, "_keep_in_fp32_modules", ()))
    for key in [k for k in tensors if k.endswith(".scale_weight") and _kept_fp32(k, keep)]:
        owner = key[: -len(".scale_weight")]
        tensors[owner + ".weight"] = tensors[owner + ".weight"].float() * tensors.pop(key).float()
        model.get_submodule(owner).scale_weight = None
    linears = {name + ".weight" for name, m in model.named_modules() if isinstance(m, CastLinear)}
    out = {}
    for key in list(tensors):
        tensor = tensors.pop(key)
        if _kept_fp32(key, keep) or key.endswith(".scale_weight"):
            target = torch.float32
        elif tensor.dtype.itemsize == 1 and key in linears:
            target = tensor.dtype  # fp8 stays fp8
        else:
            target = dtype
        out[key] = tensor.to(device=device, dtype=target)
    return out


def load_backbone(paths: Union[str, Path, Sequence[Union[str, Path]]], compute_dtype: torch.dtype = torch.bfloat16,
                  weight_dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None,
                  num_heads: Optional[int] = None) -> tuple[WanDiT, LoadReport]:
    """Load a Wan DiT from safetensors in the official, ComfyUI or diffusers layout, any stored dtype.

    The headers are checked first (read_header, check_backbone_files): a wrong file is refused, naming
    what it is, before a tensor is read. Built on the meta device; the file's tensors are assigned in,
    so a 14B model never needs two copies.

    Args:
        paths: the file, or its shards.
        compute_dtype: dtype the attention / FFN matmuls run in.
        weight_dtype: dtype non-fp8 weights are kept in (default ``compute_dtype``); fp8 stays fp8.
        device: where the weights go (default CPU); placement policy belongs to offload/.
        num_heads: attention heads when the width is not a multiple of 128 (test models).

    Raises:
        CheckpointError: not safetensors, not a Wan DiT, or names / shapes that do not fit.
    """
    shards = _shard_paths(paths)
    check_backbone_files([read_header(p) for p in shards])
    tensors, metadata = read_safetensors(shards, skip_prefix=ADAPTER_PREFIX)
    name = shards[0].name  # for messages
    model, report, native = prepare_backbone(tensors, name, num_heads, metadata)
    del tensors
    loaded = convert_for_load(model, native, weight_dtype or compute_dtype, device or torch.device("cpu"))
    model.load_state_dict(loaded, strict=True, assign=True)
    model.compute_dtype = compute_dtype
    log.info("loaded %s: Wan DiT dim %d x %d blocks, %s layout, stored %s%s", name, report.config.dim,
             report.config.num_layers, report.layout, "/".join(report.dtypes),
             f", {report.scaled} scaled-fp8 layers" if report.scaled else "")
    return model.eval().requires_grad_(False), report


def prepare_backbone(tensors: Mapping[str, torch.Tensor], source: str, num_heads: Optional[int] = None,
                     metadata: Optional[Mapping[str, str]] = None) -> tuple[WanDiT, LoadReport, dict[str, torch.Tensor]]:
    """Rename, read the config, build the meta model and check names and shapes; raise on any misfit.

    Args:
        tensors: the file's backbone tensors, any layout.
        source: file name for messages.
        num_heads: attention heads when the width is not a multiple of 128.
        metadata: safetensors metadata; a config written by this pack gives the head count.

    Returns:
        (meta model, load report, Wan-named tensors ready for convert_for_load).
    """
    native = to_native(tensors, detect_layout(tensors, source))
    named = dict(native.tensors)
    _apply_quantization(named, metadata, source)
    if num_heads is None and metadata and BACKBONE_METADATA in metadata:
        try:
            num_heads = BackboneConfig.from_json(metadata[BACKBONE_METADATA]).num_heads
        except CheckpointError as error:
            raise CheckpointError(f"{source}: {error}") from None
    config = config_from_state_dict(named, num_heads)
    model = build_backbone(config, torch.device("meta"))
    scaled = _attach_scales(model, named)
    report = replace(check_state_dict(model, named, native.layout, config), ignored=native.ignored, scaled=scaled)
    raise_for_report(report, source)
    return model, report, named
