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
``<layer>.weight_scale``, comfy/quant_ops.py). Input scales only feed ComfyUI's fp8 matmul and are dropped. Only safetensors files are read; nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from .config import BackboneConfig
from .layers import CastLinear
from .wan_dit import WanDiT, build_backbone

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

def detect_layout(keys: Iterable[str]) -> str:
    """``"wan"``, ``"comfyui"`` or ``"diffusers"`` from sentinel keys; CheckpointError naming what was found.

    Args:
        keys: every key of the file(s).
    """
    keys = set(keys)
    for key in keys:
        bare = key[len(COMFY_PREFIX):] if key.startswith(COMFY_PREFIX) else key
        if bare in OTHER_VARIANTS:
            raise CheckpointError(f"this is a {OTHER_VARIANTS[bare]} model (found '{key}'), not a plain Wan DiT: "
                                  "DirectAnimator runs on Wan 2.1 / 2.2 T2V, I2V or TI2V diffusion models; load one")
    for layout, sentinel in SENTINELS.items():
        if sentinel in keys:
            return layout
    sample = ", ".join(repr(k) for k in sorted(keys)[:3]) or "no tensors"
    expected = ", ".join(f"'{s}' ({layout})" for layout, s in SENTINELS.items())
    raise CheckpointError(f"not a Wan diffusion model: expected a key {expected}; found {len(keys)} keys like "
                          f"{sample}: pick a Wan 2.1 / 2.2 file from ComfyUI's diffusion_models folder")


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
    a scale for anything else stays and is reported as unexpected."""
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


def read_safetensors(paths: Union[str, Path, Sequence[Union[str, Path]]], skip_prefix: Optional[str] = None,
                     device: Optional[torch.device] = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of one safetensors file or of shards; refuses anything else (pickles too).

    Args:
        paths: a file, the shards of one model (keys must not repeat), or a folder of shards.
        skip_prefix: keys starting with this are not read (a merged file's adapter, read apart).
        device: where the tensors are created (default CPU).
    """
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if len(paths) == 1 and paths[0].is_dir():  # a diffusers ``transformer/`` folder: its shards
        folder = paths[0]
        paths = sorted(folder.glob("*.safetensors"))
        if not paths:
            raise CheckpointError(f"folder {folder} holds no .safetensors files: point at the model file or its folder")
    tensors, metadata = {}, {}
    for path in paths:
        if not path.is_file():
            raise CheckpointError(f"model file {path} does not exist: check the path or ComfyUI's diffusion_models folder")
        try:
            with safe_open(str(path), framework="pt", device=str(device or "cpu")) as handle:
                metadata.update(handle.metadata() or {})
                for key in handle.keys():
                    if skip_prefix and key.startswith(skip_prefix):
                        continue
                    if key in tensors:
                        raise CheckpointError(f"key '{key}' appears in two shards ({path.name} and another): "
                                              "pass each shard of one model once")
                    tensors[key] = handle.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path.name} is not a readable safetensors file ({error}); pickled .pth/.ckpt/.bin "
                                  "files are never loaded: use the .safetensors release of the model") from error
    return tensors, metadata


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

    Built on the meta device; the file's tensors are assigned in, so a 14B model never needs two copies.

    Args:
        paths: the file, or its shards.
        compute_dtype: dtype the attention / FFN matmuls run in.
        weight_dtype: dtype non-fp8 weights are kept in (default ``compute_dtype``); fp8 stays fp8.
        device: where the weights go (default CPU); placement policy belongs to offload/.
        num_heads: attention heads when the width is not a multiple of 128 (test models).

    Raises:
        CheckpointError: not safetensors, not a Wan DiT, or names / shapes that do not fit.
    """
    tensors, metadata = read_safetensors(paths, skip_prefix=ADAPTER_PREFIX)
    name = Path(paths if isinstance(paths, (str, Path)) else paths[0]).name  # for messages
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
    native = to_native(tensors)
    if num_heads is None and metadata and BACKBONE_METADATA in metadata:
        num_heads = BackboneConfig.from_json(metadata[BACKBONE_METADATA]).num_heads
    config = config_from_state_dict(native.tensors, num_heads)
    model = build_backbone(config, torch.device("meta"))
    named = dict(native.tensors)
    scaled = _attach_scales(model, named)
    report = replace(check_state_dict(model, named, native.layout, config), ignored=native.ignored, scaled=scaled)
    raise_for_report(report, source)
    return model, report, named
