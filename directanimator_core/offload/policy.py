"""The only module that asks devices about themselves: which device, how much memory, what it supports.

Everything here is a function called at run time; nothing runs at import, so importing the core never
initialises CUDA (ComfyUI-WanVideoWrapper's top-level ``get_torch_device()`` is what we avoid). Each
CUDA- or MPS-only call sits behind a check of the device type, so the same code runs on a CPU-only
machine and on Apple silicon.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

DeviceLike = Union[str, torch.device]


def compute_device(preferred: Optional[DeviceLike] = None) -> torch.device:
    """The device the model computes on: ``preferred`` if given, else CUDA, else MPS, else the CPU."""
    if preferred is not None:
        return _checked_device(torch.device(preferred))
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def host_device() -> torch.device:
    """Where weights live when they are not on the compute device (the pinned or pageable master copy)."""
    return torch.device("cpu")


def is_accelerator(device: torch.device) -> bool:
    """True when ``device`` has its own memory, so weights must cross a bus to reach it."""
    return device.type not in ("cpu", "meta")


def has_copy_streams(device: torch.device) -> bool:
    """Side streams and events (copy behind compute) exist on CUDA only; MPS and CPU copy in line."""
    return device.type == "cuda"


def can_pin_memory(device: torch.device) -> bool:
    """Page-locked host memory speeds host->device copies and makes them asynchronous; it needs CUDA."""
    return device.type == "cuda" and torch.cuda.is_available()


def free_memory_bytes(device: torch.device) -> int:
    """Bytes the caller may still allocate on ``device`` as torch sees it now.

    On CUDA this is the driver's free memory plus what torch's caching allocator holds but does not
    use (it hands that back before asking the driver). On MPS it is the recommended working-set size
    minus what torch allocated. On the CPU it is the available physical memory.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached_unused)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    if device.type == "cpu":
        return host_available_bytes()
    raise InputError(f"device {device} has no memory to query: use 'cuda', 'mps' or 'cpu'.")


def empty_cache(device: torch.device) -> None:
    """Give cached, unused blocks back to the driver (after an out-of-memory error, before a retry)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def synchronize(device: torch.device) -> None:
    """Wait for every queued kernel on ``device`` (used by benchmarks and before freeing shared buffers)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure on the compute device.

    CUDA raises ``torch.OutOfMemoryError``. MPS raises a plain ``RuntimeError`` whose text starts
    "MPS backend out of memory"; matching that text is the only way torch offers to recognise it.
    """
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)


def fp8_dtypes() -> tuple[torch.dtype, ...]:
    """The 8-bit float storage formats this torch build has (e4m3fn for weights, e5m2 for range)."""
    names = ("float8_e4m3fn", "float8_e5m2")
    return tuple(getattr(torch, name) for name in names if hasattr(torch, name))


def matmul_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype a model whose chosen compute dtype is ``dtype`` computes in on ``device``.

    A CPU computes 16-bit models in fp32: without native bf16 (AVX2 parts, as on this project's machines)
    a bf16 matmul is ~6x slower than fp32 one, and the result is less accurate. ComfyUI does the same
    (model_management.should_use_bf16 is False on a CPU). The weights keep their stored dtype (half the
    memory of fp32) and are upcast per layer (models/layers.py). Accelerators compute in ``dtype``.
    """
    if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        return torch.float32
    return dtype


def can_store(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether tensors of ``dtype`` can live on ``device`` (MPS has no 8-bit float types)."""
    return not (device.type == "mps" and dtype in fp8_dtypes())


def dtype_bytes(dtype: torch.dtype) -> int:
    """Bytes one element of ``dtype`` takes in memory."""
    return torch.empty((), dtype=dtype, device="meta").element_size()


def _checked_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} was asked for but this torch sees no CUDA GPU: use 'cpu' or install a CUDA build.")
    if device.type == "mps" and not _mps_available():
        raise InputError(f"device {device} was asked for but MPS is not available here: use 'cpu'.")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def host_available_bytes() -> int:
    """Host memory a new allocation can get now: MemAvailable on Linux (free pages plus the page cache
    the kernel hands back), else the free physical pages, else an assumed 16 GiB (said in the log)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    log.warning("cannot read available host memory on this platform; the CPU plan assumes 16 GiB")
    return 16 * 2**30
