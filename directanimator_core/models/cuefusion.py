"""CueFusion (PAPER.md §2.3, DESIGN.md §2): pose and face cue tokens modulated by the timestep and added
to the video tokens before each block's self-attention.

For every CueFusion block, from the backbone's time embedding e_t:

    (α_p, β_p, γ_p, α_f, β_f, γ_f) = MLP(SiLU(e_t))                       (Eq. 1)
    e^M = LN(e) · (1 + α) + β          for e = e_p, e_f                    (Eq. 2)
    e^G = e + γ · e^M                  the cue stream the next block gets  (Eq. 3)
    x   ← x + g_p ⊙ e_p^M + g_f ⊙ e_f^M                                    (added before self-attention)

MLP: a projection shared by all blocks plus a per-block offset table, the way Wan builds its own
adaLN (``time_projection`` + ``blocks.N.modulation``); a per-block full MLP would add 6.3B parameters
to Wan 14B. Zero init, so a fresh adapter leaves the base model's output exactly unchanged:
- the shared projection and the offsets start at zero, so α = β = γ = 0 and the cue stream passes
  through unchanged (e^G = e);
- α = β = 0 still leaves e^M = LN(e) ≠ 0, so the added term needs its own zero: the gates g_p, g_f
  (one D-vector per cue per block, our addition to the paper's equations). They get gradient at the
  first step (∂x/∂g = e^M ≠ 0); α, β, γ get it once g ≠ 0, as in DiT's adaLN-Zero. Zeroing the cue
  embedders instead would sit LN at its singular point (Jacobian ~ 1/sqrt(eps) at e = 0).
Every block is a CueFusion block unless CueFusionConfig.blocks lists fewer.

CueFusionDiT wraps any backbone with the WanDiT call (wan_dit.py docstring) and this adapter; it is
what the sampler calls: ``v = model(x, timestep, context, cond)``, the cues in ``cond.cues``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import InputError
from .conditioning import NO_CONDITIONING, Conditioning, CueLatents
from .config import BackboneConfig, CueFusionConfig
from .cue_embed import CuePatchEmbed
from .hooks import BlockHook, HookChain
from .layers import CastLinear, FP32LayerNorm, modulate, per_token


class CueFusionBlock(nn.Module):
    """The per-block part: offsets to the shared modulation (1, 6, D) and the injection gates (2, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(dim, 1e-6, elementwise_affine=False)
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))
        self.gate = nn.Parameter(torch.zeros(2, dim))

    def forward(self, x: torch.Tensor, pose: torch.Tensor, face: torch.Tensor,
                shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x, pose, face (B, L, D) fp32; shared (B, T_e, 6, D) fp32 -> (x + cues, pose^G, face^G)."""
        a_p, b_p, g_p, a_f, b_f, g_f = (self.modulation.float() + shared).unbind(2)  # (B, T_e, D) each, Eq. 1
        pose_m = modulate(self.norm(pose), b_p, a_p)  # LN(e)(1 + α) + β, Eq. 2
        face_m = modulate(self.norm(face), b_f, a_f)
        gate = self.gate.float()
        x = x + gate[0] * pose_m + gate[1] * face_m
        length = x.shape[1]
        pose = torch.addcmul(pose, per_token(g_p, length), pose_m)  # e + γ·e^M, Eq. 3
        face = torch.addcmul(face, per_token(g_f, length), face_m)
        return x, pose, face


class CueFusion(nn.Module):
    """The CueFusion adapter: cue embedders, the shared Eq. 1 projection, one CueFusionBlock per fused block.

    ``blocks`` is keyed by the backbone block index ("0", "1"...), so checkpoint keys say where each
    block's parameters act.
    """

    _keep_in_fp32_modules = ("cue_projection", "modulation", "gate")

    def __init__(self, backbone: BackboneConfig, config: CueFusionConfig) -> None:
        super().__init__()
        config = config.for_backbone(backbone.num_layers)
        self.backbone_config, self.config = backbone, config
        dim = backbone.dim
        self.pose_embedding = CuePatchEmbed(config.cue_channels, config.mask_channels, dim, backbone.patch_size)
        self.face_embedding = CuePatchEmbed(config.cue_channels, config.mask_channels, dim, backbone.patch_size)
        self.cue_projection = nn.Sequential(nn.SiLU(), CastLinear(dim, 6 * dim))
        self.blocks = nn.ModuleDict({str(i): CueFusionBlock(dim) for i in config.block_indices(backbone.num_layers)})

    def check_cues(self, cues: CueLatents, latent_shape: torch.Size) -> None:
        """Raise InputError, before any work, when the cue latents do not fit the video latent.

        Args:
            cues: the cue latents.
            latent_shape: (B, C, T, H, W) of the noisy latent.
        """
        c = self.config
        b, _, *grid = latent_shape
        for name, tensor, channels in (("pose", cues.pose, c.cue_channels), ("face", cues.face, c.cue_channels),
                                       ("pose_mask", cues.pose_mask, c.mask_channels),
                                       ("face_mask", cues.face_mask, c.mask_channels)):
            if tensor.ndim != 5 or tensor.shape[1] != channels or list(tensor.shape[2:]) != grid \
                    or tensor.shape[0] not in (1, b):
                raise InputError(f"cue latent {name} has shape {tuple(tensor.shape)}; CueFusion needs "
                                 f"({b}, {channels}, {', '.join(map(str, grid))}), on the video latent's grid: "
                                 "encode the cue videos at the output's size and length (masks: cue_embed.pack_mask)")

    def bind(self, cues: CueLatents) -> "CueFusionHook":
        """A one-call block hook that fuses ``cues`` into the backbone's blocks.

        Args:
            cues: the cue latents for this call.
        """
        return CueFusionHook(self, cues)

    def init_weights(self, generator: Optional[torch.Generator] = None) -> "CueFusion":
        """Xavier cue embedders (as Wan's patch embedding), everything on the injection path zero.

        Args:
            generator: random source for reproducible tests.
        """
        with torch.no_grad():
            for embed in (self.pose_embedding, self.face_embedding):
                weight = embed.proj.weight.flatten(1)
                bound = (6 / (weight.shape[0] + weight.shape[1])) ** 0.5
                embed.proj.weight.uniform_(-bound, bound, generator=generator)
                embed.proj.bias.zero_()
            self.cue_projection[1].weight.zero_()
            self.cue_projection[1].bias.zero_()
            for block in self.blocks.values():
                block.modulation.zero_()
                block.gate.zero_()
        return self


class CueFusionHook(BlockHook):
    """CueFusion for one forward call: embeds the cues at start, fuses them before each listed block."""

    def __init__(self, adapter: CueFusion, cues: CueLatents) -> None:
        self.adapter, self.cues = adapter, cues
        self.pose: Optional[torch.Tensor] = None
        self.face: Optional[torch.Tensor] = None
        self.shared: Optional[torch.Tensor] = None

    def start(self, grid: tuple[int, int, int], time_embedding: torch.Tensor) -> None:
        a, cues = self.adapter, self.cues
        self.pose = a.pose_embedding(cues.pose, cues.pose_mask)  # (B, L, D) fp32
        self.face = a.face_embedding(cues.face, cues.face_mask)
        if self.pose.shape[0] != time_embedding.shape[0]:
            self.pose, self.face = (t.expand(time_embedding.shape[0], -1, -1) for t in (self.pose, self.face))
        self.shared = a.cue_projection(time_embedding.float()).unflatten(-1, (6, -1))  # (B, T_e, 6, D)

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        block = self.adapter.blocks[str(index)] if str(index) in self.adapter.blocks else None
        if block is None:
            return tokens
        tokens, self.pose, self.face = block(tokens, self.pose, self.face, self.shared)
        return tokens


class CueFusionDiT(nn.Module):
    """A backbone and its CueFusion adapter: the velocity model the sampler calls.

    Offload hints pass through: ``blocks`` is the backbone's block list, and the fp32 modules are both
    parts' (offload/plan.py).
    """

    _offload_blocks = "blocks"

    def __init__(self, backbone: nn.Module, adapter: CueFusion) -> None:
        super().__init__()
        self.backbone, self.adapter = backbone, adapter
        self._keep_in_fp32_modules = tuple(getattr(backbone, "_keep_in_fp32_modules", ())) + \
            CueFusion._keep_in_fp32_modules

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.blocks

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                cond: Conditioning = NO_CONDITIONING, hook: Optional[BlockHook] = None) -> torch.Tensor:
        """Velocity with the cues of ``cond`` fused in (the plain backbone when ``cond.cues`` is None).

        Args:
            x: (B, C, T, H, W) noisy latent.
            timestep: (B,) or (B, T) Wan timesteps (sigma · 1000).
            context: (B, L_text, D_text) text embedding.
            cond: image-to-video inputs and the cue latents.
            hook: an extra block hook run after CueFusion's (e.g. a Same2X BlockReader), or None.

        Returns:
            (B, C, T, H, W) velocity in the dtype of x.
        """
        hooks = [] if hook is None else [hook]
        if cond.cues is not None:
            self.adapter.check_cues(cond.cues, x.shape)
            hooks.insert(0, self.adapter.bind(cond.cues))
        chained = None if not hooks else hooks[0] if len(hooks) == 1 else HookChain(hooks)
        return self.backbone(x, timestep, context, cond, chained)
