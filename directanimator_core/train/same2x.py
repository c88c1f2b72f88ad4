"""Stage 1 / stage 2 orchestration: the student and the frozen teacher, and one Same2X training step.

Stage 1 (same-ID): the model denoises a clip from its own cues. Stage 2 (cross-ID, PAPER.md §3):
the frozen stage-1 model θ_S sees the target clip's own cues, the student θ_X (initialised from θ_S)
the driving clip's, for the same target, noise and timestep:

    L = L_denoise(θ_X) + λ · L_S2X,   L_S2X = 1 - mean cos(h_X^[D], h_S^[D])   (losses.py)

The trainer talks to the model through the VelocityModel protocol (the call of models/wan_dit.py)
and reads block-D tokens with a models/hooks.BlockReader passed as ``hook``; it never names the
backbone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..models.conditioning import Conditioning
from ..models.config import CueFusionConfig
from ..models.cuefusion import CueFusion, CueFusionDiT
from ..models.hooks import BlockHook, BlockReader
from ..models.registry import PRESETS, get_preset
from ..models.wan_dit import build_backbone, init_weights
from ..offload import policy
from .config import ModelConfig, Same2XConfig, TrainConfig
from .data import Batch
from .lora import LoRA, build_lora
from .losses import draw_noise, figure_weights, flow_matching_loss, noisy_latent, same2x_alignment_loss

log = logging.getLogger(__name__)

WAN_TIMESTEP_SCALE = 1000.0  # Wan's timestep t = σ · 1000


class VelocityModel(Protocol):
    """What the trainer needs of a model: the velocity, with an optional block hook (models/hooks.py)."""

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, cond: Conditioning,
                 hook: Optional[BlockHook] = None) -> torch.Tensor: ...


class Trainee(nn.Module):
    """The trained module: the DirectAnimator model and, when LoRA is trained, its LoRA pairs.

    Parameter names: ``net.backbone.*`` (Wan's), ``net.adapter.*`` (CueFusion's), ``lora.pairs.*``.
    """

    def __init__(self, net: nn.Module, lora: Optional[LoRA]) -> None:
        super().__init__()
        self.net, self.lora = net, lora

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, cond: Conditioning,
                hook: Optional[BlockHook] = None) -> torch.Tensor:
        """x (B, C, T, H, W), timestep (B,), context (B, L, D_text) -> velocity (B, C, T, H, W)."""
        return self.net(x, timestep, context, cond, hook)


# -- building ----------------------------------------------------------------------------------------
def cue_config(model: ModelConfig, same2x: Same2XConfig) -> CueFusionConfig:
    return CueFusionConfig(cue_channels=model.cue_channels, mask_channels=model.mask_channels,
                           blocks=model.cue_blocks, same2x_depth=same2x.depth)


def build_net(config: TrainConfig, device: torch.device, weight_dtype: torch.dtype = torch.float32) -> CueFusionDiT:
    """Backbone + CueFusion adapter as ``config.model`` describes, weights created on ``device``.

    A preset backbone gets Wan's init from ``run.seed`` (so teacher and student match); a fresh
    adapter is zero-gated (the model starts as the base model).
    """
    m = config.model
    cues = cue_config(m, config.same2x)
    generator = torch.Generator(device).manual_seed(config.run.seed)  # init draws happen on ``device``
    if m.backbone in PRESETS:
        if weight_dtype != torch.float32:
            log.info("preset backbone %s keeps fp32 weights (a low-precision teacher needs a model file)", m.backbone)
        with torch.device(device):
            backbone = init_weights(build_backbone(get_preset(m.backbone), device), generator)
            adapter = _adapter(m, backbone.config, cues, device, generator)
        return CueFusionDiT(backbone, adapter)
    from ..models.checkpoints.adapter import load_model

    if not Path(m.backbone).is_file():
        raise InputError(f"model.backbone={m.backbone!r} is neither a file nor a preset ({sorted(PRESETS)}): give "
                         "the Wan DiT .safetensors path")
    torch.manual_seed(config.run.seed)  # a fresh adapter's embedders draw from the global generator
    net = load_model(m.backbone, adapter_path=m.adapter, new_adapter=cues, compute_dtype=weight_dtype,
                     device=device, num_heads=m.num_heads)
    net.backbone.compute_dtype = torch.float32  # autocast picks the matmul dtype; weights stay weight_dtype
    return net


def _adapter(m: ModelConfig, backbone_config, cues: CueFusionConfig, device: torch.device,
             generator: torch.Generator) -> CueFusion:
    if m.adapter is None:
        return CueFusion(backbone_config, cues).init_weights(generator)
    from ..models.checkpoints.adapter import load_adapter

    return load_adapter(m.adapter, backbone_config, device)


def build_student(config: TrainConfig, device: torch.device) -> Trainee:
    """The trained model with ``requires_grad`` set for ``model.train`` and gradient checkpointing if asked."""
    m = config.model
    net = build_net(config, device)
    check_model_fits(net, config)
    torch.manual_seed(config.run.seed)  # LoRA A init
    lora = build_lora(net.blocks, m.lora_rank, m.lora_alpha, m.lora_targets, m.lora) if (
        m.train == "lora" or m.lora is not None) else None
    student = Trainee(net, lora)
    student.requires_grad_(m.train == "full")
    net.adapter.requires_grad_(True)
    if lora is not None:
        lora.requires_grad_(m.train != "adapter")
    if config.run.grad_checkpointing:
        checkpoint_blocks(net.blocks)
    return student.train()


def build_teacher(config: TrainConfig, device: torch.device) -> Trainee:
    """The frozen stage-1 model θ_S: the student's starting weights, LoRA folded in, no gradients.

    With ``same2x.teacher_budget_gb`` its blocks stream through offload/ within that budget.
    """
    m, budget = config.model, config.same2x.teacher_budget_gb
    dtype = torch.bfloat16 if config.same2x.teacher_dtype == "bf16" else torch.float32
    net = build_net(config, device if budget is None else policy.host_device(), dtype)  # offload streams from host
    if m.lora is not None:
        build_lora(net.blocks, m.lora_rank, m.lora_alpha, m.lora_targets, m.lora).merge()
    teacher = Trainee(net, None).eval().requires_grad_(False)
    if budget is not None:
        from ..offload import OffloadConfig, estimate_activation_bytes, latent_tokens, offload_model

        d, c = config.data, net.backbone.config
        activation = estimate_activation_bytes(latent_tokens(d.frames, d.height, d.width), c.dim, c.ffn_dim,
                                               config.run.batch_size)
        teacher._swap = offload_model(net, activation, config=OffloadConfig(
            budget_bytes=int(budget * 2**30)), device=device, compute_dtype=dtype)
    return teacher


def check_model_fits(net: CueFusionDiT, config: TrainConfig) -> None:
    """Raise InputError, before any training, for a backbone the data or Same2X settings do not fit."""
    c, references = net.backbone.config, config.data.reference_frames
    if (c.in_dim > c.out_dim) != (references > 0):
        kind = "an image-to-video" if c.in_dim > c.out_dim else "a text-to-video"
        raise InputError(f"data.reference_frames={references} but model.backbone is {kind} Wan (in_dim {c.in_dim}): "
                         f"use reference_frames={'1 or more' if c.in_dim > c.out_dim else '0'}, or an image-to-video "
                         "backbone (in_dim 36) to condition on the reference")
    check_depth(net, config.same2x)


def check_depth(net: nn.Module, same2x: Same2XConfig) -> None:
    layers = len(net.blocks)
    if same2x.stage == 2 and not 0 <= same2x.depth < layers:
        raise InputError(f"same2x.depth={same2x.depth}: the backbone has blocks 0..{layers - 1}; pick D in that "
                         "range (paper: 10 of 42)")


def checkpoint_blocks(blocks: nn.ModuleList) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them (per-block
    torch.utils.checkpoint); parameter names and hooks are untouched."""
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)


