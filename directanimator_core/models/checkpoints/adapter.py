"""The CueFusion adapter file: safetensors holding only adapter tensors, with JSON metadata.

Metadata (all strings, as safetensors requires):
    format                   "directanimator.cuefusion"
    format_version           "1"
    directanimator.backbone  BackboneConfig JSON of the backbone it was trained on
    directanimator.cues      CueFusionConfig JSON (cue channels, mask channels, fused blocks, Same2X depth)
    same2x_depth             block D whose hidden states Same2X aligned
Tensor keys are the adapter's own names under ``cuefusion.`` (``cuefusion.blocks.7.gate``...), so one
file may also hold a whole model: a Wan backbone in any layout backbone.py reads, plus the adapter
("merged" file, written by save_merged with the same metadata).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from safetensors.torch import save_file

from ...errors import CheckpointError
from .backbone import (
    ADAPTER_PREFIX, BACKBONE_METADATA, LoadReport, check_state_dict, load_backbone, read_header, read_safetensors)
from ..config import BackboneConfig, CueFusionConfig
from ..cuefusion import CueFusion, CueFusionDiT

log = logging.getLogger(__name__)

FORMAT = "directanimator.cuefusion"
FORMAT_VERSION = "1"
CUES_METADATA = "directanimator.cues"


def adapter_metadata(adapter: CueFusion) -> dict[str, str]:
    """The metadata written with ``adapter`` (module docstring).

    Args:
        adapter: the adapter being saved.
    """
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            BACKBONE_METADATA: adapter.backbone_config.to_json(), CUES_METADATA: adapter.config.to_json(),
            "same2x_depth": str(adapter.config.same2x_depth)}


def save_adapter(adapter: CueFusion, path: Union[str, Path]) -> Path:
    """Write only the adapter's tensors (fp32 copies stay as stored) and its metadata.

    Args:
        adapter: the trained adapter.
        path: target .safetensors file.
    """
    tensors = {ADAPTER_PREFIX + k: v.detach().contiguous() for k, v in adapter.state_dict().items()}
    save_file(tensors, str(path), metadata=adapter_metadata(adapter))
    return Path(path)


def save_merged(model: CueFusionDiT, path: Union[str, Path]) -> Path:
    """Write backbone (Wan names) and adapter in one file with the adapter's metadata.

    Args:
        model: backbone + adapter.
        path: target .safetensors file.
    """
    tensors = {k: v.detach().contiguous() for k, v in model.backbone.state_dict().items()}
    tensors |= {ADAPTER_PREFIX + k: v.detach().contiguous() for k, v in model.adapter.state_dict().items()}
    save_file(tensors, str(path), metadata=adapter_metadata(model.adapter))
    return Path(path)


UMT5_WIDTH = 4096  # the text states core ComfyUI's Wan loader assumes (umT5-XXL)
TEXT_INPUT = "text_embedding.0.weight"  # (dim, text_dim): the first layer of Wan's text embedding


def text_free(tensors: dict[str, torch.Tensor], metadata: dict[str, str],
              width: int = UMT5_WIDTH) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A merged model trained on an all-zero text context, with its text input ``width`` wide and zero.

    Such a model only ever saw the text embedding's bias path (W · 0 + b), so a zero weight of any width
    gives the very same output for the zero context, and for any other context the same output too: the
    model says plainly that it takes no text. At umT5's width core ComfyUI's Wan loader reads the file
    (its detection assumes text states 4096 wide).

    Args:
        tensors: the merged file's tensors (Wan names, adapter under ``cuefusion.``).
        metadata: its metadata (the backbone config JSON is updated to the new width).
        width: the text width to write.
    """
    weight = tensors[TEXT_INPUT]
    backbone = BackboneConfig.from_json(metadata[BACKBONE_METADATA])
    widened = replace(backbone, text_dim=width)
    return ({**tensors, TEXT_INPUT: torch.zeros(weight.shape[0], width, dtype=weight.dtype)},
            {**metadata, BACKBONE_METADATA: widened.to_json()})


def _configs_from(metadata: dict[str, str], found: str, source: str) -> tuple[BackboneConfig, CueFusionConfig]:
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a CueFusion adapter: expected metadata format={FORMAT!r}, found "
                              f"{metadata.get('format')!r} and {found}: pass the adapter file "
                              "(a base Wan model goes in the model input)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{source} is CueFusion format version {metadata.get('format_version')!r}; this pack "
                              f"reads version {FORMAT_VERSION}: update the pack or re-save the adapter")
    try:
        return BackboneConfig.from_json(metadata[BACKBONE_METADATA]), CueFusionConfig.from_json(metadata[CUES_METADATA])
    except KeyError as missing:
        raise CheckpointError(f"{source} lacks the adapter metadata {missing}: the file is damaged or was not written "
                              "by this pack; re-save the adapter") from None
    except CheckpointError as error:
        raise CheckpointError(f"{source}: {error}") from None


