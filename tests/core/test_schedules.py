"""Wan's shifted flow schedule: endpoints, monotonicity, the shift formula, the denoise start."""

from __future__ import annotations

import pytest
import torch

from directanimator_core.sampling import sampling_sigmas, shift_sigmas, sigmas_linear, sigmas_shifted, sigmas_simple
from directanimator_core.sampling.config import SamplerConfig


def test_linear_schedule_runs_from_start_to_zero() -> None:
    sigmas = sigmas_linear(4)
    assert sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8.0])
def test_shift_keeps_the_ends_and_the_order(shift: float) -> None:
    sigmas = sigmas_shifted(20, shift)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and len(sigmas) == 21
    assert torch.all(sigmas[1:] < sigmas[:-1])


def test_shift_formula_and_its_effect() -> None:
    s = torch.tensor([0.5], dtype=torch.float64)
    assert shift_sigmas(s, 5.0).item() == pytest.approx(5 * 0.5 / (1 + 4 * 0.5))
    assert shift_sigmas(s, 1.0).item() == 0.5
    # a shift above 1 spends more of the walk at high noise
    assert torch.all(sigmas_shifted(10, 5.0)[1:-1] > sigmas_linear(10)[1:-1])


def test_denoise_starts_at_the_shifted_strength() -> None:
    config = SamplerConfig(steps=10, shift=5.0, denoise=0.6)
    sigmas = sampling_sigmas(config)
    expected = 5.0 * 0.6 / (1 + 4.0 * 0.6)
    assert sigmas[0].item() == pytest.approx(expected)
    assert len(sigmas) == 11 and sigmas[-1] == 0.0


@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_simple_is_linear_shifted_only_where_the_steps_divide_1000(shift: float) -> None:
    """Why the pack's own schedule is not called "simple": ComfyUI's simple rounds each time down to its
    1000-entry table, so the two part where the step count does not divide 1000 (30, the default)."""
    torch.testing.assert_close(sigmas_simple(40, shift), sigmas_shifted(40, shift), atol=1e-6, rtol=0)
    gap = (sigmas_simple(30, shift) - sigmas_shifted(30, shift)).abs().max().item()
    assert gap > 1e-4


def test_uni_pc_gets_one_step_more_less_the_penultimate_sigma() -> None:
    """ComfyUI's KSampler rule for uni_pc / uni_pc_bh2, kept here for either scheduler."""
    for scheduler, full in (("simple", sigmas_simple(11, 5.0)), ("linear_shifted", sigmas_shifted(11, 5.0))):
        sigmas = sampling_sigmas(SamplerConfig(steps=10, shift=5.0, solver="uni_pc", scheduler=scheduler))
        assert sigmas.tolist() == full[:-2].tolist() + [0.0]
