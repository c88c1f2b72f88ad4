"""ODE solvers for rectified-flow sampling, one small function each, k-diffusion style.

Every solver has the signature ``sample_<name>(model, x, sigmas, extra_args=None, callback=None)``:

- ``model(x, sigma, **extra_args) -> denoised``: a denoiser (``denoiser.py`` builds one from a velocity
  model); ``sigma`` is a [B] tensor, ``x`` and ``denoised`` share any shape starting with B.
- ``sigmas``: the 1-D schedule from ``schedules.py``, walked from ``sigmas[0]`` to ``sigmas[-1]``.
- ``callback({"x", "i", "sigma", "denoised"})`` after every model call, as k-diffusion does.

k-diffusion's sixth argument, ``disable`` (turn off its tqdm bar), is dropped: the core draws no progress
bar; progress, previews and cancellation all go through ``callback``.

All three are written in the data-prediction form of the flow ``x_sigma = alpha * x0 + sigma * noise``
with ``alpha = 1 - sigma`` and half-log-SNR ``lambda = log(alpha / sigma)``. A first-order step in that
form is exactly Euler on the velocity field, and it is finite at sigma = 1 (lambda = -inf), where the
multistep corrections of the higher-order solvers would divide infinities; they fall back to first order
for a step whose history starts at sigma = 1, which costs nothing in order (a bounded number of
first-order steps).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ..errors import InputError

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict], None]


# -- flow arithmetic ---------------------------------------------------------------------------------

def _alpha(sigma: float) -> float:
    return 1.0 - sigma


def _lambda(sigma: float) -> float:
    """Half-log-SNR log(alpha / sigma): -inf at pure noise, +inf at the data."""
    if sigma >= 1.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log(_alpha(sigma)) - math.log(sigma)


def _exp_neg_h(sigma: float, sigma_next: float) -> float:
    """e^{-h} with h = lambda(sigma_next) - lambda(sigma), written as a ratio so sigma = 1 stays finite."""
    if sigma_next <= 0.0:
        return 0.0
    return sigma_next * _alpha(sigma) / (_alpha(sigma_next) * sigma)


def _first_order_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """DDIM = Euler on the flow: x' = (s'/s) x + (1 - s'/s) x0  (= s'/s x - alpha' expm1(-h) x0)."""
    ratio = sigma_next / sigma
    return ratio * x + (1.0 - ratio) * denoised


def _report(callback: Optional[Callback], x: torch.Tensor, i: int, sigma: float, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})


def _sigma_batch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # at least fp32: a bf16 state would round the timestep the model sees (Wan's t = sigma * 1000)
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.full((x.shape[0],), sigma, dtype=dtype, device=x.device)  # (B,)


# -- Euler -------------------------------------------------------------------------------------------

def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 callback: Optional[Callback] = None) -> torch.Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - denoised) / sigma (Karras et al. 2022, Alg. 2 without churn).

    First order; one model call per step.
    """
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        x = _first_order_step(x, denoised, sigma, sigma_next)
    return x


# -- DPM-Solver++(2M) ---------------------------------------------------------------------------------

def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                    callback: Optional[Callback] = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in the flow's alpha/sigma form.

    Second order multistep; one model call per step. The first step, a step after sigma = 1, and the
    last step (to sigma = 0) are first order.
    """
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    old_denoised, h_last = None, math.inf
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        h = _lambda(sigma_next) - _lambda(sigma)
        blend = denoised
        if old_denoised is not None and math.isfinite(h_last) and math.isfinite(h):
            r = h_last / h
            blend = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = _first_order_step(x, blend, sigma, sigma_next)
        old_denoised, h_last = denoised, h
    return x


# -- UniPC (bh2) ---------------------------------------------------------------------------------------

def _unipc_coefficients(rks: list[float], h: float) -> tuple[float, list[float]]:
    """B(h) and the right-hand side b of UniPC's order conditions (Zhao et al. 2023, Alg. 1, variant bh2).

    With hh = -h (data prediction): phi_1 = expm1(hh); b_i = phi_{i+1} * i! / B(h); B(h) = expm1(hh).
    """
    hh = -h
    b_h = math.expm1(hh)
    phi_k = math.expm1(hh) / hh - 1
    factorial, b = 1, []
    for i in range(1, len(rks) + 1):
        b.append(phi_k * factorial / b_h)
        factorial *= i + 1
        phi_k = phi_k / hh - 1 / factorial
    return b_h, b


