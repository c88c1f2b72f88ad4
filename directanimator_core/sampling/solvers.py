"""ODE solvers for rectified-flow sampling, one small function each, k-diffusion style.

Every solver has the signature ``sample_<name>(model, x, sigmas, extra_args=None, callback=None)``:

- ``model(x, sigma, **extra_args) -> denoised``: a denoiser (``denoiser.py`` builds one from a velocity
  model); ``sigma`` is a [B] tensor, ``x`` and ``denoised`` share any shape starting with B.
- ``sigmas``: the 1-D schedule from ``schedules.py``, walked from ``sigmas[0]`` to ``sigmas[-1]``.
- ``callback({"x", "i", "sigma", "denoised"})`` after every model call, as k-diffusion does.

k-diffusion's sixth argument, ``disable`` (turn off its tqdm bar), is dropped: the core draws no progress
bar; progress, previews and cancellation all go through ``callback``.

Names. A solver that carries a ComfyUI sampler name (``euler``, ``dpmpp_2m``, ``uni_pc``, ``uni_pc_bh2``)
returns what ComfyUI's KSAMPLER returns for a flow (``CONST``) model on the same sigmas (ending at 0) and
the same denoiser; tests/core/test_solvers.py holds them to ComfyUI's own functions. Those samplers read sigma
the way k-diffusion does for every model, as an EDM sigma (``x = x0 + sigma * noise``, half-log-SNR
``-log sigma``), not as a flow's (``x = (1 - sigma) x0 + sigma * noise``). The solvers written for the
flow itself carry their own names: ``unipc_wan`` (the UniPC that Wan samples with, the default) and
``dpmpp_2m_flow`` (DPM-Solver++(2M) in the flow's half-log-SNR, which is ComfyUI's ``dpmpp_2m_sde`` at
eta 0). A first-order step is the same in both readings (DDIM = Euler on the flow); only the multistep
corrections differ.

In the flow reading lambda = log(alpha / sigma) with alpha = 1 - sigma is -inf at sigma = 1, where the
multistep corrections would divide infinities; the flow solvers fall back to first order for a step
whose history starts at sigma = 1, which costs nothing in order (a bounded number of first-order steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import InputError

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict], None]


# -- how a solver reads sigma ------------------------------------------------------------------------

def _flow_lambda(sigma: float) -> float:
    if sigma >= 1.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log(1.0 - sigma) - math.log(sigma)


def _edm_lambda(sigma: float) -> float:
    return math.inf if sigma <= 0.0 else -math.log(sigma)


@dataclass(frozen=True)
class NoiseReading:
    """The signal scale alpha(sigma) and half-log-SNR lambda(sigma) a multistep solver assumes.

    Written in the coordinates of x itself: FLOW's alpha is 1 - sigma; EDM's is 1 (k-diffusion's VE
    form; ComfyUI's uni_pc converts to VP coordinates and back, which divides alpha out again).
    """

    alpha: Callable[[float], float]
    lam: Callable[[float], float]


FLOW = NoiseReading(alpha=lambda sigma: 1.0 - sigma, lam=_flow_lambda)
EDM = NoiseReading(alpha=lambda sigma: 1.0, lam=_edm_lambda)


# -- shared arithmetic --------------------------------------------------------------------------------

def _exp_neg_h(sigma: float, sigma_next: float) -> float:
    """Flow e^{-h} with h = lambda(sigma_next) - lambda(sigma), as a ratio so sigma = 1 stays finite."""
    if sigma_next <= 0.0:
        return 0.0
    return sigma_next * (1.0 - sigma) / ((1.0 - sigma_next) * sigma)


def _first_order_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """DDIM = Euler: x' = (s'/s) x + (1 - s'/s) x0, the same in the flow and the EDM reading."""
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
    """Euler on the probability-flow ODE dx/dsigma = (x - denoised) / sigma (Karras et al. 2022, Alg. 2 without
    churn): ComfyUI's ``euler``. First order; one model call per step."""
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        x = _first_order_step(x, denoised, sigma, sigma_next)
    return x


# -- DPM-Solver++(2M) ---------------------------------------------------------------------------------

def _dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict],
              callback: Optional[Callback], reading: NoiseReading) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in ``reading``'s half-log-SNR. Second order multistep, one
    model call per step; the first step, the last (to sigma = 0) and, in the flow, a step after sigma = 1
    are first order."""
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    old_denoised, h_last = None, math.inf
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        h = reading.lam(sigma_next) - reading.lam(sigma)
        blend = denoised
        if old_denoised is not None and math.isfinite(h_last) and math.isfinite(h):
            r = h_last / h
            blend = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = _first_order_step(x, blend, sigma, sigma_next)
        old_denoised, h_last = denoised, h
    return x


def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                    callback: Optional[Callback] = None) -> torch.Tensor:
    """ComfyUI's ``dpmpp_2m``: DPM-Solver++(2M) with sigma read as an EDM sigma (lambda = -log sigma)."""
    return _dpmpp_2m(model, x, sigmas, extra_args, callback, EDM)


