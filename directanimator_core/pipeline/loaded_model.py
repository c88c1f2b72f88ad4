"""The loaded DirectAnimator model the nodes pass around (DA_MODEL), how it is loaded and where it runs.

``load_animator`` reads a base Wan checkpoint and a CueFusion adapter (or one merged file) through
models/, optionally stores the Linear weights in fp8 (offload/lowbit.py), and returns an ``Animator``:
the model plus the settings a run needs (compute dtype, device, offload config). Weights stay in
host memory; ``placement`` plans a run and ``place`` carries the plan out for the length of one
sampling run (offload/ is the only code that moves weights), so between runs the model holds no
accelerator memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import CheckpointError, InputError, NumericError
from ..models.checkpoints.adapter import load_model
from ..models.checkpoints.backbone import ADAPTER_PREFIX, check_backbone_files, describe_file, read_header
from ..models.cuefusion import CueFusionDiT
from ..offload import BlockSwap, MemoryPlan, OffloadConfig, estimate_activation_bytes, latent_tokens, offload_model
from ..offload import policy
from ..offload.lowbit import store_low_bit
from ..offload.plan import keep_fp32_names, measure_model, plan_for_model, plan_memory

log = logging.getLogger(__name__)

# weight dtype choices of the loader; None = as stored in the file
WEIGHT_DTYPES: dict[str, Optional[torch.dtype]] = {
    "auto": None, "bf16": torch.bfloat16, "fp16": torch.float16,
    "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2,
}
FILE_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
               "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
               "U8": torch.float8_e4m3fn}  # ComfyUI's uint8 container of fp8 (check_backbone_files checks it is)
NOMINAL_RUN = (81, 480, 832)  # frames, height, width: the run the loader's placement line describes


@dataclass(frozen=True, eq=False)
class Animator:
    """A DirectAnimator model ready to sample: weights in host memory, run settings beside them."""

    model: CueFusionDiT
    name: str  # file names, for logs
    compute_dtype: torch.dtype
    device: torch.device
    offload: OffloadConfig

    @property
    def config(self):
        return self.model.backbone.config


def stored_dtype(path: Path) -> torch.dtype:
    """The dtype most of a file's 2-D weights are stored in (read from the header only)."""
    counts = Counter(e.dtype for e in read_header(path).tensors.values() if len(e.shape) == 2)
    if not counts:
        raise CheckpointError(f"{path.name} holds no weight matrices: it is not a Wan checkpoint")
    name = counts.most_common(1)[0][0]
    if name not in FILE_DTYPES:
        raise CheckpointError(f"{path.name} stores its weights as {name}: use an fp32, bf16, fp16 or fp8 checkpoint")
    return FILE_DTYPES[name]


def holds_adapter(path: Path) -> bool:
    """Whether a file carries CueFusion adapter tensors (an adapter file or a merged model); a file that is
    not safetensors is refused here, in one line naming it (checkpoint.read_header)."""
    return any(key.startswith(ADAPTER_PREFIX) for key in read_header(path).tensors)


def check_model_files(base: Path, adapter: Optional[Path]) -> None:
    """Raise before loading when the pair cannot make a DirectAnimator model (headers only, no tensor read).

    The base must be a Wan DiT this pack loads (a UNet, a VAE, an adapter... is named for what it is);
    the adapter file must hold CueFusion tensors.

    Args:
        base: the Wan (or merged) checkpoint.
        adapter: the adapter file, or None when the adapter is merged into ``base``.
    """
    for path in (base, adapter):
        if path is not None and not path.is_file():
            raise CheckpointError(f"model file {path} does not exist: put it in the folder the workflow's note names")
    check_backbone_files([read_header(base)])
    if adapter is None and not holds_adapter(base):
        raise CheckpointError(f"{base.name} is a plain Wan checkpoint with no DirectAnimator adapter in it: pick "
                              "the adapter file (models/directanimator) in the adapter input")
    if adapter is not None and not holds_adapter(adapter):
        found = describe_file(read_header(adapter).tensors)
        what = "" if found is None else f"; it is {found[1]} (found {found[2]!r})"
        raise CheckpointError(f"{adapter.name} holds no DirectAnimator adapter tensors ('{ADAPTER_PREFIX}...'){what}: "
                              "pick a DirectAnimator adapter, not a LoRA or another model")


def compute_dtype_for(weight: Optional[torch.dtype], stored: torch.dtype) -> torch.dtype:
    """Matmul dtype: the weight dtype when it is a 16/32-bit float, else bf16 (fp8 is upcast per layer)."""
    chosen = weight or stored
    return chosen if chosen in (torch.float32, torch.bfloat16, torch.float16) else torch.bfloat16


