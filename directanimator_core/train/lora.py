"""LoRA on the backbone blocks' Linear layers (Hu et al. 2021): W x + (α / r)·B A x, B zero at init.

The low-rank pairs live in their own module and reach the Linears through forward hooks, so the
backbone's parameter names (the checkpoint keys) never change and the base weights stay frozen.

File format (safetensors), the one ComfyUI's LoRA loader reads for Wan models:
    diffusion_model.blocks.N.<target>.lora_A.weight  (r, in)
    diffusion_model.blocks.N.<target>.lora_B.weight  (out, r)
    diffusion_model.blocks.N.<target>.alpha          ()
metadata ``format`` = "directanimator.lora", ``rank``, ``alpha``, ``targets`` (JSON).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import CheckpointError, InputError

FORMAT = "directanimator.lora"
PREFIX = "diffusion_model."


class LoRAPair(nn.Module):
    """A (r, in) and B (out, r) for one Linear; B starts at zero so the pair starts as a no-op."""

    def __init__(self, linear: nn.Linear, rank: int, scale: float) -> None:
        super().__init__()
        device = linear.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, linear.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, rank, device=device))
        self.scale = scale
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out) in x's dtype."""
        return F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype)) * self.scale


class LoRA(nn.Module):
    """LoRA pairs for ``targets`` (names relative to a block, e.g. "self_attn.q") of every block.

    ``pairs`` is keyed by the Linear's backbone name with dots as "__" (ModuleDict keys cannot hold dots).
    """

    def __init__(self, blocks: nn.ModuleList, targets: Sequence[str], rank: int, alpha: float,
                 block_prefix: str = "blocks") -> None:
        super().__init__()
        self.rank, self.alpha, self.targets = rank, alpha, tuple(targets)
        self.pairs = nn.ModuleDict()
        self._linears: dict[str, nn.Linear] = {}
        for index, block in enumerate(blocks):
            for target in targets:
                linear = _find_linear(block, target, index)
                name = f"{block_prefix}.{index}.{target}"
                self.pairs[name.replace(".", "__")] = LoRAPair(linear, rank, alpha / rank)
                self._linears[name] = linear
        self._handles = []

    def attach(self) -> "LoRA":
        """Hook every pair onto its Linear (idempotent)."""
        self.detach()
        for name, linear in self._linears.items():
            pair = self.pairs[name.replace(".", "__")]
            self._handles.append(linear.register_forward_hook(
                lambda module, args, out, pair=pair: out + pair.delta(args[0])))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def named_pairs(self) -> dict[str, LoRAPair]:
        return {name: self.pairs[name.replace(".", "__")] for name in self._linears}

    def merge(self) -> None:
        """Fold every pair into its Linear's weight (W += scale·B A) and unhook: for a frozen teacher."""
        self.detach()
        with torch.no_grad():
            for name, linear in self._linears.items():
                pair = self.pairs[name.replace(".", "__")]
                delta = (pair.lora_B.float() @ pair.lora_A.float()) * pair.scale
                linear.weight.copy_((linear.weight.float() + delta).to(linear.weight.dtype))

    def to_file_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors in the file format (module docstring)."""
        out = {}
        for name, pair in self.named_pairs().items():
            out[f"{PREFIX}{name}.lora_A.weight"] = pair.lora_A.detach().float().contiguous()
            out[f"{PREFIX}{name}.lora_B.weight"] = pair.lora_B.detach().float().contiguous()
            out[f"{PREFIX}{name}.alpha"] = torch.tensor(float(self.alpha))
        return out

    def file_metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "rank": str(self.rank), "alpha": str(self.alpha), "targets": json.dumps(self.targets)}

    def load_file_tensors(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Copy pairs from file tensors; every pair of this LoRA must be there with its shape."""
        with torch.no_grad():
            for name, pair in self.named_pairs().items():
                for part in ("lora_A", "lora_B"):
                    key = f"{PREFIX}{name}.{part}.weight"
                    tensor = tensors.get(key)
                    param = getattr(pair, part)
                    if tensor is None or tensor.shape != param.shape:
                        found = None if tensor is None else tuple(tensor.shape)
                        raise CheckpointError(f"{source}: LoRA tensor {key} is {found}, this model needs "
                                              f"{tuple(param.shape)}: use the LoRA trained with the same "
                                              "model.lora_rank, lora_targets and backbone")
                    param.copy_(tensor)


def _find_linear(block: nn.Module, target: str, index: int) -> nn.Linear:
    try:
        module = block.get_submodule(target)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Linear):
        raise InputError(f"model.lora_targets entry {target!r} is not a Linear of block {index}: use names such as "
                         "'self_attn.q', 'cross_attn.o', 'ffn.0'")
    return module


def read_lora(path: Union[str, Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LoRA file's tensors and metadata (only safetensors; nothing is unpickled).

    Args:
        path: the .safetensors file.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"LoRA file {path} is not a readable safetensors file ({error}): give the .safetensors "
                              "file written by the trainer") from error


def lora_config_from(metadata: dict[str, str], source: str) -> tuple[int, float, tuple[str, ...]]:
    """(rank, alpha, targets) recorded in a LoRA file's metadata."""
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{source} has format {metadata.get('format')!r}, not {FORMAT!r}: give a LoRA written by "
                              "this trainer (model.lora)")
    return int(metadata["rank"]), float(metadata["alpha"]), tuple(json.loads(metadata["targets"]))


def build_lora(blocks: nn.ModuleList, rank: int, alpha: float, targets: Sequence[str],
               path: Optional[Union[str, Path]] = None) -> LoRA:
    """A LoRA over ``blocks``, fresh (B = 0) or loaded from ``path``, attached.

    Args:
        blocks: the backbone's block list.
        rank: LoRA rank (a file's own metadata wins when ``path`` is given).
        alpha: scale numerator (the pair computes alpha / rank · B A x).
        targets: Linear names relative to a block.
        path: a LoRA file to start from.
    """
    tensors = None
    if path is not None:
        tensors, metadata = read_lora(path)
        rank, alpha, targets = lora_config_from(metadata, Path(path).name)
    lora = LoRA(blocks, targets, rank, alpha)
    if tensors is not None:
        lora.load_file_tensors(tensors, Path(path).name)
    return lora.attach()
