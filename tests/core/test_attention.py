"""The attention kernel the user picks is the one used; a kernel that is not installed is refused."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from directanimator_core.errors import InputError
from directanimator_core.models import attention as attn


@pytest.fixture(autouse=True)
def restore_backend():
    yield
    attn.set_attention_backend("auto")


def test_sdpa_is_never_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attn, "_flash_kernel", lambda: (lambda q, k, v: q))  # as if flash_attn were installed
    attn.set_attention_backend("auto")
    assert attn.uses_flash(True, torch.bfloat16)
    assert not attn.uses_flash(True, torch.float32)  # flash_attn has no fp32 kernel
    attn.set_attention_backend("sdpa")
    assert not attn.uses_flash(True, torch.bfloat16)


def test_attention_equals_sdpa_on_cpu(generator: torch.Generator) -> None:
    q, k, v = (torch.randn(2, 7, 3, 8, generator=generator) for _ in range(3))  # (B, L, heads, d)
    expected = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert torch.equal(attn.attention(q, k, v), expected.transpose(1, 2).flatten(2))


def test_unknown_or_missing_backend_is_refused() -> None:
    with pytest.raises(InputError, match="unknown: use one of auto, sdpa, flash_attn"):
        attn.set_attention_backend("xformers")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(InputError, match="'flash_attn' is not installed"):
            attn.set_attention_backend("flash_attn")
