"""Out-of-memory recovery: re-plan with more streaming and retry the step once, then MemoryPlanError.

The plan's activation figure is an estimate (plan.estimate_activation_bytes) and other programs may
take memory after the plan was made, so a step can still run out of memory. Failing a long run at
step 17 of 30 is what users complain about most; instead the sampler wraps each step:

    latent = run_with_recovery(lambda: solver_step(latent), swap)

The step must be re-runnable: it may not change any state the retry reads before it returns. A model
call is (its output depends only on its inputs), so the simplest use wraps the model the solver sees:

    velocity = with_recovery(model, swap)     # then velocity(x, t, context, ...) as model(...)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Optional, TypeVar

import torch

from ..errors import MemoryPlanError
from . import policy
from .blockswap import BlockSwap
from .plan import GiB, MemoryPlan, spread_indices

log = logging.getLogger(__name__)

T = TypeVar("T")


def more_streaming(plan: MemoryPlan) -> MemoryPlan:
    """The plan to try after an out-of-memory error: less on the device than ``plan``.

    Streams a quarter more of the blocks (at least one more); once every block streams, prefetches
    one block fewer; raises MemoryPlanError when there is nothing left to give back.

    Args:
        plan: the plan that ran out of memory.
    """
    total = len(plan.block_bytes)
    if len(plan.streamed) < total:
        count = min(total, len(plan.streamed) + max(1, total // 4))
        return replace(plan, streamed=spread_indices(total, count))
    if plan.prefetch > 0:
        return replace(plan, prefetch=plan.prefetch - 1)
    raise MemoryPlanError(
        f"out of memory with all {total} blocks streamed and no prefetch (predicted peak "
        f"{plan.predicted_peak_bytes / GiB:.2f} GiB, activations {plan.activation_bytes / GiB:.2f} GiB): "
        f"lower the resolution or frame count, run CFG as separate passes, store weights in fp8, "
        f"or free GPU memory.")


def run_with_recovery(step: Callable[[], T], swap: BlockSwap, device: Optional[torch.device] = None) -> T:
    """``step()``; on an out-of-memory error, carry out more_streaming(swap.plan) and retry once.

    Args:
        step: one re-runnable unit of work (a model call or a solver step).
        swap: the BlockSwap that places the model; it is re-planned in place.
        device: the compute device whose cache is emptied before the retry (default: the swap's).

    Raises:
        MemoryPlanError: when the retry runs out of memory too, or no smaller plan exists.
    """
    try:
        return step()
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not policy.is_out_of_memory(error):
            raise
        smaller = _smaller_plan(swap.plan, error)
        # Leave the except block before retrying: the traceback pins the failed step's activations.
    log.warning("out of memory during a step; retrying once with %s", smaller.describe())
    swap.replan(smaller)
    _empty_cache(swap, device)
    try:
        return step()
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not policy.is_out_of_memory(error):
            raise
        raise MemoryPlanError(
            f"out of memory again after re-planning to {len(smaller.streamed)} streamed blocks (predicted "
            f"peak {smaller.predicted_peak_bytes / GiB:.2f} of {smaller.budget_bytes / GiB:.2f} GiB): lower the "
            f"memory budget so the plan streams more, lower the resolution or frame count, or free GPU memory."
        ) from error


def with_recovery(model: Callable[..., T], swap: BlockSwap) -> Callable[..., T]:
    """``model`` with every call run through run_with_recovery (a model call is re-runnable).

    Args:
        model: the callable the solver evaluates (the offloaded module, or a denoiser around it).
        swap: the BlockSwap that places the module.
    """
    def call(*args: Any, **kwargs: Any) -> T:
        return run_with_recovery(lambda: model(*args, **kwargs), swap)
    return call


def _smaller_plan(plan: MemoryPlan, error: BaseException) -> MemoryPlan:
    try:
        return more_streaming(plan)
    except MemoryPlanError as no_plan:
        raise no_plan from error


def _empty_cache(swap: BlockSwap, device: Optional[torch.device]) -> None:
    target = device if device is not None else getattr(swap.transfer, "device", None)
    if target is not None:
        policy.empty_cache(torch.device(target))
