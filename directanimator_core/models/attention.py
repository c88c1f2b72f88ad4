"""Attention for the backbone: torch SDPA everywhere, an optional faster kernel when present.

The kernel is chosen once per process, on first use, and logged: ``flash_attn`` when it imports and
the tensors are CUDA fp16/bf16 (what it supports), else ``torch.nn.functional.scaled_dot_product_attention``,
which runs on every device (no CUDA asserts, unlike Wan's ``flash_attention``).

``set_attention_backend`` lets the user pin the choice ("sdpa" never uses flash_attn; "flash_attn"
fails up front when it is not installed). The setting is per process: every model in it follows it.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..errors import InputError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "sdpa", "flash_attn")

_FLASH: Optional[Callable] = None
_CHOSEN = False
_BACKEND = "auto"


def set_attention_backend(name: str) -> None:
    """Pin the attention kernel for this process: "auto" (flash_attn where it applies), "sdpa" or "flash_attn"."""
    global _BACKEND
    if name not in BACKENDS:
        raise InputError(f"attention backend {name!r} is unknown: use one of {', '.join(BACKENDS)}")
    if name == "flash_attn" and importlib.util.find_spec("flash_attn") is None:
        raise InputError("attention backend 'flash_attn' is not installed: pick 'sdpa' or pip install flash-attn")
    if name != _BACKEND:
        log.info("attention backend set to %s", name)
    _BACKEND = name


def uses_flash(is_cuda: bool, dtype: torch.dtype) -> bool:
    """Whether a call with tensors on CUDA (or not) of this dtype goes to flash_attn."""
    if _BACKEND == "sdpa" or not (is_cuda and dtype in (torch.float16, torch.bfloat16)):
        return False
    return _flash_kernel() is not None


def _flash_kernel() -> Optional[Callable]:
    global _FLASH, _CHOSEN
    if not _CHOSEN:
        _CHOSEN = True
        if importlib.util.find_spec("flash_attn") is not None:
            from flash_attn import flash_attn_func  # optional accelerator, imported only when installed
            _FLASH = flash_attn_func
            log.info("attention: flash_attn for CUDA fp16/bf16 tensors, torch SDPA otherwise")
        else:
            log.info("attention: torch scaled_dot_product_attention (flash_attn not installed)")
    return _FLASH


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over heads.

    Args:
        q: (B, Lq, heads, d).
        k: (B, Lk, heads, d).
        v: (B, Lk, heads, d).

    Returns:
        (B, Lq, heads · d), dtype of q.
    """
    if uses_flash(q.is_cuda, q.dtype):
        return _flash_kernel()(q, k, v).flatten(2)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, heads, Lq, d)
    return out.transpose(1, 2).flatten(2)
