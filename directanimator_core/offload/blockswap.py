"""Block swap with prefetch: the only code that moves weights between host and compute device.

BlockSwap carries out a MemoryPlan on a model that declares ``_offload_blocks`` (plan.py):

- the rest of the model and the resident blocks are copied to the device once;
- streamed blocks stay in host memory (pinned on CUDA, so copies are asynchronous) and are copied in
  by forward hooks: the pre-hook of block i makes the compute stream wait for block i's copy and
  starts the copies of the next ``prefetch`` streamed blocks (cyclically, so the first blocks of the
  next model call load while the last ones compute); the post-hook points block i back at its host
  master and drops the device copy. Weights never change during inference, so nothing is copied back.

The model's forward is untouched: it calls its blocks as usual and the hooks do the rest, so outputs
are bit-identical to the fully resident model. Inference only (under ``torch.no_grad()``).

How bytes reach the device is a Transfer strategy:
- CudaStreamTransfer: copies on a side CUDA stream, ordered against compute by events;
- InlineTransfer: a plain copy on the caller's stream (MPS, which has no side streams; and any
  device, including the CPU itself, which the tests use to check the executor without a GPU).
On a CPU-only machine nothing moves: ``offload()`` leaves every weight where it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch
from torch import nn

from ..errors import InputError
from . import policy
from .lowbit import store_low_bit
from .plan import MemoryPlan, OffloadConfig, block_list, keep_fp32_names, plan_for_model, plan_memory, measure_model

log = logging.getLogger(__name__)


@dataclass
class TensorSlot:
    """Where a parameter or buffer hangs: ``module._parameters[name]`` or ``module._buffers[name]``."""

    module: nn.Module
    name: str
    is_parameter: bool

    def raw(self) -> torch.Tensor:
        """The Parameter or buffer object itself (stable identity, unlike ``.data``)."""
        table = self.module._parameters if self.is_parameter else self.module._buffers
        return table[self.name]

    def get(self) -> torch.Tensor:
        tensor = self.raw()
        return tensor.data if self.is_parameter else tensor

    def point_at(self, tensor: torch.Tensor) -> None:
        # Re-pointing .data keeps the Parameter object (and every reference to it) intact.
        if self.is_parameter:
            self.module._parameters[self.name].data = tensor
        else:
            self.module._buffers[self.name] = tensor


def tensor_slots(module: nn.Module) -> list[TensorSlot]:
    """Every parameter and buffer of ``module`` (recursively), each once."""
    slots, seen = [], set()
    for sub in module.modules():
        for table, is_param in ((sub._parameters, True), (sub._buffers, False)):
            for name, tensor in table.items():
                if tensor is not None and id(tensor) not in seen:
                    seen.add(id(tensor))
                    slots.append(TensorSlot(sub, name, is_param))
    return slots


class Transfer(Protocol):
    """How a block's tensors reach the compute device, and how their device copies are let go."""

    device: torch.device

    def prepare_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """The host master to keep for a streamed tensor (pinned where that helps)."""

    def start(self, tensors: list[torch.Tensor]) -> "Pending":
        """Begin copying ``tensors`` to the device; may return before the copy ends."""

    def ready(self, pending: "Pending") -> list[torch.Tensor]:
        """Device copies that work queued from now on the compute stream may read."""

    def release(self, tensors: list[torch.Tensor]) -> None:
        """The compute stream has queued its last use of ``tensors``; their memory may be reused after it."""


@dataclass
class Pending:
    tensors: list[torch.Tensor]
    event: Optional[object] = None  # torch.cuda.Event recorded on the copy stream


