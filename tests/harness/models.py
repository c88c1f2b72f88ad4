"""Small model files in the real formats, written into a ComfyUI base's model folders (node tests, fuzz).

A 2-block Wan image-to-video DiT in ComfyUI's layout (``model.diffusion_model.`` keys) under the name
ComfyUI's Wan templates use, a DirectAnimator adapter file (safetensors + metadata) with open gates, and
a Wan 2.1 VAE at 1/12 width in the real key names (ComfyUI's VAELoader reads the width from
``decoder.head.0.gamma``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from directanimator_core.models.checkpoints.adapter import save_adapter
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


# -- the native path: a base that core's Load Diffusion Model reads ------------------------------------------

NATIVE_BASE = "da_native_i2v_tiny.safetensors"  # core's layout: head dim 128, patch (1, 2, 2), umT5 width 4096
NATIVE_MERGED = "da_native_i2v_tiny_lora_merged.safetensors"  # NATIVE_BASE with NATIVE_LORA merged in
NATIVE_LORA = "da_native_lora.safetensors"  # ComfyUI's Wan LoRA keys (diffusion_model.<module>.lora_up/down)
NATIVE_ADAPTER = "da_native_adapter.safetensors"  # every adapter weight random: Eq. 1-3 all act, e included
NATIVE_CLIP_BASE = "da_native_i2v_clip_tiny.safetensors"  # with Wan 2.1 I2V's CLIP image branch (img_emb, k_img)
NATIVE_T2V = "da_native_t2v_tiny.safetensors"  # text-to-video layout (in_dim 16): no way in for the reference
NATIVE_BF16 = "da_native_i2v_tiny_bf16.safetensors"  # NATIVE_BASE stored in bf16
NATIVE_SCALED_FP8 = "da_native_i2v_tiny_fp8_scaled.safetensors"  # ComfyUI's scaled fp8: e4m3fn + scale_weight
NATIVE = BackboneConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=1, in_dim=36, out_dim=16, text_dim=4096)
LORA_MODULES = ("blocks.0.self_attn.q", "blocks.1.ffn.0", "blocks.1.cross_attn.o")
LORA_RANK = 4


def native_lora(state: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on a few of ``state``'s Linears, alpha = rank (scale 1), in ComfyUI's Wan key format."""
    lora = {}
    for module in LORA_MODULES:
        out_features, in_features = state[f"{module}.weight"].shape
        lora[f"diffusion_model.{module}.lora_down.weight"] = torch.randn(LORA_RANK, in_features, generator=generator) * 0.1
        lora[f"diffusion_model.{module}.lora_up.weight"] = torch.randn(out_features, LORA_RANK, generator=generator) * 0.1
        lora[f"diffusion_model.{module}.alpha"] = torch.tensor(float(LORA_RANK))
    return lora


def write_native_models(models: Path) -> None:
    """NATIVE_BASE, NATIVE_MERGED (diffusion_models), NATIVE_LORA (loras), NATIVE_ADAPTER (directanimator), beside
    write_models' files (its adapter fits too: width 128, 2 blocks, patch 2)."""
    write_models(models)
    generator = torch.Generator().manual_seed(1)
    backbone = init_weights(build_backbone(NATIVE, device=torch.device("cpu")), generator)
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02, generator=generator)
    state = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    lora = native_lora(state, generator)
    merged = dict(state)
    for module in LORA_MODULES:
        up, down = lora[f"diffusion_model.{module}.lora_up.weight"], lora[f"diffusion_model.{module}.lora_down.weight"]
        merged[f"{module}.weight"] = (state[f"{module}.weight"].double() + up.double() @ down.double()).float()
    (models / "loras").mkdir(parents=True, exist_ok=True)
    save_file({f"model.diffusion_model.{k}": v for k, v in state.items()}, str(models / "diffusion_models" / NATIVE_BASE))
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in merged.items()},
              str(models / "diffusion_models" / NATIVE_MERGED))
    save_file(lora, str(models / "loras" / NATIVE_LORA))
    adapter = CueFusion(NATIVE, CueFusionConfig(same2x_depth=1)).init_weights(generator)
    with torch.no_grad():  # the timestep modulation (Eq. 1) and the cue stream (Eq. 3) open, not only the gates
        for name, param in adapter.named_parameters():
            if not name.endswith("embedding.proj.weight"):
                param.copy_(torch.randn(param.shape, generator=generator) * (0.5 if name.endswith("gate") else 0.05))
    save_adapter(adapter, models / "directanimator" / NATIVE_ADAPTER)
    write_stored_dtypes(state, models / "diffusion_models")
    for name, config in ((NATIVE_CLIP_BASE, replace(NATIVE, image_dim=1280)), (NATIVE_T2V, replace(NATIVE, in_dim=16))):
        other = init_weights(build_backbone(config, device=torch.device("cpu")), generator)
        torch.nn.init.normal_(other.head.head.weight, std=0.02, generator=generator)
        save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in other.state_dict().items()},
                  str(models / "diffusion_models" / name))


def write_stored_dtypes(state: dict[str, torch.Tensor], folder: Path) -> None:
    """NATIVE_BASE's weights as a bf16 file and as ComfyUI's scaled fp8 (every 2-D Linear weight in e4m3fn with a
    per-tensor scale_weight, the scaled_fp8 marker), in core's key layout."""
    from directanimator_core.offload.lowbit import quantize_fp8

    prefix = "model.diffusion_model."
    save_file({prefix + k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, str(folder / NATIVE_BF16))
    scaled = {prefix + "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2 and not key.startswith(("patch_embedding", "head.modulation")):
            weight, scale = quantize_fp8(value, torch.float8_e4m3fn, scaled=True)
            scaled[prefix + key], scaled[prefix + key[: -len("weight")] + "scale_weight"] = weight, scale
        else:
            scaled[prefix + key] = value.contiguous()
    save_file(scaled, str(folder / NATIVE_SCALED_FP8))
