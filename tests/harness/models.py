"""Small model files in the real formats, written into a ComfyUI base's model folders (node tests, fuzz).

A 2-block Wan image-to-video DiT in ComfyUI's layout (``model.diffusion_model.`` keys) under the name
ComfyUI's Wan templates use, a DirectAnimator adapter file (safetensors + metadata) with open gates, and
a Wan 2.1 VAE at 1/12 width in the real key names (ComfyUI's VAELoader reads the width from
``decoder.head.0.gamma``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from directanimator_core.models.adapter_checkpoint import save_adapter
from directanimator_core.models.config import BackboneConfig, CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion
from directanimator_core.models.vae import TINY_VAE, build_vae
from directanimator_core.models.wan_dit import build_backbone, init_weights

BASE = "wan2.1_i2v_480p_14B_fp16.safetensors"  # the names the shipped workflows use
ADAPTER = "directanimator_wan2.1_i2v_14B.safetensors"
VAE = "wan_2.1_vae.safetensors"
TINY = BackboneConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=1, in_dim=36, out_dim=16, text_dim=64)


def write_models(models: Path) -> None:
    """The three files into ``models``/diffusion_models, /directanimator and /vae."""
    generator = torch.Generator().manual_seed(0)
    backbone = init_weights(build_backbone(TINY, device=torch.device("cpu")), generator)
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02, generator=generator)  # a non-zero velocity
    state = {f"model.diffusion_model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    for folder in ("diffusion_models", "directanimator", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    save_file(state, str(models / "diffusion_models" / BASE))
    adapter = CueFusion(TINY, CueFusionConfig(same2x_depth=1)).init_weights(generator)
    with torch.no_grad():  # a trained-looking adapter: the cues change the output
        for block in adapter.blocks.values():
            block.gate.normal_(0, 0.5, generator=generator)
    save_adapter(adapter, models / "directanimator" / ADAPTER)
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in build_vae(TINY_VAE).state_dict().items()}, str(models / "vae" / VAE))