def sample_dpmpp_2m_flow(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                         callback: Optional[Callback] = None) -> torch.Tensor:
    """DPM-Solver++(2M) in the flow's half-log-SNR log((1 - sigma) / sigma): ComfyUI's ``dpmpp_2m_sde`` at
    eta 0 (which starts at 1 - 1e-4 where this starts at sigma = 1 exactly). This pack's ``dpmpp_2m`` before
    it took ComfyUI's meaning."""
    return _dpmpp_2m(model, x, sigmas, extra_args, callback, FLOW)


# -- UniPC ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UniPCVariant:
    """One reading of sigma and one B(h) (Zhao et al. 2023: bh1 B(h) = h, bh2 B(h) = e^h - 1)."""

    reading: NoiseReading
    bh2: bool


def _unipc_coefficients(rks: list[float], h: float, bh2: bool) -> tuple[float, list[float]]:
    """B(h) and the right-hand side b of UniPC's order conditions (Zhao et al. 2023, Alg. 1).

    With hh = -h (data prediction): b_i = phi_{i+1}(hh) * i! / B(h), B(h) = expm1(hh) (bh2) or hh (bh1).
    """
    hh = -h
    b_h = math.expm1(hh) if bh2 else hh
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


def _unipc_update(x: torch.Tensor, history: list[tuple[float, torch.Tensor]], sigma_next: float, order: int,
                  variant: UniPCVariant, new_denoised: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One UniP predictor step (``new_denoised`` None) or UniC corrector step from history[-1] to sigma_next.

    ``history`` holds (sigma, denoised) pairs, newest last; ``order`` counts the history points used.
    """
    lam = variant.reading.lam
    sigma, m0 = history[-1]
    x_next = _first_order_step(x, m0, sigma, sigma_next)
    if order == 1 and new_denoised is None:
        return x_next
    h = lam(sigma_next) - lam(sigma)
    if math.isfinite(h):
        past = history[-order:-1][::-1]  # newest first: m_1, m_2, ...
        rks = [(lam(s_k) - lam(sigma)) / h for s_k, _ in past] + [1.0]
        diffs = [(m_k - m0) / rk for (_, m_k), rk in zip(past, rks)]
        b_h, b = _unipc_coefficients(rks, h, variant.bh2)
    else:  # a flow step from sigma = 1: only the first-order corrector is defined (B(h) -> -1)
        rks, diffs, b_h, b = [1.0], [], _exp_neg_h(sigma, sigma_next) - 1.0, []
    if new_denoised is not None:
        diffs = diffs + [new_denoised - m0]
    weights = _unipc_weights(rks, b, predictor=new_denoised is None)
    correction = sum(w * d for w, d in zip(weights, diffs))
    return x_next - variant.reading.alpha(sigma_next) * b_h * correction


def _usable_order(history: list[tuple[float, torch.Tensor]], order: int, reading: NoiseReading) -> int:
    """Points of the history that a multistep update can use: none where lambda is infinite (flow sigma 1)."""
    usable = 1
    for sigma, _ in reversed(history[:-1]):
        if usable >= order or not math.isfinite(reading.lam(sigma)):
            break
        usable += 1
    return usable


def _unipc(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict],
           callback: Optional[Callback], order: int, variant: UniPCVariant) -> torch.Tensor:
    """UniPC multistep: each step predicts with UniP of ``order`` (lower while the history fills and on the
    last step, ``lower_order_final``), and once the model has been called at the predicted point, corrects
    that point with UniC using the new output; the last step has no corrector. One model call per step."""
    extra_args = extra_args or {}
    steps = [float(s) for s in sigmas]
    history: list[tuple[float, torch.Tensor]] = []
    x_before, last_order = x, 1
    for i, (sigma, sigma_next) in enumerate(zip(steps[:-1], steps[1:])):
        denoised = model(x, _sigma_batch(x, sigma), **extra_args)
        _report(callback, x, i, sigma, denoised)
        if history:
            x = _unipc_update(x_before, history, sigma, last_order, variant, new_denoised=denoised)
        history = (history + [(sigma, denoised)])[-order:]
        last_order = min(_usable_order(history, order, variant.reading), len(steps) - 1 - i)
        x_before = x
        x = _unipc_update(x, history, sigma_next, last_order, variant)
    return x


def sample_unipc_wan(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                     callback: Optional[Callback] = None, order: int = 2) -> torch.Tensor:
    """UniPC bh2 in the flow's half-log-SNR (Zhao et al. 2023), the solver Wan samples with.

    The last step has no corrector and is first order, so a whole run converges at order 2 for any
    ``order`` (measured in tests/core/test_solvers.py), as Wan's own scheduler does. Not ComfyUI's
    ``uni_pc`` / ``uni_pc_bh2``, which read sigma as an EDM sigma (see the module docstring).

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
    return _unipc(model, x, sigmas, extra_args, callback, order, UniPCVariant(FLOW, bh2=True))


COMFY_UNIPC_END = 0.001  # ComfyUI's uni_pc walks to this sigma where the schedule ends at 0


def _comfy_uni_pc(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict],
                  callback: Optional[Callback], bh2: bool) -> torch.Tensor:
    """ComfyUI's uni_pc (comfy/extra_samplers/uni_pc.py ``sample_unipc``) as its KSAMPLER returns it for a
    flow model: EDM reading, order min(3, steps - 1), a final sigma of 0 walked as 0.001, and the result
    divided by 1 - 0.001 (the flow's inverse noise scaling at that sigma, which ComfyUI applies because its
    uni_pc writes 0.001 into the schedule it was given). One step (order 0) calls the model once and only
    rescales x, as ComfyUI's does."""
    steps = [float(s) for s in sigmas]
    ends_at_zero = steps[-1] == 0.0
    if ends_at_zero:
        steps[-1] = COMFY_UNIPC_END
    order = min(3, len(steps) - 2)
    if order < 1:
        extra_args = extra_args or {}
        denoised = model(x, _sigma_batch(x, steps[0]), **extra_args)
        _report(callback, x, 0, steps[0], denoised)
        x = x * math.sqrt(1.0 + steps[-1] ** 2) / math.sqrt(1.0 + steps[0] ** 2)  # VP x kept, read back at the end
    else:
        x = _unipc(model, x, torch.tensor(steps, dtype=torch.float64), extra_args, callback, order,
                   UniPCVariant(EDM, bh2=bh2))
    return x / (1.0 - COMFY_UNIPC_END) if ends_at_zero else x


