"""Core's KSampler and our sampler give the same latent for every sampler and scheduler name they share.

A tiny random text-to-video Wan DiT in core's layout is loaded by core's UNETLoader and sampled by core's
KSampler (harness/ksampler_names.py, in ComfyUI's Python), and by our own WanDiT on the same file through
``sampling.sample`` with the same names, seed, steps and shift; ComfyUI's raw latent is normalised as
its Wan latent format does on the way in. The flow solvers that kept their own names (unipc_wan,
dpmpp_2m_flow, linear_shifted) are shown to be other numbers than the ComfyUI names they stand beside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.comfyui import comfyui_dir
from harness.paths import REPO

from directanimator_core.models.checkpoints.backbone import load_backbone
from directanimator_core.models.config import BackboneConfig
from directanimator_core.models.vae import normalize_latents
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.sampling import GuidanceConds, SamplerConfig, sample

pytestmark = [pytest.mark.comfy]
TINY_T2V = BackboneConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=1, in_dim=16, out_dim=16, text_dim=4096)
LATENT = (1, 16, 3, 8, 8)
NAMES = ("euler", "dpmpp_2m", "uni_pc", "uni_pc_bh2")
CASES = [dict(sampler=name, scheduler="simple", steps=steps, shift=5.0, seed=3) for name in NAMES for steps in (7, 30)]
# (our name that once stood for it) per ComfyUI name, on our own schedule
FORMERLY = {"euler": "euler", "dpmpp_2m": "dpmpp_2m_flow", "uni_pc": "unipc_wan", "uni_pc_bh2": "unipc_wan"}
LIMIT_S = 600


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """The tiny model file, the text states, and ComfyUI's latents for every case."""
    base = tmp_path_factory.mktemp("ksampler-names")
    for sub in ("models/diffusion_models", "input", "output", "temp", "user", "custom_nodes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(5)
    backbone = init_weights(build_backbone(TINY_T2V, device=torch.device("cpu")), generator)
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02, generator=generator)  # Wan zero-inits it
    model_file = base / "models" / "diffusion_models" / "tiny_t2v.safetensors"
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}, str(model_file))
    text = torch.randn(1, 4, TINY_T2V.text_dim, generator=generator)
    save_file({"text": text, "latent": torch.zeros(LATENT)}, str(base / "inputs.safetensors"))
    (base / "cases.json").write_text(json.dumps(CASES))
    out = base / "out.safetensors"
    result = subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "ksampler_names.py"), str(comfyui_dir()),
                             str(base), str(base / "cases.json"), str(out)], cwd=base, capture_output=True, text=True,
                            timeout=LIMIT_S, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    comfy = load_file(str(out))
    model, _ = load_backbone(model_file, compute_dtype=torch.float32, num_heads=1)
    return {"model": model.eval(), "text": text, "comfy": [comfy[str(i)] for i in range(len(CASES))]}


def ours(setup: dict, solver: str, scheduler: str, steps: int, shift: float, seed: int) -> torch.Tensor:
    dit = setup["model"]

    def velocity(x, sigma, cond):
        return dit(x, sigma * 1000, cond)

    config = SamplerConfig(steps=steps, cfg_text=1.0, shift=shift, solver=solver, scheduler=scheduler, seed=seed)
    with torch.no_grad():
        return sample(velocity, GuidanceConds(full=setup["text"]), config, shape=LATENT)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: "{sampler}-{steps}".format(**CASES[i]))
def test_the_same_names_give_ksamplers_latent(index: int, setup: dict) -> None:
    case = CASES[index]
    theirs = normalize_latents(setup["comfy"][index])
    mine = ours(setup, case["sampler"], case["scheduler"], case["steps"], case["shift"], case["seed"])
    assert relative(mine, theirs) < 1e-4  # fp32 on both sides (UniPC's coefficients: fp32 there, fp64 here)


@pytest.mark.parametrize("name", NAMES)
def test_our_own_flow_names_are_other_numbers(name: str, setup: dict) -> None:
    index = next(i for i, c in enumerate(CASES) if c["sampler"] == name and c["steps"] == 7)
    theirs = normalize_latents(setup["comfy"][index])
    assert relative(ours(setup, FORMERLY[name], "linear_shifted", 7, 5.0, 3), theirs) > 1e-4
