"""Memory budget, block placement and swapping, low-bit weight storage: the only code that moves weights.

A sampler uses it in three lines (the model declares ``_offload_blocks``; see plan.py):

    act = estimate_activation_bytes(latent_tokens(frames, height, width), dim, ffn_dim, batch)
    with offload_model(model, act, config=OffloadConfig(budget_bytes=...)) as swap:
        latent = run_with_recovery(lambda: step(latent), swap)   # per step; re-plans on OOM

policy.py      which device, how much memory, what it supports (called at run time, never at import)
plan.py        MemoryPlan: resident vs streamed blocks, predicted peak, bus traffic; VAE tile plan
blockswap.py   BlockSwap: pinned host masters, side-stream prefetch by forward hooks
lowbit.py      fp8 / scaled-fp8 Linear weights (models/layers.py CastLinear upcasts them per call)
recover.py     out-of-memory -> more streaming -> retry once -> MemoryPlanError
"""

from .blockswap import BlockSwap, offload, offload_model
from .lowbit import quantize_fp8, store_low_bit
from .plan import (
    MemoryPlan,
    OffloadConfig,
    TilePlan,
    estimate_activation_bytes,
    latent_tokens,
    plan_for_model,
    plan_memory,
    plan_vae_tiles,
)
from .recover import run_with_recovery, with_recovery

__all__ = [
    "BlockSwap",
    "MemoryPlan",
    "OffloadConfig",
    "TilePlan",
    "estimate_activation_bytes",
    "latent_tokens",
    "offload",
    "offload_model",
    "plan_for_model",
    "plan_memory",
    "plan_vae_tiles",
    "quantize_fp8",
    "run_with_recovery",
    "store_low_bit",
    "with_recovery",
]
