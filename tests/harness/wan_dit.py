"""Run ComfyUI's own Wan DiT (comfy/ldm/wan/model.py, WanModel) on given weights and inputs, in a subprocess.

ComfyUI's model_management picks a device at import and needs ``--cpu`` on a machine without a GPU;
a subprocess keeps that out of the test process. Weights are in Wan's native key names (what
ComfyUI's WanModel holds); inputs and outputs travel as safetensors files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from directanimator_core.models.config import BackboneConfig

RUNNER = r"""
import json, sys
comfy_dir, weights, inputs, outputs, config = sys.argv[1:6]
sys.path.insert(0, comfy_dir)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import load_file, save_file
import comfy.ops
from comfy.ldm.wan.model import WanModel

c = json.loads(config)
model = WanModel(model_type="i2v" if c["image_dim"] else "t2v", patch_size=tuple(c["patch_size"]),
                 in_dim=c["in_dim"], dim=c["dim"], ffn_dim=c["ffn_dim"], freq_dim=c["freq_dim"],
                 text_dim=c["text_dim"], out_dim=c["out_dim"], num_heads=c["num_heads"],
                 num_layers=c["num_layers"], flf_pos_embed_token_number=c["flf_tokens"],
                 eps=c["eps"], operations=comfy.ops.disable_weight_init)
model.load_state_dict(load_file(weights), strict=True)
model.eval()
data = load_file(inputs)
out = {}
with torch.no_grad():
    for name in sorted({k.split("/")[0] for k in data}):
        case = {k.split("/")[1]: v for k, v in data.items() if k.startswith(name + "/")}
        x = case["x"] if "y" not in case else torch.cat([case["x"], case["y"]], dim=1)
        out[name] = model(x, case["t"], case["context"], clip_fea=case.get("clip_fea")).contiguous()
save_file(out, outputs)
"""


def run_comfy_wan(comfy_dir: Path, config: BackboneConfig, state_dict: dict[str, torch.Tensor],
                  cases: dict[str, dict[str, torch.Tensor]], workdir: Path) -> dict[str, torch.Tensor]:
    """ComfyUI WanModel outputs for each named case {x, t, context[, y, clip_fea]}."""
    weights, inputs, outputs = workdir / "weights.safetensors", workdir / "in.safetensors", workdir / "out.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(weights))
    save_file({f"{name}/{k}": v.contiguous() for name, case in cases.items() for k, v in case.items()}, str(inputs))
    config_json = json.dumps({k: getattr(config, k) for k in (
        "patch_size", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim", "out_dim", "num_heads", "num_layers",
        "flf_tokens", "eps", "image_dim")})
    result = subprocess.run([sys.executable, "-c", RUNNER, str(comfy_dir), str(weights), str(inputs), str(outputs),
                             config_json], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ComfyUI's WanModel failed:\n{result.stderr[-4000:]}")
    return load_file(str(outputs))


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random, including what Wan zero-inits (head) or sets to one (norm gains),
    so an equivalence test exercises every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim >= 2 and not name.endswith(("modulation", "emb_pos")):
                param.copy_(noise / param[0].numel() ** 0.5)
            elif name.endswith("weight"):
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(0.1 * noise)
    return model.eval()


def tiny_inputs(config: BackboneConfig, batch: int = 1, frames: int = 3, height: int = 4, width: int = 6,
                seed: int = 1, per_frame_t: bool = False, image_tokens: int = 5) -> dict[str, torch.Tensor]:
    """A random case {x, t, context[, y, clip_fea]} for ``config``."""
    g = torch.Generator().manual_seed(seed)
    case = {
        "x": torch.randn((batch, config.out_dim, frames, height, width), generator=g),
        "t": (torch.rand((batch, frames) if per_frame_t else (batch,), generator=g) * 1000),
        "context": torch.randn((batch, 7, config.text_dim), generator=g),
    }
    if config.in_dim > config.out_dim:
        case["y"] = torch.randn((batch, config.in_dim - config.out_dim, frames, height, width), generator=g)
    if config.image_dim:
        case["clip_fea"] = torch.randn((batch, image_tokens, config.image_dim), generator=g)
    return case


def run_ours(model, case: dict[str, torch.Tensor], hook=None, cues=None) -> torch.Tensor:
    from directanimator_core.models.conditioning import Conditioning
    cond = Conditioning(image=case.get("y"), clip_fea=case.get("clip_fea"), cues=cues)
    with torch.no_grad():
        return model(case["x"], case["t"], case["context"], cond, hook) if hook is not None else \
            model(case["x"], case["t"], case["context"], cond)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