class InlineTransfer:
    """Copies in line on the caller's stream: MPS (no side streams) and tests (CPU to CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)

    def prepare_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def start(self, tensors: list[torch.Tensor]) -> Pending:
        # copy=True so that even a CPU "device" gets storage of its own, as a GPU would.
        return Pending([t.to(self.device, copy=True) for t in tensors])

    def ready(self, pending: Pending) -> list[torch.Tensor]:
        return pending.tensors

    def release(self, tensors: list[torch.Tensor]) -> None:
        tensors.clear()


class CudaStreamTransfer:
    """Copies from pinned host memory on a side CUDA stream; events order them against compute.

    Two orderings matter. (1) Compute must not read a block before its copy lands: ready() makes the
    compute stream wait on the copy's event (on the GPU, the CPU does not stop). (2) A copy must not
    land in memory a finished block still occupies on the GPU: the allocator hands memory back only
    once the compute stream has passed the point where the tensor was released (record_stream), and
    start() lets the CPU wait for the last release to complete on the GPU before it allocates, so the
    CPU never queues more blocks than the plan has slots (otherwise the allocator would take fresh
    memory beyond the budget). The cost is one launch gap per streamed block.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self._last_release: Optional[torch.cuda.Event] = None

    def prepare_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.is_pinned() else tensor.pin_memory()

    def start(self, tensors: list[torch.Tensor]) -> Pending:
        if self._last_release is not None:
            self._last_release.synchronize()
            self._last_release = None
        with torch.cuda.stream(self.stream):
            copies = [t.to(self.device, non_blocking=True) for t in tensors]
            event = torch.cuda.Event()
            event.record(self.stream)
        return Pending(copies, event)

    def ready(self, pending: Pending) -> list[torch.Tensor]:
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(pending.event)
        for t in pending.tensors:
            t.record_stream(compute)  # allocated on the side stream, read on compute: see the class doc
        return pending.tensors

    def release(self, tensors: list[torch.Tensor]) -> None:
        self._last_release = torch.cuda.Event()
        self._last_release.record(torch.cuda.current_stream(self.device))
        tensors.clear()


def build_transfer(device: torch.device) -> Optional[Transfer]:
    """The transfer strategy for ``device``; None when the device is the host itself (nothing moves)."""
    if not policy.is_accelerator(device):
        return None
    if policy.has_copy_streams(device):
        return CudaStreamTransfer(device)
    return InlineTransfer(device)


@dataclass
class _Block:
    slots: list[TensorSlot]
    masters: list[torch.Tensor] = field(default_factory=list)


