"""Where each weight lives during a run: a MemoryPlan from a budget, the block sizes and the activations.

The plan works on any model that declares its repeated blocks (the diffusers habit of class-level
hints; nothing here names a backbone):

    class SomeDiT(nn.Module):
        _offload_blocks = "blocks"                 # attribute holding the nn.ModuleList of blocks
        _keep_in_fp32_modules = ("modulation",)    # name parts never stored low-bit (keep their dtype)

Everything outside the block list ("the rest": patch and text embeddings, time MLP, head) stays
resident. Each block is either *resident* (on the compute device for the whole run) or *streamed*
(kept in host memory and copied in just before use, ``prefetch`` blocks ahead; blockswap.py).

The accounting, all in bytes, on the compute device:

    peak = rest + resident blocks + stream slots + activations + workspace + reserve

- stream slots: streamed blocks that can be on the device at once: the one computing plus
  ``prefetch`` in flight, sized by the largest streamed blocks.
- activations: estimate_activation_bytes() (tokens × widths × documented live-tensor factors).
- workspace: the transient upcast of the largest layer when weights are stored in a low-bit dtype.
- reserve: a margin for the allocator's fragmentation and kernels' scratch space.

Sizes come from the parameters' shapes only, so they work on the meta device: a 14B model is planned
without allocating a byte of weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import InputError, MemoryPlanError
from .policy import dtype_bytes

log = logging.getLogger(__name__)

GiB = 2**30
MiB = 2**20

# Live tensors of one block at its peak, per token, in units of the compute dtype (see
# estimate_activation_bytes). Width-D tensors during self-attention, as models/wan_dit.py computes it:
# the fp32 residual stream (2), the modulated input in the compute dtype (1), q or k from its Linear
# and RMS norm (2), and RoPE's fp32 temporaries (x.float(), four half-width products, the stacked
# result: about 8), with the finished q alongside when k is rotated (1).
HIDDEN_LIVE = 14
# Width-F tensors: the FFN hidden layer before and after its activation function.
FFN_LIVE = 2
DEFAULT_RESERVE_BYTES = 512 * MiB


@dataclass(frozen=True)
class OffloadConfig:
    """What the user (or ComfyUI's model manager, through the nodes) asks of the offloader.

    budget_bytes: compute-device memory the run may use; None reads the free memory at plan time.
    prefetch: streamed blocks copied ahead of the one computing (0 = copy in line, no overlap).
    storage_dtype: dtype weights are stored in (an fp8 dtype halves the bytes of bf16); None keeps the
        loaded dtype.
    reserve_bytes: margin kept free for allocator fragmentation and kernel scratch space.
    min_streamed: stream at least this many blocks even when more would fit (a manual block-swap knob).
    """

    budget_bytes: Optional[int] = None
    prefetch: int = 1
    storage_dtype: Optional[torch.dtype] = None
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    min_streamed: int = 0


@dataclass(frozen=True)
class ModelSizes:
    """Byte sizes of a model's parts in a given storage dtype (from shapes; meta tensors are fine)."""

    block_bytes: tuple[int, ...]  # one entry per repeated block, in order of execution
    rest_bytes: int  # everything outside the block list
    largest_layer_params: int  # elements of the largest weight matrix (the upcast workspace)


@dataclass(frozen=True)
class MemoryPlan:
    """Which blocks are resident and which stream, and the memory that placement predicts.

    Holds its own inputs, so recover.py can re-plan from it after an out-of-memory error.
    """

    budget_bytes: int
    block_bytes: tuple[int, ...]
    rest_bytes: int
    activation_bytes: int
    streamed: tuple[int, ...]  # indices into the block list, ascending
    prefetch: int
    workspace_bytes: int = 0
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    passes_per_step: int = 1  # model calls per sampling step (2 when CFG runs cond and uncond apart)

    @property
    def resident(self) -> tuple[int, ...]:
        streamed = set(self.streamed)
        return tuple(i for i in range(len(self.block_bytes)) if i not in streamed)

    @property
    def slots(self) -> int:
        """Streamed blocks that may be on the device at once: the computing one plus those prefetched."""
        return min(len(self.streamed), self.prefetch + 1)

    @property
    def slot_bytes(self) -> int:
        sizes = sorted((self.block_bytes[i] for i in self.streamed), reverse=True)
        return sum(sizes[: self.slots])

    @property
    def resident_bytes(self) -> int:
        return self.rest_bytes + sum(self.block_bytes[i] for i in self.resident)

    @property
    def streamed_bytes(self) -> int:
        return sum(self.block_bytes[i] for i in self.streamed)

    @property
    def predicted_peak_bytes(self) -> int:
        fixed = self.activation_bytes + self.workspace_bytes + self.reserve_bytes
        return self.resident_bytes + self.slot_bytes + fixed

    @property
    def pcie_bytes_per_step(self) -> int:
        """Host-to-device bytes per sampling step: every streamed block once per model call."""
        return self.streamed_bytes * self.passes_per_step

    def describe(self) -> str:
        """One line for the log: placement, predicted peak against the budget, traffic per step."""
        return (f"{len(self.resident)} blocks resident, {len(self.streamed)} streamed (prefetch {self.prefetch}); "
                f"resident {self.resident_bytes / GiB:.2f} GiB, streamed {self.streamed_bytes / GiB:.2f} GiB, "
                f"predicted peak {self.predicted_peak_bytes / GiB:.2f} of {self.budget_bytes / GiB:.2f} GiB, "
                f"{self.pcie_bytes_per_step / GiB:.2f} GiB over the bus per step")


def plan_memory(block_bytes: Sequence[int], rest_bytes: int, activation_bytes: int, budget_bytes: int, *,
                prefetch: int = 1, workspace_bytes: int = 0, reserve_bytes: int = DEFAULT_RESERVE_BYTES,
                passes_per_step: int = 1, min_streamed: int = 0) -> MemoryPlan:
    """The plan that streams the fewest blocks whose predicted peak fits ``budget_bytes``.

    Streamed blocks are spread evenly through the stack, so resident blocks sit between them and
    their compute time hides more of the copies.

    Args:
        block_bytes: size of each repeated block in its storage dtype, in execution order.
        rest_bytes: size of everything outside the blocks (always resident).
        activation_bytes: activation memory of one model call (estimate_activation_bytes).
        budget_bytes: compute-device memory the run may use.
        prefetch: streamed blocks copied ahead of the one computing.
        workspace_bytes: transient memory for upcasting low-bit weights (largest layer).
        reserve_bytes: margin kept free for fragmentation and kernel scratch space.
        passes_per_step: model calls per sampling step, for the bus traffic figure.
        min_streamed: stream at least this many blocks (recover.py raises it after an OOM).

    Raises:
        MemoryPlanError: when even streaming every block does not fit; the text gives the minimum.
    """
    _check_plan_inputs(block_bytes, budget_bytes, prefetch, min_streamed)
    blocks = tuple(int(b) for b in block_bytes)
    base = MemoryPlan(budget_bytes=int(budget_bytes), block_bytes=blocks, rest_bytes=int(rest_bytes),
                      activation_bytes=int(activation_bytes), streamed=(), prefetch=int(prefetch),
                      workspace_bytes=int(workspace_bytes), reserve_bytes=int(reserve_bytes),
                      passes_per_step=int(passes_per_step))
    for count in range(min(min_streamed, len(blocks)), len(blocks) + 1):
        candidate = replace(base, streamed=spread_indices(len(blocks), count))
        if candidate.predicted_peak_bytes <= budget_bytes:
            log.info("memory plan: %s", candidate.describe())
            return candidate
    raise MemoryPlanError(_nothing_fits_message(replace(base, streamed=tuple(range(len(blocks))))))


def plan_for_model(model: nn.Module, budget_bytes: int, activation_bytes: int, *,
                   config: OffloadConfig = OffloadConfig(), compute_dtype: torch.dtype = torch.bfloat16,
                   passes_per_step: int = 1) -> MemoryPlan:
    """plan_memory() with the sizes read from ``model``'s parameters (meta tensors are fine).

    Args:
        model: a module declaring ``_offload_blocks`` (see the module docstring).
        budget_bytes: compute-device memory the run may use (config.budget_bytes is not read here:
            the caller resolves None to the free memory through policy.free_memory_bytes).
        activation_bytes: activation memory of one model call (estimate_activation_bytes).
        config: prefetch depth, storage dtype, reserve and minimum streamed blocks.
        compute_dtype: dtype low-bit weights are upcast to; sizes the upcast workspace.
        passes_per_step: model calls per sampling step, for the bus traffic figure.
    """
    sizes = measure_model(model, config.storage_dtype)
    upcasts = config.storage_dtype is not None and dtype_bytes(config.storage_dtype) < dtype_bytes(compute_dtype)
    workspace = sizes.largest_layer_params * dtype_bytes(compute_dtype) if upcasts else 0
    return plan_memory(sizes.block_bytes, sizes.rest_bytes, activation_bytes, budget_bytes,
                       prefetch=config.prefetch, workspace_bytes=workspace, reserve_bytes=config.reserve_bytes,
                       passes_per_step=passes_per_step, min_streamed=config.min_streamed)


def spread_indices(total: int, count: int) -> tuple[int, ...]:
    """``count`` indices out of ``range(total)``, evenly spaced (the centres of ``count`` equal runs)."""
    return tuple((2 * j + 1) * total // (2 * count) for j in range(count))


# -- sizes -------------------------------------------------------------------------------------------

def block_list(model: nn.Module) -> nn.ModuleList:
    """The ModuleList named by the model's ``_offload_blocks`` hint."""
    name = getattr(model, "_offload_blocks", None)
    blocks = getattr(model, name, None) if isinstance(name, str) else None
    if not isinstance(blocks, nn.ModuleList):
        raise InputError(f"{type(model).__name__} declares _offload_blocks={name!r}, which does not name an "
                         f"nn.ModuleList attribute: add `_offload_blocks = \"blocks\"` (the list of repeated blocks) "
                         f"to the model class.")
    return blocks


def keep_fp32_names(model: nn.Module) -> tuple[str, ...]:
    """Name parts never stored low-bit, whatever the storage dtype (the ``_keep_in_fp32_modules`` hint)."""
    return tuple(getattr(model, "_keep_in_fp32_modules", ()) or ())


def measure_model(model: nn.Module, storage_dtype: Optional[torch.dtype] = None) -> ModelSizes:
    """Bytes of each block and of the rest once stored in ``storage_dtype`` (None: as they are now).

    Args:
        model: a module declaring ``_offload_blocks``.
        storage_dtype: dtype the nn.Linear weights will be stored in (lowbit.store_low_bit converts
            exactly those); everything else keeps its dtype, and so do the ``_keep_in_fp32_modules``.
    """
    blocks = block_list(model)
    keep = keep_fp32_names(model)
    in_blocks = {id(t) for block in blocks for t, _ in _entries(block, keep, storage_dtype)}
    rest = sum(_stored_bytes(t, low) for t, low in _entries(model, keep, storage_dtype) if id(t) not in in_blocks)
    per_block = tuple(sum(_stored_bytes(t, low) for t, low in _entries(block, keep, storage_dtype))
                      for block in blocks)
    largest = max((m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)), default=0)
    return ModelSizes(block_bytes=per_block, rest_bytes=rest, largest_layer_params=largest)


def stores_low_bit(name: str, module: nn.Module, keep: Sequence[str] = ()) -> bool:
    """True when ``module`` (qualified ``name``) gets low-bit storage: an nn.Linear outside ``keep``.

    Linear weights hold nearly all the bytes; vectors (biases, norm scales), modulation tables and
    the model's ``_keep_in_fp32_modules`` keep their precision, which is where low-bit would hurt most.

    Args:
        name: qualified module name ("blocks.3.ffn.0").
        module: the module.
        keep: name parts that are never stored low-bit.
    """
    return isinstance(module, nn.Linear) and not set(name.split(".")) & set(keep)


def _entries(module: nn.Module, keep: Sequence[str], storage_dtype: Optional[torch.dtype]):
    """(tensor, dtype it is stored in) for every parameter and buffer of ``module``, each once."""
    seen = set()
    for name, sub in module.named_modules():
        low_bit = storage_dtype is not None and stores_low_bit(name, sub, keep)
        for pname, tensor in [*sub._parameters.items(), *sub._buffers.items()]:
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            converts = low_bit and pname == "weight" and tensor.dtype != storage_dtype
            yield tensor, (storage_dtype if converts else None)


def _stored_bytes(tensor: torch.Tensor, storage_dtype: Optional[torch.dtype]) -> int:
    if storage_dtype is None:
        return tensor.numel() * tensor.element_size()
    scale = 4 if dtype_bytes(storage_dtype) == 1 else 0  # the fp32 per-tensor scale of scaled fp8
    return tensor.numel() * dtype_bytes(storage_dtype) + scale


# -- activations -------------------------------------------------------------------------------------

def latent_tokens(frames: int, height: int, width: int, vae_stride: tuple[int, int, int] = (4, 8, 8),
                  patch: tuple[int, int, int] = (1, 2, 2)) -> int:
    """Tokens L the DiT sees for a video of ``frames`` × ``height`` × ``width`` pixels.

    Args:
        frames: pixel frames F (4n+1 for a causal VAE with temporal stride 4).
        height: pixel height H.
        width: pixel width W.
        vae_stride: VAE compression (time, height, width); Wan 2.1: (4, 8, 8), Wan 2.2 5B: (4, 16, 16).
        patch: DiT patch size (time, height, width); Wan: (1, 2, 2).
    """
    latent_t = (frames - 1) // vae_stride[0] + 1  # the causal VAE keeps the first frame on its own
    latent_h, latent_w = height // vae_stride[1], width // vae_stride[2]
    return math.ceil(latent_t / patch[0]) * math.ceil(latent_h / patch[1]) * math.ceil(latent_w / patch[2])


def estimate_activation_bytes(tokens: int, hidden_dim: int, ffn_dim: int, batch: int = 1,
                              dtype: torch.dtype = torch.bfloat16, carried_fp32: int = 0) -> int:
    """Activation memory of one transformer-block forward at its peak, inference only.

    ``batch × tokens × (HIDDEN_LIVE × hidden_dim + FFN_LIVE × ffn_dim) × bytes(dtype)``: the live
    tensors are counted in units of the compute dtype (HIDDEN_LIVE and FFN_LIVE say which). Blocks run
    one after the other and free their intermediates, so one block's peak is the model's peak.
    Attention is assumed memory-efficient (flash or memory-efficient SDPA, memory linear in L); the
    math kernel's L × L score matrix is not counted. recover.py covers an estimate that falls short.

    Args:
        tokens: latent tokens L per sample (latent_tokens()).
        hidden_dim: model width D.
        ffn_dim: FFN hidden width.
        batch: samples per model call (2 when CFG runs cond and uncond in one batch).
        dtype: compute dtype.
        carried_fp32: further (B, L, D) fp32 tensors the model carries from block to block besides
            the residual stream (CueFusion: its pose and face cue streams, 2).
    """
    per_token = (HIDDEN_LIVE * hidden_dim + FFN_LIVE * ffn_dim) * dtype_bytes(dtype) + carried_fp32 * hidden_dim * 4
    return int(batch * tokens * per_token)


def _check_plan_inputs(block_bytes: Sequence[int], budget_bytes: int, prefetch: int, min_streamed: int) -> None:
    if budget_bytes <= 0:
        raise InputError(f"memory budget {budget_bytes} bytes is not positive: pass the bytes the run may use "
                         f"(or None to read the free memory).")
    if prefetch < 0:
        raise InputError(f"prefetch={prefetch} is negative: use 0 (copy in line) or more blocks ahead.")
    if min_streamed < 0:
        raise InputError(f"min_streamed={min_streamed} is negative: use 0 or a number of blocks to stream.")
    if any(b < 0 for b in block_bytes):
        raise InputError(f"block sizes {list(block_bytes)} include a negative size: sizes are bytes.")


def _nothing_fits_message(all_streamed: MemoryPlan) -> str:
    p = all_streamed
    return (f"memory budget {p.budget_bytes / GiB:.2f} GiB is below the {p.predicted_peak_bytes / GiB:.2f} GiB "
            f"needed even with all {len(p.block_bytes)} blocks streamed (resident rest {p.rest_bytes / GiB:.2f}, "
            f"activations {p.activation_bytes / GiB:.2f}, {p.slots} block slots {p.slot_bytes / GiB:.2f}, "
            f"upcast workspace {p.workspace_bytes / GiB:.2f}, reserve {p.reserve_bytes / GiB:.2f} GiB): "
            f"lower the resolution or frame count, run CFG as separate passes, store weights in fp8, "
            f"set prefetch to 0, or free GPU memory.")


# -- VAE tiling --------------------------------------------------------------------------------------

# Peak decode/encode activations per pixel of the processed region, in elements of the VAE dtype:
# ComfyUI's measured figures for the Wan 2.1 VAE (comfy/sd.py, memory_used_decode/encode). They do not
# grow with the frame count because the causal VAE runs one latent frame at a time with a small cache.
WAN_VAE_DECODE_ELEMS_PER_PIXEL = 7000
WAN_VAE_ENCODE_ELEMS_PER_PIXEL = 6000


@dataclass(frozen=True)
class TilePlan:
    """How a VAE pass is cut so it fits: spatial tiles (blended over ``overlap``) and temporal chunks."""

    tile: Optional[tuple[int, int]]  # (H, W) pixels per tile, overlap included; None = whole frame
    overlap: int  # pixels neighbouring tiles share and blend
    chunk_frames: int  # latent frames per VAE call
    predicted_peak_bytes: int


def plan_vae_tiles(budget_bytes: int, height: int, width: int, *, weight_bytes: int,
                   elems_per_pixel: int = WAN_VAE_DECODE_ELEMS_PER_PIXEL, dtype: torch.dtype = torch.bfloat16,
                   reserve_bytes: int = DEFAULT_RESERVE_BYTES, align: int = 64, min_tile: int = 128,
                   max_chunk_frames: int = 1) -> TilePlan:
    """The largest tile (then the longest temporal chunk) whose VAE pass fits ``budget_bytes``.

    peak = weights + reserve + elems_per_pixel × bytes(dtype) × tile_h × tile_w × chunk_frames.
    Whole frames are preferred (no seams); otherwise square tiles, a multiple of ``align`` pixels, with
    a quarter of the tile as overlap (ComfyUI's default ratio).

    Args:
        budget_bytes: compute-device memory the VAE pass may use.
        height: frame height in pixels.
        width: frame width in pixels.
        weight_bytes: the VAE's weights on the device.
        elems_per_pixel: activation elements per processed pixel (WAN_VAE_DECODE/ENCODE_ELEMS_PER_PIXEL).
        dtype: the VAE's compute dtype.
        reserve_bytes: margin kept free.
        align: tile sides are multiples of this (a multiple of the VAE's spatial stride).
        min_tile: the smallest tile side worth running; below it the pass does not fit.
        max_chunk_frames: most latent frames per call (1 for a causal VAE decoding frame by frame).

    Raises:
        MemoryPlanError: when even a ``min_tile`` tile does not fit.
    """
    per_pixel = elems_per_pixel * dtype_bytes(dtype)
    room = budget_bytes - weight_bytes - reserve_bytes

    def peak(pixels: int, chunk: int) -> int:
        return weight_bytes + reserve_bytes + per_pixel * pixels * chunk

    if room >= per_pixel * height * width:
        chunk = max(c for c in range(1, max_chunk_frames + 1) if peak(height * width, c) <= budget_bytes)
        return TilePlan(None, 0, chunk, peak(height * width, chunk))
    side = int(math.isqrt(max(room, 0) // per_pixel)) // align * align
    if side < min_tile:
        raise MemoryPlanError(
            f"memory budget {budget_bytes / GiB:.2f} GiB leaves no room for a {min_tile}x{min_tile} VAE tile "
            f"(weights {weight_bytes / GiB:.2f} GiB, {per_pixel} bytes per pixel): free GPU memory, run the VAE "
            f"in a 2-byte dtype, or decode on the CPU.")
    tile = (min(side, height), min(side, width))
    return TilePlan(tile, side // 4, 1, peak(tile[0] * tile[1], 1))