def sample_uni_pc(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                  callback: Optional[Callback] = None) -> torch.Tensor:
    """ComfyUI's ``uni_pc`` (UniPC bh1, EDM reading of sigma): see ``_comfy_uni_pc``."""
    return _comfy_uni_pc(model, x, sigmas, extra_args, callback, bh2=False)


def sample_uni_pc_bh2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                      callback: Optional[Callback] = None) -> torch.Tensor:
    """ComfyUI's ``uni_pc_bh2`` (UniPC bh2, EDM reading of sigma): see ``_comfy_uni_pc``."""
    return _comfy_uni_pc(model, x, sigmas, extra_args, callback, bh2=True)


SOLVERS: dict[str, Callable[..., torch.Tensor]] = {
    "unipc_wan": sample_unipc_wan,
    "dpmpp_2m_flow": sample_dpmpp_2m_flow,
    "euler": sample_euler,
    "dpmpp_2m": sample_dpmpp_2m,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}

# Names this pack used before its ComfyUI-named solvers gave ComfyUI's numbers; a saved workflow that holds
# one still runs, with the same result as before (``resolve_solver``).
RENAMED_SOLVERS: dict[str, str] = {"unipc": "unipc_wan"}

# ComfyUI's KSampler runs these on the sigmas of steps + 1, less the penultimate (samplers.KSampler).
DISCARD_PENULTIMATE_SIGMA = frozenset({"uni_pc", "uni_pc_bh2"})


def resolve_solver(name: str) -> str:
    """The solver's current name: ``name`` itself, or what an old name was renamed to."""
    return RENAMED_SOLVERS.get(name, name)
