"""Every schedule and solver that carries a ComfyUI name gives ComfyUI's numbers.

ComfyUI's own KSampler lays out the sigmas (its ``simple`` scheduler, its denoise rule, its uni_pc rule)
and its own KSAMPLER runs its own sampler functions, on a Wan model's model sampling and a tiny random
denoiser (tests/harness/comfy_sampling.py); our ``sample()`` runs the same names from the same noise.
The flow solvers that kept their own names are shown to differ from the ComfyUI ones they were once
mistaken for.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.comfy_sampling import make_denoiser, run_comfy_sampling
from harness.comfyui import comfyui_dir

from directanimator_core.sampling import SOLVERS, GuidanceConds, SamplerConfig, sample, sampling_sigmas
from directanimator_core.sampling.loop import initial_noise

SHAPE = (1, 2, 3, 4, 4)
COMFY_SOLVERS = ("euler", "dpmpp_2m", "uni_pc", "uni_pc_bh2")
CASES = [dict(sampler=sampler, scheduler="simple", steps=steps, denoise=denoise, shift=shift)
         for sampler, steps, denoise, shift in itertools.product(COMFY_SOLVERS, (1, 2, 3, 7, 30), (1.0, 0.6), (5.0,))]
CASES += [dict(sampler=sampler, scheduler="simple", steps=12, denoise=1.0, shift=shift)
          for sampler, shift in itertools.product(COMFY_SOLVERS, (1.0, 8.0))]
# what the pack's flow solvers were called before, against ComfyUI's solver of that name
FORMERLY = {"uni_pc": "unipc_wan", "uni_pc_bh2": "unipc_wan", "dpmpp_2m": "dpmpp_2m_flow"}


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    size = SHAPE[1] * SHAPE[2] * SHAPE[3] * SHAPE[4]
    return {"noise": initial_noise(SHAPE, seed=4).double(),
            "init": torch.randn(SHAPE, generator=generator, dtype=torch.float64),
            "weight": torch.randn(size, size, generator=generator, dtype=torch.float64) / size ** 0.5}


@pytest.fixture(scope="module")
def comfy(inputs, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, torch.Tensor]]:
    return run_comfy_sampling(comfyui_dir(), CASES, inputs["noise"], inputs["init"], inputs["weight"],
                              tmp_path_factory.mktemp("comfy-sampling"))


def config_of(case: dict, solver: str) -> SamplerConfig:
    return SamplerConfig(steps=case["steps"], cfg_text=1.0, shift=case["shift"], solver=solver,
                         scheduler=case["scheduler"], denoise=case["denoise"], seed=4)


def ours(case: dict, solver: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Our whole sampling loop, with the tiny denoiser as a velocity model (v = (x - x0) / sigma)."""
    denoiser = make_denoiser(inputs["weight"])

    def velocity(x, sigma, cond):
        return (x - denoiser(x, sigma)) / sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)

    init = inputs["init"] if case["denoise"] < 1 else None
    return sample(velocity, GuidanceConds(full=None), config_of(case, solver), shape=SHAPE, init_latent=init,
                  dtype=torch.float64)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: "{sampler}-{steps}-d{denoise}-s{shift}".format(**CASES[i]))
def test_the_same_name_gives_comfyuis_sigmas_and_result(index: int, comfy, inputs) -> None:
    case = CASES[index]
    assert sampling_sigmas(config_of(case, case["sampler"])).tolist() == comfy[index]["sigmas"].tolist()
    torch.testing.assert_close(ours(case, case["sampler"], inputs), comfy[index]["x"], atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(FORMERLY))
def test_the_flow_solvers_are_not_the_comfyui_ones_they_were_mistaken_for(name: str, comfy, inputs) -> None:
    index = next(i for i, c in enumerate(CASES) if c["sampler"] == name and c["steps"] == 30 and c["denoise"] == 1.0)
    assert relative(ours(CASES[index], FORMERLY[name], inputs), comfy[index]["x"]) > 1e-4


def test_every_comfyui_named_solver_is_covered() -> None:
    assert {name for name in SOLVERS if name not in ("unipc_wan", "dpmpp_2m_flow")} == set(COMFY_SOLVERS)