def _unipc_weights(rks: list[float], b: list[float], predictor: bool) -> list[float]:
    """Solve R rho = b with R[i][k] = rks[k]**i; order 1-2 weights are fixed at 1/2 as in UniPC."""
    size = len(rks) - 1 if predictor else len(rks)
    if size == 0:
        return []
    if size == 1 and (predictor or len(rks) == 1):
        return [0.5]
    matrix = torch.tensor([[rk ** i for rk in rks[:size]] for i in range(size)], dtype=torch.float64)
    return torch.linalg.solve(matrix, torch.tensor(b[:size], dtype=torch.float64)).tolist()


def _unipc_update(x: torch.Tensor, history: list[tuple[float, torch.Tensor]], sigma_next: float,
                  order: int, new_denoised: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One UniP predictor step (``new_denoised`` None) or UniC corrector step from history[-1] to sigma_next.

    ``history`` holds (sigma, denoised) pairs, newest last; ``order`` counts the history points used.
    """
    sigma, m0 = history[-1]
    x_next = _first_order_step(x, m0, sigma, sigma_next)
    if order == 1 and new_denoised is None:
        return x_next
    h = _lambda(sigma_next) - _lambda(sigma)
    if math.isfinite(h):
        past = history[-order:-1][::-1]  # newest first: m_1, m_2, ...
        rks = [(_lambda(s_k) - _lambda(sigma)) / h for s_k, _ in past] + [1.0]
        diffs = [(m_k - m0) / rk for (_, m_k), rk in zip(past, rks)]
        b_h, b = _unipc_coefficients(rks, h)
    else:  # a step from sigma = 1: only the first-order corrector is defined (B(h) -> -1)
        rks, diffs, b_h, b = [1.0], [], _exp_neg_h(sigma, sigma_next) - 1.0, []
    if new_denoised is not None:
        diffs = diffs + [new_denoised - m0]
    weights = _unipc_weights(rks, b, predictor=new_denoised is None)
    correction = sum(w * d for w, d in zip(weights, diffs))
    return x_next - _alpha(sigma_next) * b_h * correction


def _usable_order(history: list[tuple[float, torch.Tensor]], order: int) -> int:
    """Points of the history that a multistep update can use: none from sigma = 1 (lambda = -inf)."""
    usable = 1
    for sigma, _ in reversed(history[:-1]):
        if usable >= order or sigma >= 1.0:
            break
        usable += 1
    return usable


def sample_unipc(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 callback: Optional[Callback] = None, order: int = 2) -> torch.Tensor:
    """UniPC multistep with the bh2 variant (Zhao et al. 2023), the solver Wan samples with.

    Each step predicts with UniP of ``order`` (lower while the history fills and on the last step, as
    Wan's ``lower_order_final``), and, once the model has been called at the predicted point, corrects
    that point with UniC using the new output: order + 1 accuracy per step for one model call. The last
    step has no corrector and is first order, so a whole run converges at order 2 for any ``order``
    (measured in tests/core/test_solvers.py), as Wan's own scheduler does.

    Args:
        model: denoiser ``model(x, sigma[B], **extra_args) -> denoised``.
        x: the start point at ``sigmas[0]``.
        sigmas: the schedule, ending at 0.
        extra_args: keyword arguments for every model call.
        callback: called after every model call with ``{"x", "i", "sigma", "denoised"}``.
        order: the predictor's order, 1 to 3 (Wan uses 2).
    """
    if order not in (1, 2, 3):
        raise InputError(f"UniPC order={order} is not supported: use 1, 2 (Wan's choice) or 3")
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    history: list[tuple[float, torch.Tensor]] = []
    x_before, last_order = x, 1
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        if history:
            x = _unipc_update(x_before, history, sigma, last_order, new_denoised=denoised)
        history = (history + [(sigma, denoised)])[-order:]
        last_order = min(_usable_order(history, order), len(steps) - 1 - i)
        x_before = x
        x = _unipc_update(x, history, sigma_next, last_order)
    return x


SOLVERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "dpmpp_2m": sample_dpmpp_2m,
    "unipc": sample_unipc,
}