class BlockSwap:
    """Carries out a MemoryPlan on a model: resident parts on the device, streamed blocks by hooks.

    Use as a context manager around inference, or call attach() / detach(). detach() points every
    parameter back at its host master, so the model is as it was (minus the device copies).
    """

    def __init__(self, model: nn.Module, plan: MemoryPlan, transfer: Optional[Transfer]) -> None:
        """Prepare, without moving anything yet.

        Args:
            model: a module declaring ``_offload_blocks``, with its weights in host memory.
            plan: the placement to carry out (plan.plan_for_model).
            transfer: the copy strategy (build_transfer); None keeps every weight where it is.
        """
        self.model, self.transfer = model, transfer
        self.blocks = block_list(model)
        self._records = [_Block(tensor_slots(b)) for b in self.blocks]
        self._rest = _Block(_rest_slots(model, self.blocks))
        self._in_flight: dict[int, Pending] = {}
        self._on_device: dict[int, list[torch.Tensor]] = {}
        self._hooks: list = []
        self.attached = False
        self._use(plan)

    def _use(self, plan: MemoryPlan) -> None:
        if len(self.blocks) != len(plan.block_bytes):
            raise InputError(f"plan has {len(plan.block_bytes)} blocks but {type(self.model).__name__} has "
                             f"{len(self.blocks)}: build the plan from this model (plan_for_model).")
        self.plan = plan
        self._streamed = set(plan.streamed)
        self._order = list(plan.streamed)  # cyclic prefetch order

    # -- attach / detach --------------------------------------------------------------------------

    def attach(self) -> "BlockSwap":
        """Copy the resident parts to the device, keep streamed blocks on the host, install hooks."""
        if self.attached or self.transfer is None:
            self.attached = True
            return self
        _check_on_host(self.model)
        self._place(self._rest)
        for i, record in enumerate(self._records):
            if i in self._streamed:
                self._keep_on_host(record)
            else:
                self._place(record)
        for i, block in enumerate(self.blocks):
            if i in self._streamed or self.plan.prefetch > 0:
                self._hooks.append(block.register_forward_pre_hook(self._pre_hook(i)))
            if i in self._streamed:
                self._hooks.append(block.register_forward_hook(self._post_hook(i)))
        self.attached = True
        log.info("block swap attached on %s: %s", self.transfer.device, self.plan.describe())
        return self

    def detach(self) -> None:
        """Remove the hooks, drop every device copy and point all tensors back at their host masters."""
        if not self.attached:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.release_streamed()
        if self.transfer is not None:
            for record in [self._rest, *self._records]:
                self._point_home(record)
        self.attached = False

    def replan(self, plan: MemoryPlan) -> None:
        """Carry out a new plan (more streaming after an out-of-memory error) on the same model."""
        self.detach()
        self._use(plan)
        self.attach()

    def release_streamed(self) -> None:
        """Drop prefetched and in-use copies of streamed blocks (at the end of sampling)."""
        for i in list(self._in_flight):
            self.transfer.release(self.transfer.ready(self._in_flight.pop(i)))
        for i in list(self._on_device):
            self._point_host(i)
            self.transfer.release(self._on_device.pop(i))

    def __enter__(self) -> "BlockSwap":
        return self.attach()

    def __exit__(self, *exc_info) -> None:
        self.detach()

    # -- placement --------------------------------------------------------------------------------

    def _place(self, record: _Block) -> None:
        record.masters = [slot.get() for slot in record.slots]
        copies = self.transfer.ready(self.transfer.start(record.masters))
        for slot, tensor in zip(record.slots, copies):
            slot.point_at(tensor)

    def _keep_on_host(self, record: _Block) -> None:
        record.masters = [self.transfer.prepare_host(slot.get()) for slot in record.slots]
        for slot, tensor in zip(record.slots, record.masters):
            slot.point_at(tensor)

    def _point_home(self, record: _Block) -> None:
        for slot, tensor in zip(record.slots, record.masters):
            slot.point_at(tensor)

    def _point_host(self, i: int) -> None:
        self._point_home(self._records[i])

    # -- streaming --------------------------------------------------------------------------------

    def _pre_hook(self, i: int):
        def hook(module: nn.Module, args: tuple) -> None:
            if i in self._streamed:
                self._bring_in(i)
            self._prefetch_after(i)
        return hook

    def _post_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            tensors = self._on_device.pop(i)
            self._point_host(i)
            self.transfer.release(tensors)
            self._prefetch_after(i)
        return hook

    def _bring_in(self, i: int) -> None:
        pending = self._in_flight.pop(i, None)
        if pending is None:  # called out of the expected order: make room, then copy now
            self._evict_prefetches(keep=self.plan.slots - 1 - len(self._on_device))
            pending = self.transfer.start(self._records[i].masters)
        copies = self.transfer.ready(pending)
        for slot, tensor in zip(self._records[i].slots, copies):
            slot.point_at(tensor)
        self._on_device[i] = copies

    def _prefetch_after(self, i: int) -> None:
        for j in self._upcoming(i):
            if len(self._in_flight) + len(self._on_device) >= self.plan.slots:
                return
            if j not in self._in_flight and j not in self._on_device:
                self._in_flight[j] = self.transfer.start(self._records[j].masters)

    def _upcoming(self, i: int) -> list[int]:
        """The next ``prefetch`` streamed blocks after block i, wrapping into the next model call."""
        if not self._order:
            return []
        later = [j for j in self._order if j > i] + [j for j in self._order if j <= i]
        return [j for j in later if j != i][: self.plan.prefetch]

    def _evict_prefetches(self, keep: int) -> None:
        for j in list(self._in_flight)[max(keep, 0):]:
            self.transfer.release(self.transfer.ready(self._in_flight.pop(j)))


