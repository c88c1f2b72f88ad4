"""Attention for the backbone: torch SDPA everywhere, an optional faster kernel when present.

The kernel is chosen once per process, on first use, and logged: ``flash_attn`` when it imports and
the tensors are CUDA fp16/bf16 (what it supports), else ``torch.nn.functional.scaled_dot_product_attention``,
which runs on every device (no CUDA asserts, unlike Wan's ``flash_attention``).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

_FLASH: Optional[Callable] = None
_CHOSEN = False


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
    flash = _flash_kernel()
    if flash is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        return flash(q, k, v).flatten(2)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, heads, Lq, d)
    return out.transpose(1, 2).flatten(2)