def _check_backbone(trained: BackboneConfig, backbone: BackboneConfig, source: str) -> None:
    if (trained.dim, trained.num_layers, trained.patch_size) != (backbone.dim, backbone.num_layers, backbone.patch_size):
        raise CheckpointError(f"{source} was trained on a backbone of width {trained.dim}, {trained.num_layers} blocks, "
                              f"patch {trained.patch_size}; this backbone has width {backbone.dim}, {backbone.num_layers} "
                              f"blocks, patch {backbone.patch_size}: load the Wan model the adapter was trained for")
    if trained != backbone:
        log.warning("%s was trained on %s; loading it on %s (same widths and depth)", source, trained, backbone)


def adapter_from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], backbone: BackboneConfig,
                         source: str, others: Sequence[str] = ()) -> tuple[CueFusion, LoadReport]:
    """Build the adapter its metadata describes and load the ``cuefusion.`` tensors into it (meta, then assign).

    Args:
        tensors: the file's ``cuefusion.`` tensors.
        metadata: the file's metadata.
        backbone: the config of the backbone it will run on.
        source: file name for messages.
        others: a few of the file's other keys, for the message when it is not an adapter.
    """
    found = f"{len(tensors)} adapter tensors and keys like {list(others)}"
    trained, cues = _configs_from(metadata, found, source)
    _check_backbone(trained, backbone, source)
    with torch.device("meta"):
        adapter = CueFusion(backbone, cues)
    own = {k[len(ADAPTER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ADAPTER_PREFIX)}
    report = check_state_dict(adapter, own, "cuefusion")
    if not report.ok:
        parts = [f"{name} {len(keys)} (e.g. {keys[0]!r})" for name, keys in (
            ("missing", report.missing), ("unexpected", report.unexpected), ("wrong shape", report.mismatched)) if keys]
        raise CheckpointError(f"{source}'s adapter tensors do not fit its own metadata: {'; '.join(parts)}: "
                              "the file is damaged")
    adapter.load_state_dict({k: v.float() for k, v in own.items()}, strict=True, assign=True)
    return adapter.eval().requires_grad_(False), report


def read_adapter_part(path: Union[str, Path], device: Optional[torch.device] = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Only the ``cuefusion.`` tensors of a file (a merged file's backbone is not read), its metadata,
    and a few of its other keys for messages.

    Args:
        path: the .safetensors file.
        device: where the tensors go (default CPU).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"adapter file {path} does not exist: check the path or the directanimator models folder")
    header = read_header(path)  # a bad file is refused here in one line, before a tensor is read
    others = [k for k in header.tensors if not k.startswith(ADAPTER_PREFIX)]
    tensors = {}
    if len(others) < len(header.tensors):
        tensors = read_safetensors(path, device=device, only_prefix=ADAPTER_PREFIX)[0]
    return tensors, header.metadata, others[:2]


def load_adapter(path: Union[str, Path], backbone: Optional[BackboneConfig] = None,
                 device: Optional[torch.device] = None) -> CueFusion:
    """Load a CueFusion adapter file (or the adapter part of a merged file) for ``backbone``.

    Args:
        path: the .safetensors file.
        backbone: the config of the backbone it will run on; None = the one it was trained on (its metadata),
            when the backbone comes later (ComfyUI's MODEL, checked by cuefusion_patch.check_backbone).
        device: where the weights go (default CPU).
    """
    tensors, metadata, others = read_adapter_part(path, device)
    source = Path(path).name
    if backbone is None:
        backbone = _configs_from(metadata, f"{len(tensors)} adapter tensors and keys like {list(others)}", source)[0]
    return adapter_from_tensors(tensors, metadata, backbone, source, others)[0]


def load_model(path: Union[str, Path], adapter_path: Optional[Union[str, Path]] = None,
               new_adapter: Optional[CueFusionConfig] = None, compute_dtype: torch.dtype = torch.bfloat16,
               device: Optional[torch.device] = None, num_heads: Optional[int] = None) -> CueFusionDiT:
    """A DirectAnimator model: a Wan backbone and its CueFusion adapter.

    The adapter comes from ``adapter_path``, else from the model file itself (a merged file), else is a
    fresh zero-initialised one when ``new_adapter`` gives its config (the start of training, which
    reproduces the base model exactly). Having none of the three is an error, not a silent base model.

    Args:
        path: base (or merged) model file, any layout backbone.py reads.
        adapter_path: a separate adapter file.
        new_adapter: config of a fresh adapter when no file holds one.
        compute_dtype: dtype of the backbone's matmuls.
        device: where the weights go (default CPU).
        num_heads: attention heads when the width is not a multiple of 128 (test models).
    """
    backbone, _ = load_backbone(path, compute_dtype=compute_dtype, device=device, num_heads=num_heads)
    source = adapter_path or path
    tensors, metadata, others = read_adapter_part(source, device)
    if adapter_path is not None or tensors:
        adapter, _ = adapter_from_tensors(tensors, metadata, backbone.config, Path(source).name, others)
    elif new_adapter is not None:
        with torch.device(device or "cpu"):
            adapter = CueFusion(backbone.config, new_adapter).init_weights()
    else:
        raise CheckpointError(f"{Path(path).name} holds no CueFusion adapter (no '{ADAPTER_PREFIX}' tensors) and no "
                              "adapter file was given: pass the DirectAnimator adapter, or new_adapter to start training")
    return CueFusionDiT(backbone, adapter)
