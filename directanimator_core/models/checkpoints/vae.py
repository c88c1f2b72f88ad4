"""Wan 2.1 VAE checkpoint keys: detect the layout, rename diffusers keys to Wan's, read the config, load.

Kept apart from ``backbone.py`` only while that module is being written; it should merge into
it (the house rule is one place for checkpoint keys). Everything layout-specific is data at the top.

Layouts:
- ``wan``: the official ``Wan2.1_VAE.pth`` names, which ComfyUI's ``wan_2.1_vae.safetensors`` keeps
  (``encoder.downsamples.0.residual.0.gamma``, ``conv1.weight``...). Native here; no renames.
- ``diffusers``: ``AutoencoderKLWan`` (``encoder.down_blocks.0.norm1.gamma``, ``quant_conv.weight``...),
  as written by diffusers' ``scripts/convert_wan_to_diffusers.py``.
A VAE bundled in a larger file under ``first_stage_model.`` or ``vae.`` (a ComfyUI checkpoint beside
its ``model.diffusion_model.`` DiT) is found by its sentinel under that prefix: only its keys are read
and loaded, the rest is reported as ignored.
Only safetensors files are read (``checkpoint.read_header`` checks the file first, ``read_safetensors``
reads it); nothing is ever unpickled. A file that is not a Wan 2.1 VAE is refused naming what it is
(``checkpoint.describe_file``). The load report and the name/shape check are backbone.py's own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Union

import torch

from ...errors import CheckpointError
from .backbone import (
    FLOAT_DTYPES, VAE_DIFFUSERS_SENTINEL, VAE_WAN22_SENTINEL, VAE_WAN_SENTINEL, LoadReport, check_state_dict,
    describe_file, read_header, read_safetensors)
from ..vae import VAEConfig, WanVAE, build_vae

log = logging.getLogger(__name__)

WAN_SENTINEL = VAE_WAN_SENTINEL
DIFFUSERS_SENTINEL = VAE_DIFFUSERS_SENTINEL
WAN22_SENTINEL = VAE_WAN22_SENTINEL  # Wan 2.2's 48-channel VAE
PREFIXES = ("first_stage_model.", "vae.")

# diffusers -> Wan, applied to the block part of a key. ``n`` is num_res_blocks: a decoder up block holds
# n + 1 residual blocks then one upsampler, flattened by Wan into ``upsamples.<index>``.
BLOCK_RULES: list[tuple[re.Pattern, Callable[[re.Match, int], str]]] = [
    (re.compile(r"^quant_conv\."), lambda m, n: "conv1."),
    (re.compile(r"^post_quant_conv\."), lambda m, n: "conv2."),
    (re.compile(r"^(encoder|decoder)\.conv_in\."), lambda m, n: f"{m[1]}.conv1."),
    (re.compile(r"^(encoder|decoder)\.norm_out\."), lambda m, n: f"{m[1]}.head.0."),
    (re.compile(r"^(encoder|decoder)\.conv_out\."), lambda m, n: f"{m[1]}.head.2."),
    (re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\."), lambda m, n: f"{m[1]}.middle.{2 * int(m[2])}."),
    (re.compile(r"^(encoder|decoder)\.mid_block\.attentions\.0\."), lambda m, n: f"{m[1]}.middle.1."),
    (re.compile(r"^encoder\.down_blocks\.(\d+)\."), lambda m, n: f"encoder.downsamples.{m[1]}."),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\."),
     lambda m, n: f"decoder.upsamples.{int(m[1]) * (n + 2) + int(m[2])}."),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\."),
     lambda m, n: f"decoder.upsamples.{int(m[1]) * (n + 2) + n + 1}."),
]
# diffusers' named residual-block parts -> positions in Wan's ``residual`` Sequential.
RESIDUAL_PARTS = {"norm1.": "residual.0.", "conv1.": "residual.2.", "norm2.": "residual.3.",
                  "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}
RESIDUAL_OWNER = re.compile(r"^(?:encoder|decoder)\.(?:middle|downsamples|upsamples)\.\d+\.")


def strip_prefix(keys: Iterable[str]) -> dict[str, str]:
    """Key -> key without a bundling prefix (``first_stage_model.``, ``vae.``)."""
    stripped = {}
    for key in keys:
        prefix = next((p for p in PREFIXES if key.startswith(p)), "")
        stripped[key] = key[len(prefix):]
    return stripped


def detect_vae_layout(keys: Iterable[str], source: str = "the file") -> str:
    """``"wan"`` or ``"diffusers"`` from sentinel keys (prefix already stripped); CheckpointError otherwise.

    Args:
        keys: the VAE's keys.
        source: the file name, for messages.
    """
    keys = set(keys)
    if WAN22_SENTINEL in keys:
        raise CheckpointError(f"{source} is the Wan 2.2 VAE (48 latent channels, found '{WAN22_SENTINEL}'); the "
                              "Wan 2.1 VAE (16 channels) was expected: load wan_2.1_vae.safetensors")
    if WAN_SENTINEL in keys:
        return "wan"
    if DIFFUSERS_SENTINEL in keys:
        return "diffusers"
    found = describe_file(keys)
    if found is not None and found[0] != "vae":
        raise CheckpointError(f"{source} is {found[1]} (found {found[2]!r}), not a Wan 2.1 VAE (which has "
                              f"'{WAN_SENTINEL}'): pick the VAE file (ComfyUI's wan_2.1_vae.safetensors in models/vae)")
    sample = ", ".join(repr(k) for k in sorted(keys)[:3]) or "no tensors"
    what = f"{found[1]}, " if found is not None else ""
    raise CheckpointError(f"{source} is not a Wan 2.1 VAE: expected a key '{WAN_SENTINEL}' (Wan/ComfyUI layout) or "
                          f"'{DIFFUSERS_SENTINEL}' (diffusers layout), found {what}{len(keys)} keys like {sample}: "
                          "pick the VAE file (ComfyUI's wan_2.1_vae.safetensors)")


def find_vae(keys: Iterable[str], source: str = "the file") -> tuple[str, str]:
    """(prefix, layout) of the Wan 2.1 VAE among ``keys``: bare, or bundled under a PREFIXES entry.

    Args:
        keys: every key of the file.
        source: the file name, for messages.
    """
    keys = list(keys)
    for prefix in ("",) + PREFIXES:
        part = {k[len(prefix):] for k in keys if k.startswith(prefix)}
        if part & {WAN_SENTINEL, DIFFUSERS_SENTINEL, WAN22_SENTINEL}:
            return prefix, detect_vae_layout(part, source)
    return "", detect_vae_layout(keys, source)  # raises, naming what the file is


def diffusers_key_to_wan(key: str, num_res_blocks: int = 2) -> str:
    """One ``AutoencoderKLWan`` key -> its Wan name (keys already in Wan's layout come back unchanged)."""
    for pattern, rename in BLOCK_RULES:
        match = pattern.match(key)
        if match:
            key = rename(match, num_res_blocks) + key[match.end():]
            break
    owner = RESIDUAL_OWNER.match(key)
    if owner:
        rest = key[owner.end():]
        for part, position in RESIDUAL_PARTS.items():
            if rest.startswith(part):
                return owner[0] + position + rest[len(part):]
    return key


def to_native(state_dict: Mapping[str, torch.Tensor], num_res_blocks: int = 2,
              source: str = "the file") -> tuple[dict[str, torch.Tensor], str]:
    """Any supported layout -> Wan's names; returns the renamed dict and the layout found.

    A VAE bundled under ``first_stage_model.`` / ``vae.`` is taken alone (the other models' keys are dropped).

    Args:
        state_dict: the file's tensors.
        num_res_blocks: residual blocks per level (diffusers' up blocks are flattened by it).
        source: the file name, for messages.
    """
    prefix, layout = find_vae(state_dict, source)
    if prefix:
        renamed = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    else:
        renamed = {new: state_dict[old] for old, new in strip_prefix(state_dict).items()}
    if layout == "diffusers":
        renamed = {diffusers_key_to_wan(k, num_res_blocks): v for k, v in renamed.items()}
    return renamed, layout


def config_from_shapes(shapes: Mapping[str, tuple[int, ...]], source: str = "the file") -> VAEConfig:
    """The VAE's width and latent channels, read from Wan-named tensor shapes (as ComfyUI's sd.py does).

    Args:
        shapes: Wan-named key -> shape.
        source: the file name, for messages.
    """
    try:
        dim = shapes["decoder.head.0.gamma"][0]
        z_dim = shapes["conv2.weight"][0]
    except KeyError as missing:
        raise CheckpointError(f"{source}: its Wan VAE weights lack {missing}, which gives the model's size: "
                              "the file is incomplete or not a Wan 2.1 VAE") from None
    return VAEConfig(dim=dim, z_dim=z_dim)


def _raise_for(report: LoadReport, path: Path) -> None:
    if report.ok:
        return
    parts = [f"{name} {len(keys)} (e.g. {keys[0]!r})"
             for name, keys in (("missing", report.missing), ("unexpected", report.unexpected),
                                ("wrong shape", report.mismatched)) if keys]
    raise CheckpointError(f"{path.name} ({report.layout} layout) does not fit the Wan 2.1 VAE: "
                          f"{'; '.join(parts)}: the file is damaged or another model's")


def load_wan_vae(path: Union[str, Path], dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device] = None) -> tuple[WanVAE, LoadReport]:
    """Load a Wan 2.1 VAE from safetensors in the Wan, ComfyUI or diffusers layout.

    The model is built on the meta device and the file's tensors are assigned into it, so loading
    takes about one copy of the weights in memory, not two.

    Args:
        path: the .safetensors file.
        dtype: the dtype the weights are converted to.
        device: where the weights go (default CPU). The offload policy decides this for callers.

    Raises:
        CheckpointError: not safetensors, not a Wan 2.1 VAE, or keys / shapes that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VAE file {path} does not exist: check the path or ComfyUI's vae folder")
    header = read_header(path)
    keys = list(header.tensors)
    prefix, _ = find_vae(keys, path.name)  # refused here, naming what the file is, before a tensor is read
    bad = next((k for k in keys if k.startswith(prefix) and header.tensors[k].dtype not in FLOAT_DTYPES), None)
    if bad is not None:
        raise CheckpointError(f"{path.name} stores {bad!r} as {header.tensors[bad].dtype}, not as floating-point "
                              "weights: use an fp32, bf16 or fp16 Wan 2.1 VAE (ComfyUI's wan_2.1_vae.safetensors)")
    state_dict, layout = to_native(read_safetensors(path, only_prefix=prefix or None)[0], source=path.name)
    config = config_from_shapes({k: tuple(v.shape) for k, v in state_dict.items()}, path.name)
    model = build_vae(config, device=torch.device("meta"))
    report = replace(check_state_dict(model, state_dict, layout),
                     ignored=tuple(sorted(k for k in keys if not k.startswith(prefix))))
    _raise_for(report, path)
    target = device or torch.device("cpu")
    converted = {}
    for key in list(state_dict):  # pop while converting: one copy of the weights alive, not two
        converted[key] = state_dict.pop(key).to(device=target, dtype=dtype)
    model.load_state_dict(converted, strict=True, assign=True)
    log.info("loaded Wan VAE from %s (%s layout, dim %d)", path.name, layout, config.dim)
    return model.eval().requires_grad_(False), report
