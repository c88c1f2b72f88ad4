"""Run ComfyUI's own schedulers and samplers (comfy/samplers.py KSampler and KSAMPLER, the k-diffusion and
uni_pc sampler functions) on a tiny random denoiser, in a subprocess.

The denoiser is the same few lines of torch in both processes (``DENOISER``): a Gaussian flow's exact
denoiser plus a small random nonlinear term, so every multistep history weight shows in the result.
The model sampling is ComfyUI's own for a Wan model (``ModelSamplingDiscreteFlow`` + ``CONST``, as
model_base builds it) with the shift of each case; the sigma table is ComfyUI's float32 one, the sampling runs in float64.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

DENOISER = r"""
import torch
MU, S = 2.0, 0.5
def make_denoiser(weight):
    def denoiser(x, sigma):
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)
        exact = MU + (1 - sigma) * S * S / ((1 - sigma) ** 2 * S * S + sigma ** 2) * (x - (1 - sigma) * MU)
        flat = x.reshape(x.shape[0], -1)
        return exact + 0.3 * sigma * torch.tanh(flat @ weight).reshape(x.shape)
    return denoiser
"""

RUNNER = r"""
import json, sys
comfy_dir, inputs, outputs, cases = sys.argv[1:5]
sys.path.insert(0, comfy_dir)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import load_file, save_file
import comfy.model_sampling
import comfy.samplers
""" + DENOISER + r"""
class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
    pass  # what comfy.model_base.model_sampling() builds for a Wan (FLOW) model

class Model:  # the object KSampler reads model_sampling from, and the denoiser KSAMPLER's wrapper calls
    def __init__(self, shift, denoiser):
        self.model_sampling = FlowSampling()
        self.model_sampling.set_parameters(shift=shift, multiplier=1000)
        self.inner_model = self
        self.denoiser = denoiser
    def get_model_object(self, name):
        return getattr(self, name)
    def __call__(self, x, sigma, model_options={}, seed=None):
        return self.denoiser(x, sigma)

data = load_file(inputs)
denoiser = make_denoiser(data["weight"])
out = {}
for i, case in enumerate(json.loads(cases)):
    torch.set_default_dtype(torch.float32)  # the sigma table as ComfyUI builds it
    model = Model(case["shift"], denoiser)
    ksampler = comfy.samplers.KSampler(model, case["steps"], "cpu", sampler=case["sampler"],
                                       scheduler=case["scheduler"], denoise=case["denoise"])
    sigmas = ksampler.sigmas.to(torch.float64)
    out[f"{i}/sigmas"] = sigmas.clone()
    torch.set_default_dtype(torch.float64)  # uni_pc builds its coefficient tensors in the default dtype
    sampler = comfy.samplers.sampler_object(case["sampler"])
    latent = data["init"] if case["denoise"] < 1 else torch.zeros_like(data["noise"])
    out[f"{i}/x"] = sampler.sample(model, sigmas, {}, None, data["noise"].clone(), latent.clone(),
                                    disable_pbar=True).contiguous()
save_file(out, outputs)
"""


def make_denoiser(weight: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The runner's denoiser, built from the same source in this process."""
    scope: dict = {}
    exec(DENOISER, scope)  # noqa: S102 - our own constant source, shared with the subprocess
    return scope["make_denoiser"](weight)


def run_comfy_sampling(comfy_dir: Path, cases: list[dict], noise: torch.Tensor, init: torch.Tensor,
                       weight: torch.Tensor, workdir: Path) -> list[dict[str, torch.Tensor]]:
    """For each case {sampler, scheduler, steps, denoise, shift}: KSampler's sigmas and KSAMPLER's result
    from ``noise`` (and ``init`` when denoise < 1)."""
    inputs, outputs = workdir / "in.safetensors", workdir / "out.safetensors"
    save_file({"noise": noise.contiguous(), "init": init.contiguous(), "weight": weight.contiguous()}, str(inputs))
    result = subprocess.run([sys.executable, "-c", RUNNER, str(comfy_dir), str(inputs), str(outputs),
                             json.dumps(cases)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ComfyUI's samplers failed:\n{result.stderr[-4000:]}")
    out = load_file(str(outputs))
    return [{"sigmas": out[f"{i}/sigmas"], "x": out[f"{i}/x"]} for i in range(len(cases))]
