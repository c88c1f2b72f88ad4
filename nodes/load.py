"""DirectAnimatorModelLoader: a base Wan checkpoint + a DirectAnimator adapter -> DA_MODEL.

Files come from ComfyUI's folders (``diffusion_models`` and our ``directanimator``); the core loads
them (models/ via animator.load_animator). The weights stay in host memory until a sampler runs;
the placement decision for a nominal run is logged here in one line, the actual one by the sampler.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import comfy.model_management
import folder_paths
from comfy_api.latest import io

from ..directanimator_core.pipeline import loaded_model as core
from ..directanimator_core.models.attention import set_attention_backend
from ..directanimator_core.offload import OffloadConfig
from .types import DAModel

log = logging.getLogger(__name__)

CATEGORY = "DirectAnimator/model"
MODEL_FOLDER = "directanimator"
BASE_FOLDER = "diffusion_models"
MERGED = "(merged in base)"
OFFLOAD_AUTO, OFFLOAD_RESIDENT, OFFLOAD_BUDGET = "auto (free VRAM)", "fully resident", "block budget"


def adapter_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.lower().endswith(".safetensors")]


def attention_backends() -> list[str]:
    """PyTorch SDPA always; flash-attention only when it is installed."""
    return ["sdpa"] + (["flash_attn"] if importlib.util.find_spec("flash_attn") is not None else [])


def model_path(folder: str, name: str) -> Optional[Path]:
    path = folder_paths.get_full_path(folder, name)
    return None if path is None else Path(path)


def missing_file_message(folder: str, name: str) -> str:
    return (f"{name} is not in models/{folder}: put the file there (the workflow's note says which) and press R "
            "to refresh the lists")


def offload_config(offload: str, budget_gb: float, prefetch: int) -> OffloadConfig:
    """The user's offload choice as an OffloadConfig (ComfyUI's free-memory figure enters at run time)."""
    if offload == OFFLOAD_RESIDENT:
        return OffloadConfig(budget_bytes=2**62, prefetch=0)  # a budget nothing exceeds: no block streams
    if offload == OFFLOAD_BUDGET:
        return OffloadConfig(budget_bytes=core.check_budget(budget_gb), prefetch=prefetch)
    return OffloadConfig(prefetch=prefetch)


class DirectAnimatorModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorModelLoader",
            display_name="DirectAnimator Model Loader",
            category=CATEGORY,
            description="Loads a Wan image-to-video checkpoint and the DirectAnimator adapter trained on it (or "
                        "one merged file). Weights stay in RAM until the sampler runs; the sampler then places "
                        "them on the GPU (resident or streamed block by block) to fit the memory it has.",
            inputs=[
                io.Combo.Input("base_model", options=folder_paths.get_filename_list(BASE_FOLDER),
                               tooltip="The Wan checkpoint in models/diffusion_models, e.g. "
                                       "wan2.1_i2v_480p_14B_fp16.safetensors (official, ComfyUI or diffusers keys)."),
                io.Combo.Input("adapter", options=[MERGED, *adapter_files()], default=MERGED,
                               tooltip="The DirectAnimator adapter in models/directanimator; '(merged in base)' "
                                       "when base_model already holds it."),
                io.Combo.Input("weight_dtype", options=list(core.WEIGHT_DTYPES), default="auto",
                               tooltip="How the weights are kept: 'auto' as stored in the file; fp8 halves the "
                                       "memory of bf16/fp16 (upcast per layer when computing)."),
                io.Combo.Input("offload", options=[OFFLOAD_AUTO, OFFLOAD_RESIDENT, OFFLOAD_BUDGET],
                               default=OFFLOAD_AUTO,
                               tooltip="Where the blocks live while sampling: planned from the free VRAM, all on "
                                       "the GPU, or planned for the VRAM budget below (the rest streams from RAM)."),
                io.Float.Input("vram_budget_gb", default=0.0, min=0.0, max=1024.0, step=0.5,
                               tooltip="GPU memory the sampler may use with 'block budget', in GiB (0 = the free "
                                       "VRAM)."),
                io.Int.Input("prefetch", default=1, min=0, max=8,
                             tooltip="Streamed blocks copied to the GPU ahead of the one computing (copies hide "
                                     "behind compute; each costs one block of VRAM)."),
                io.Combo.Input("attention", options=attention_backends(), default="sdpa",
                               tooltip="Attention kernel: PyTorch SDPA always works; flash_attn is listed only "
                                       "when installed (used for CUDA fp16/bf16, SDPA otherwise)."),
            ],
            outputs=[DAModel.Output("model", display_name="model",
                                    tooltip="The DirectAnimator model, for the DirectAnimator Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, base_model, adapter) -> bool | str:
        if model_path(BASE_FOLDER, base_model) is None:
            return missing_file_message(BASE_FOLDER, base_model)
        if adapter != MERGED and model_path(MODEL_FOLDER, adapter) is None:
            return missing_file_message(MODEL_FOLDER, adapter)
        return True

    @classmethod
    def execute(cls, base_model, adapter, weight_dtype, offload, vram_budget_gb, prefetch, attention) -> io.NodeOutput:
        base = model_path(BASE_FOLDER, base_model)
        adapter_path = None if adapter == MERGED else model_path(MODEL_FOLDER, adapter)
        core.check_model_files(base, adapter_path)  # before any tensor is read
        set_attention_backend(attention)
        device = comfy.model_management.get_torch_device()
        animator = core.load_animator(base, adapter_path, core.WEIGHT_DTYPES[weight_dtype],
                                      offload_config(offload, vram_budget_gb, prefetch), device)
        frames, height, width = core.NOMINAL_RUN
        plan = core.placement(animator, frames, height, width, free_memory(animator))
        log.info("%s", core.placement_line(animator, plan, frames, height, width))
        return io.NodeOutput(animator)


def free_memory(animator: core.Animator) -> Optional[int]:
    """What ComfyUI's model manager says is free on the compute device (None on the CPU: host memory)."""
    if animator.device.type == "cpu":
        return None
    return int(comfy.model_management.get_free_memory(animator.device))


NODES: list[type[io.ComfyNode]] = [DirectAnimatorModelLoader]