def offload(model: nn.Module, plan: MemoryPlan, device: Optional[torch.device] = None) -> BlockSwap:
    """Attach a BlockSwap that carries out ``plan`` on ``device`` (default: policy.compute_device()).

    On the CPU nothing moves and no hook is installed: the host is the compute device.

    Args:
        model: a module declaring ``_offload_blocks``, weights in host memory.
        plan: the placement (plan.plan_for_model).
        device: the compute device.
    """
    device = policy.compute_device(device)
    return BlockSwap(model, plan, build_transfer(device)).attach()


def offload_model(model: nn.Module, activation_bytes: int, *, config: OffloadConfig = OffloadConfig(),
                  device: Optional[torch.device] = None, compute_dtype: torch.dtype = torch.bfloat16,
                  passes_per_step: int = 1) -> BlockSwap:
    """Plan and place ``model`` for a run: the one call a sampler makes before its first step.

    Stores the Linear weights low-bit first when ``config.storage_dtype`` asks for it (in place), reads
    the budget from ``config.budget_bytes`` or the device's free memory, plans and attaches. On the CPU
    every block is resident and nothing moves.

    Args:
        model: a module declaring ``_offload_blocks``, weights in host memory.
        activation_bytes: activation memory of one model call (plan.estimate_activation_bytes).
        config: budget, prefetch depth, storage dtype, reserve, minimum streamed blocks.
        device: the compute device (default: policy.compute_device()).
        compute_dtype: dtype activations and upcast weights use.
        passes_per_step: model calls per sampling step (for the bus-traffic figure).
    """
    device = policy.compute_device(device)
    _check_dtypes_fit(model, config, device)
    if config.storage_dtype is not None:
        store_low_bit(model, config.storage_dtype, keep=keep_fp32_names(model))
    if not policy.is_accelerator(device):
        sizes = measure_model(model)
        everything = sum(sizes.block_bytes) + sizes.rest_bytes + activation_bytes + config.reserve_bytes
        plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, activation_bytes, max(everything, 1),
                           prefetch=config.prefetch, reserve_bytes=config.reserve_bytes,
                           passes_per_step=passes_per_step)
        log.info("computing on %s: weights stay in host memory, nothing streams", device)
        return BlockSwap(model, plan, None).attach()
    budget = config.budget_bytes if config.budget_bytes is not None else policy.free_memory_bytes(device)
    plan = plan_for_model(model, budget, activation_bytes, config=config, compute_dtype=compute_dtype,
                          passes_per_step=passes_per_step)
    return BlockSwap(model, plan, build_transfer(device)).attach()


def _rest_slots(model: nn.Module, blocks: nn.ModuleList) -> list[TensorSlot]:
    in_blocks = {id(slot.raw()) for slot in tensor_slots(blocks)}
    return [slot for slot in tensor_slots(model) if id(slot.raw()) not in in_blocks]


def _check_dtypes_fit(model: nn.Module, config: OffloadConfig, device: torch.device) -> None:
    wanted = {t.dtype for t in model.parameters()} | ({config.storage_dtype} - {None})
    unfit = sorted(str(d) for d in wanted if not policy.can_store(device, d))
    if unfit:
        raise InputError(f"weights in {', '.join(unfit)} cannot live on {device}: load a bf16 or fp16 checkpoint "
                         f"and leave the storage dtype unset on this device.")


def _check_on_host(model: nn.Module) -> None:
    host = policy.host_device()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device != host:
            raise InputError(f"{type(model).__name__}.{name} is on {tensor.device}, not in host memory: load the "
                             f"model on the CPU and let the offloader place it.")