def _checkpointed(forward, *args, **kwargs):
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


# -- one step ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepLosses:
    total: torch.Tensor  # what is back-propagated
    denoise: torch.Tensor
    same2x: torch.Tensor  # NaN when not computed (stage 1, or λ = 0)


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward (fp32 master weights), or nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def drops_cues(seeds: Sequence[int], probability: float) -> bool:
    """Whether this step trains the cue-free prediction: one draw from the batch's first sample seed, so a
    resumed run drops the same steps."""
    if probability <= 0.0:
        return False
    generator = torch.Generator().manual_seed(int(seeds[0]) + 2)  # +2: neither the data's nor the noise's stream
    return bool(torch.rand((), generator=generator) < probability)


def compute_losses(student: VelocityModel, teacher: Optional[VelocityModel], batch: Batch, config: TrainConfig,
                   device: torch.device) -> StepLosses:
    """Stage 1: the denoising loss on same-ID cues. Stage 2: the student on cross-ID cues, plus λ·L_S2X
    against the teacher on same-ID cues (same x_σ, same t).

    Args:
        student: the trained model (possibly DDP/FSDP-wrapped).
        teacher: the frozen stage-1 model (stage 2 with λ > 0), else None.
        batch: this process's batch.
        config: the run's config.
        device: compute device.
    """
    s2x = config.same2x
    noise, sigma = draw_noise(batch.latent, batch.seeds, config.run.timestep_shift)
    x = noisy_latent(batch.latent, noise, sigma)
    timestep = sigma * WAN_TIMESTEP_SCALE
    cues = batch.cross if s2x.stage == 2 else batch.cues
    if drops_cues(batch.seeds, config.run.cue_dropout):
        cues = None  # the cue-free prediction: nothing to align with the teacher's cue-driven features
    aligned = s2x.stage == 2 and teacher is not None and cues is not None
    reader = BlockReader([s2x.depth]) if aligned else None
    with autocast(device, config.run.precision):
        velocity = student(x, timestep, batch.context, batch.condition(cues), reader)
    weight = None
    if config.run.figure_weight > 0:
        if batch.figure is None:
            raise InputError(f"run.figure_weight={config.run.figure_weight} needs the person masks of the cache's "
                             "entries, which this cache predates: delete the cache folder and prepare it again, or "
                             "set run.figure_weight = 0")
        weight = figure_weights(batch.figure, config.run.figure_weight)
    denoise = flow_matching_loss(velocity, batch.latent, noise, weight)
    if not aligned:
        return StepLosses(denoise, denoise, torch.full((), float("nan"), device=denoise.device))
    teacher_reader = BlockReader([s2x.depth])
    with torch.no_grad(), autocast(device, config.run.precision):
        teacher(x, timestep, batch.context, batch.condition(batch.cues), teacher_reader)
    alignment = same2x_alignment_loss(reader.states[s2x.depth], teacher_reader.states[s2x.depth])
    return StepLosses(denoise + s2x.weight * alignment, denoise, alignment)