def load_animator(base: Path, adapter: Optional[Path] = None, weight_dtype: Optional[torch.dtype] = None,
                  offload: OffloadConfig = OffloadConfig(), device: Optional[torch.device] = None) -> Animator:
    """Load base + adapter (or a merged file) into host memory.

    Args:
        base: Wan checkpoint in any layout models/checkpoints/backbone.py reads, or a merged model.
        adapter: DirectAnimator adapter file; None when merged into ``base``.
        weight_dtype: bf16 / fp16 / an fp8 dtype, or None to keep the file's dtype.
        offload: budget and block-swap settings for runs.
        device: compute device (default: policy.compute_device()).
    """
    check_model_files(base, adapter)
    compute = compute_dtype_for(weight_dtype, stored_dtype(base))
    fp8 = weight_dtype in policy.fp8_dtypes()
    model = load_model(base, adapter, compute_dtype=compute, device=policy.host_device())  # weights in ``compute``
    check_finite_weights(model, base, adapter)
    if fp8:
        store_low_bit(model.backbone, weight_dtype, keep=keep_fp32_names(model))
    name = base.name if adapter is None else f"{base.name} + {adapter.name}"
    device = policy.compute_device(device)
    model.backbone.compute_dtype = policy.matmul_dtype(device, compute)  # fp32 on a CPU; weights stay as stored
    return Animator(model=model, name=name, compute_dtype=model.backbone.compute_dtype, device=device,
                    offload=offload)


FINITE_CHUNK = 2**24  # elements checked at once (64 MiB in float32), so a large tensor is never copied whole


def first_non_finite(module: nn.Module) -> Optional[str]:
    """Name of the first floating-point parameter or buffer holding NaN or inf, or None."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        flat = tensor.detach().reshape(-1)
        for start in range(0, flat.numel(), FINITE_CHUNK):
            if not bool(torch.isfinite(flat[start:start + FINITE_CHUNK].float()).all()):
                return name
    return None


def check_finite_weights(model: nn.Module, base: Path, adapter: Optional[Path]) -> None:
    """NumericError naming the file and tensor when loaded weights hold NaN or inf (they give all-NaN frames)."""
    bad = first_non_finite(model)
    if bad is None:
        return
    owner = adapter if adapter is not None and bad.startswith("adapter.") else base
    raise NumericError(f"{owner.name} holds NaN or infinite values (first in '{bad}'): the file is damaged or was "
                       "saved from a diverged run; download or export it again")


def activation_bytes(animator: Animator, frames: int, height: int, width: int) -> int:
    """Activation memory of one model call on a (frames x height x width) window."""
    config = animator.config
    tokens = latent_tokens(frames, height, width, patch=config.patch_size)
    return estimate_activation_bytes(tokens, config.dim, config.ffn_dim, dtype=animator.compute_dtype)


def placement(animator: Animator, frames: int, height: int, width: int,
              budget_bytes: Optional[int] = None) -> MemoryPlan:
    """The plan a run of this size gets (nothing moves); the budget defaults to the device's free memory.

    Args:
        animator: the loaded model.
        frames: pixel frames per window.
        height: output height.
        width: output width.
        budget_bytes: compute-device memory the run may use; None = offload.budget_bytes, else free memory.
    """
    act = activation_bytes(animator, frames, height, width)
    if not policy.is_accelerator(animator.device):  # the host computes: everything is resident
        sizes = measure_model(animator.model)
        everything = sum(sizes.block_bytes) + sizes.rest_bytes + act + animator.offload.reserve_bytes
        return plan_memory(sizes.block_bytes, sizes.rest_bytes, act, everything,
                           prefetch=animator.offload.prefetch, reserve_bytes=animator.offload.reserve_bytes)
    budget = budget_bytes or animator.offload.budget_bytes or policy.free_memory_bytes(animator.device)
    return plan_for_model(animator.model, budget, act, config=animator.offload, compute_dtype=animator.compute_dtype)


def placement_line(animator: Animator, plan: MemoryPlan, frames: int, height: int, width: int) -> str:
    """The one readable log line of a placement decision."""
    return (f"DirectAnimator placement of {animator.name} on {animator.device} ({animator.compute_dtype}) for "
            f"{frames} frames at {width}x{height}: {plan.describe()}")


def place(animator: Animator, frames: int, height: int, width: int, budget_bytes: Optional[int] = None) -> BlockSwap:
    """Carry out the placement for one run; use as a context manager (weights return home on exit).

    Args:
        animator: the loaded model.
        frames: pixel frames per window.
        height: output height.
        width: output width.
        budget_bytes: compute-device memory the run may use; None as in ``placement``.
    """
    config = animator.offload if budget_bytes is None else replace(animator.offload, budget_bytes=budget_bytes)
    return offload_model(animator.model, activation_bytes(animator, frames, height, width), config=config,
                         device=animator.device, compute_dtype=animator.compute_dtype)


def check_budget(budget_gib: float) -> Optional[int]:
    """A user's budget in GiB -> bytes (0 = None: read the free memory at run time)."""
    if budget_gib < 0:
        raise InputError(f"budget of {budget_gib} GiB: give a positive number of GiB, or 0 to use the free memory")
    return int(budget_gib * 2**30) or None
