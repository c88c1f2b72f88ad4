"""Solvers on a flow with an exact solution, and the sampling loop around them.

The exact problem: data x0 ~ N(mu, s^2) per coordinate, noise N(0, 1), x_sigma = (1 - sigma) x0 + sigma n.
Its marginal variance is v(sigma) = (1 - sigma)^2 s^2 + sigma^2, the ideal denoiser is
E[x0 | x] = mu + (1 - sigma) s^2 / v(sigma) * (x - (1 - sigma) mu), and the probability-flow ODE carries
x(1) to x(sigma) = (1 - sigma) mu + sqrt(v(sigma)) * x(1) exactly (the flow of a Gaussian is affine).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.comfyui import comfyui_dir
from safetensors.torch import load_file, save_file

from directanimator_core.errors import InputError, Interrupted
from directanimator_core.sampling import (
    SOLVERS, GuidanceConds, SamplerConfig, StepInfo, sample, sampling_sigmas, sigmas_shifted)
from directanimator_core.sampling.denoiser import denoised_from_velocity

MU, S = 2.0, 0.5


def variance(sigma):
    return (1 - sigma) ** 2 * S * S + sigma ** 2


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)
    return MU + (1 - sigma) * S * S / variance(sigma) * (x - (1 - sigma) * MU)


def exact_flow(x_start: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
    z = (x_start - (1 - sigma_start) * MU) / math.sqrt(variance(sigma_start))
    return (1 - sigma_end) * MU + math.sqrt(variance(sigma_end)) * z


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
    sigma_b = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)
    return (x - gaussian_denoiser(x, sigma)) / sigma_b  # v = (x - x0) / sigma


X1 = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).reshape(1, 9)


def observed_order(solver, sigmas_for, steps: tuple[int, int], start: float, end: float) -> float:
    errors = []
    for n in steps:
        x_start = exact_flow(X1, 1.0, start)
        out = solver(gaussian_denoiser, x_start.clone(), sigmas_for(n))
        errors.append((out - exact_flow(X1, 1.0, end)).abs().max().item())
    return math.log(errors[0] / errors[1]) / math.log(steps[1] / steps[0])


def test_every_solver_shares_the_signature() -> None:
    common = ["model", "x", "sigmas", "extra_args", "callback"]
    for name, solver in SOLVERS.items():
        params = list(inspect.signature(solver).parameters)
        assert params[:5] == common, name
        assert all(inspect.signature(solver).parameters[p].default is not inspect.Parameter.empty
                   for p in params[3:]), name


def test_exact_flow_is_the_ode_solution() -> None:
    # guards the reference itself: d/dsigma of the exact path equals the velocity field on it
    sigma, eps = 0.4, 1e-6
    x = exact_flow(X1, 1.0, sigma)
    slope = (exact_flow(X1, 1.0, sigma + eps) - exact_flow(X1, 1.0, sigma - eps)) / (2 * eps)
    torch.testing.assert_close(slope, gaussian_velocity(x, torch.tensor([sigma]), None), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("name", "low", "high"), [("euler", 0.9, 1.1), ("dpmpp_2m_flow", 1.8, 2.6),
                                                   ("unipc_wan", 1.8, 2.6), ("dpmpp_2m", 1.8, 2.6),
                                                   ("uni_pc", 1.8, 2.6), ("uni_pc_bh2", 1.8, 2.6)])
def test_order_of_convergence_between_noise_levels(name: str, low: float, high: float) -> None:
    """Away from the singular ends (lambda = -inf at sigma 1, +inf at 0) each solver shows its order."""
    order = observed_order(SOLVERS[name], lambda n: torch.linspace(0.9, 0.1, n + 1, dtype=torch.float64),
                           (32, 128), 0.9, 0.1)
    assert low < order < high


@pytest.mark.parametrize(("name", "low", "high"), [("euler", 0.9, 1.1), ("dpmpp_2m_flow", 1.5, 2.6),
                                                   ("unipc_wan", 1.7, 2.6), ("dpmpp_2m", 1.5, 2.6)])
def test_order_of_convergence_on_the_wan_schedule(name: str, low: float, high: float) -> None:
    """From pure noise to data on the shifted schedule; the ends cost the multistep solvers a little order.
    (ComfyUI's uni_pc stops at sigma 0.001, so it does not converge to the data: tests/core/test_sampling_comfyui.py
    holds it to ComfyUI's instead.)"""
    order = observed_order(SOLVERS[name], lambda n: sigmas_shifted(n, 3.0), (128, 512), 1.0, 0.0)
    assert low < order < high


def test_higher_order_beats_euler_at_equal_cost() -> None:
    sigmas = sigmas_shifted(16, 1.0)
    target = exact_flow(X1, 1.0, 0.0)
    errors = {name: (solver(gaussian_denoiser, X1.clone(), sigmas) - target).abs().max().item()
              for name, solver in SOLVERS.items()}
    assert errors["unipc_wan"] < errors["euler"] / 5 and errors["dpmpp_2m_flow"] < errors["euler"] / 5
    assert max(errors["dpmpp_2m"], errors["uni_pc"], errors["uni_pc_bh2"]) < errors["euler"] / 2


COMFY_SOLVERS = r"""
import sys
comfy_dir, inputs, outputs = sys.argv[1:4]
sys.path.insert(0, comfy_dir)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
from types import SimpleNamespace
import torch
from safetensors.torch import load_file, save_file
import comfy.model_sampling
from comfy.k_diffusion.sampling import sample_dpmpp_2m_sde, sample_euler

MU, S = 2.0, 0.5
def denoiser(x, sigma):
    sigma = sigma.reshape(-1, 1).to(x)
    return MU + (1 - sigma) * S * S / ((1 - sigma) ** 2 * S * S + sigma ** 2) * (x - (1 - sigma) * MU)

class FlowModel:  # the attribute path ComfyUI's samplers read their model_sampling through
    inner_model = SimpleNamespace(model_patcher=SimpleNamespace(get_model_object=lambda name: comfy.model_sampling.CONST()))
    def __call__(self, x, sigma, **extra):
        return denoiser(x, sigma)

data = load_file(inputs)
x, sigmas = data["x"], data["sigmas"]
zero = lambda *args: torch.zeros_like(x)
save_file({"euler": sample_euler(FlowModel(), x.clone(), sigmas),
           "dpmpp_2m_flow": sample_dpmpp_2m_sde(FlowModel(), x.clone(), sigmas, eta=0.0, noise_sampler=zero,
                                           solver_type="midpoint")}, outputs)
"""


def test_euler_and_dpmpp_2m_flow_equal_comfyuis_on_a_flow_model(tmp_path: Path) -> None:
    """ComfyUI's Euler, and its DPM++(2M) SDE with eta = 0 (which is DPM++(2M) in the flow's half-log-SNR
    for a CONST model) against our dpmpp_2m_flow, on the same denoiser and schedule. The schedule starts below 1 because ComfyUI
    moves a first sigma of 1 to 1 - 1e-4 for these solvers, where ours steps from 1 exactly."""
    sigmas = sigmas_shifted(12, 3.0, start=0.95)
    inputs, outputs = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file({"x": exact_flow(X1, 1.0, float(sigmas[0])).contiguous(), "sigmas": sigmas}, str(inputs))
    result = subprocess.run([sys.executable, "-c", COMFY_SOLVERS, str(comfyui_dir()), str(inputs), str(outputs)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = load_file(str(outputs))
    x_start = exact_flow(X1, 1.0, float(sigmas[0]))
    for name in ("euler", "dpmpp_2m_flow"):
        ours = SOLVERS[name](gaussian_denoiser, x_start.clone(), sigmas)
        torch.testing.assert_close(ours, theirs[name], atol=1e-12, rtol=1e-12)


class FlowNoiseSchedule:
    """x_t = (1 - t) x0 + t noise, in the noise-schedule interface of the UniPC authors' code."""

    def marginal_log_mean_coeff(self, t):
        return torch.log(1 - t)

    def marginal_alpha(self, t):
        return 1 - t

    def marginal_std(self, t):
        return t

    def marginal_lambda(self, t):
        return torch.log(1 - t) - torch.log(t)


def noise_prediction(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1).expand(x.shape[0])
    sigma = t.reshape(-1, *([1] * (x.ndim - 1))).to(x)
    return (x - (1 - sigma) * gaussian_denoiser(x, t)) / sigma  # eps, from which UniPC recovers x0


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("to_zero", [True, False])
def test_unipc_wan_equals_the_unipc_authors_implementation(order: int, to_zero: bool) -> None:
    """ComfyUI's copy of the UniPC authors' code (comfy/extra_samplers/uni_pc.py, torch-only, imported by
    path), run with a flow noise schedule: same predictor, corrector, warm-up and lower_order_final.
    The schedule starts below 1, where that code's x0 = (x - sigma eps) / alpha is defined."""
    spec = importlib.util.spec_from_file_location("comfy_uni_pc", comfyui_dir() / "comfy/extra_samplers/uni_pc.py")
    uni_pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(uni_pc)
    sigmas = sigmas_shifted(10, 3.0, start=0.95)
    sigmas = sigmas if to_zero else sigmas[:-1]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # that code builds its coefficient tensors in the default dtype
    try:
        reference = uni_pc.UniPC(noise_prediction, FlowNoiseSchedule(), predict_x0=True, variant="bh2").sample(
            X1.clone(), timesteps=sigmas, method="multistep", order=order, lower_order_final=True, disable_pbar=True)
    finally:
        torch.set_default_dtype(default)
    ours = SOLVERS["unipc_wan"](gaussian_denoiser, X1.clone(), sigmas, order=order)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=1e-12)


# -- the loop ------------------------------------------------------------------------------------------

class CountingVelocity:
    """The Gaussian flow's velocity, counting calls per conditioning variant."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: str) -> torch.Tensor:
        self.calls.append(cond)
        shift = {"full": 0.0, "no_text": 0.3, "no_cues": -0.2}[cond]
        return gaussian_velocity(x, sigma, None) + shift


CONDS = GuidanceConds(full="full", no_text="no_text", no_cues="no_cues")
SHAPE = (1, 2, 3, 4, 4)


def run(config: SamplerConfig, **kwargs) -> torch.Tensor:
    return sample(CountingVelocity(), CONDS, config, **({"shape": SHAPE} | kwargs))


def test_same_seed_same_output_other_seed_other_output() -> None:
    config = SamplerConfig(steps=4, cfg_text=1.0, seed=7)
    a, b = run(config), run(config)
    c = run(SamplerConfig(steps=4, cfg_text=1.0, seed=8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sampling_follows_the_exact_flow() -> None:
    config = SamplerConfig(steps=40, cfg_text=1.0, solver="unipc_wan", shift=3.0, seed=3)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(run(config), exact_flow(noise, 1.0, 0.0).float(), atol=1e-2, rtol=0)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_scale_one_is_the_conditional_result_with_one_call_per_step(solver: str) -> None:
    velocity = CountingVelocity()
    config = SamplerConfig(steps=5, cfg_text=1.0, cfg_cues=1.0, solver=solver)
    out = sample(velocity, GuidanceConds(full="full"), config, shape=SHAPE)
    assert velocity.calls == ["full"] * 5
    plain = SOLVERS[solver](lambda x, s: denoised_from_velocity(x, s, velocity(x, s, "full")),
                            out.new_zeros(SHAPE) + torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)),
                            sampling_sigmas(config))
    torch.testing.assert_close(out, plain)


def test_guidance_combines_three_calls_with_separate_scales() -> None:
    velocity = CountingVelocity()
    config = SamplerConfig(steps=2, cfg_text=4.0, cfg_cues=2.5, solver="euler")
    sample(velocity, CONDS, config, shape=SHAPE)
    assert velocity.calls == ["full", "no_text", "no_cues"] * 2
    # v_full + (4 - 1)(v_full - (v_full + 0.3)) + (2.5 - 1)(v_full - (v_full - 0.2)) = v_full - 0.9 + 0.3
    from directanimator_core.sampling import guided_velocity
    x, sigma = torch.randn(SHAPE), torch.tensor([0.5])
    got = guided_velocity(CountingVelocity(), x, sigma, CONDS, 4.0, 2.5)
    torch.testing.assert_close(got, gaussian_velocity(x, sigma, None) - 0.6)


def test_guidance_without_its_variant_fails_before_any_call() -> None:
    velocity = CountingVelocity()
    with pytest.raises(InputError, match="cfg_text=5.0 .*no_text is None"):
        sample(velocity, GuidanceConds(full="full"), SamplerConfig(cfg_text=5.0), shape=SHAPE)
    assert velocity.calls == []


def test_denoise_below_one_starts_from_the_noised_input_at_the_right_sigma() -> None:
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    config = SamplerConfig(steps=4, cfg_text=1.0, shift=3.0, denoise=0.5, seed=5)
    seen: list[torch.Tensor] = []

    def velocity(x, sigma, cond):
        seen.append((x.clone(), sigma.clone()))
        return gaussian_velocity(x, sigma, None)

    sample(velocity, GuidanceConds(full="full"), config, init_latent=init)
    sigma0 = 3.0 * 0.5 / (1 + 2.0 * 0.5)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    x0, s0 = seen[0]
    assert s0.item() == pytest.approx(sigma0)
    torch.testing.assert_close(x0, (1 - sigma0) * init + sigma0 * noise)


def test_denoise_one_equals_a_pure_noise_start() -> None:
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    config = SamplerConfig(steps=3, cfg_text=1.0, seed=5)
    torch.testing.assert_close(run(config, init_latent=init, shape=None), run(config))


def test_denoise_below_one_without_an_input_is_refused() -> None:
    with pytest.raises(InputError, match="denoise=0.5 .*init_latent is None"):
        run(SamplerConfig(denoise=0.5))


def test_callback_once_per_step_with_its_step_info() -> None:
    infos: list[StepInfo] = []
    config = SamplerConfig(steps=6, cfg_text=1.0, solver="dpmpp_2m")
    run(config, callback=infos.append)
    sigmas = sampling_sigmas(config)
    assert [i.step for i in infos] == list(range(6)) and {i.total for i in infos} == {6}
    assert [i.sigma for i in infos] == pytest.approx(sigmas[:-1].tolist())
    assert all(i.denoised.shape == SHAPE for i in infos)
    with pytest.raises(AttributeError):
        infos[0].step = 3  # frozen


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_should_stop_is_honoured_within_one_step(solver: str) -> None:
    velocity, steps_seen = CountingVelocity(), []
    config = SamplerConfig(steps=10, cfg_text=1.0, solver=solver)
    with pytest.raises(Interrupted, match="after step 3 of 10"):
        sample(velocity, GuidanceConds(full="full"), config, shape=SHAPE,
               callback=lambda info: steps_seen.append(info.step), should_stop=lambda: len(steps_seen) >= 3)
    assert len(velocity.calls) == 3


def test_an_old_solver_name_reads_as_its_new_one(caplog: pytest.LogCaptureFixture) -> None:
    """A workflow saved when Wan's UniPC was called "unipc" keeps its numbers, and the log says the new name."""
    with caplog.at_level(logging.WARNING):
        config = SamplerConfig(steps=5, cfg_text=1.0, solver="unipc")
    assert config.solver == "unipc_wan"
    assert "'unipc' is the old name of 'unipc_wan'" in caplog.text
    torch.testing.assert_close(run(config), run(SamplerConfig(steps=5, cfg_text=1.0, solver="unipc_wan")), atol=0, rtol=0)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("steps", 0, "steps=0"), ("cfg_text", -1.0, "cfg_text=-1.0"), ("cfg_cues", float("nan"), "cfg_cues=nan"),
    ("shift", 0.0, "shift=0.0"), ("solver", "heun", "solver='heun' .*dpmpp_2m"), ("seed", -1, "seed=-1"),
    ("denoise", 0.0, "denoise=0.0"), ("denoise", 1.5, "denoise=1.5"),
    ("scheduler", "karras", "scheduler='karras' .*linear_shifted")])
def test_config_validation_names_the_bad_value(field: str, value, match: str) -> None:
    with pytest.raises(InputError, match=match):
        SamplerConfig(**{field: value})
