"""The Wan DiT backbone (Wan 2.1 / 2.2), with Wan's own module names so official checkpoints load unchanged.

Call (what the sampler wraps):

    v = model(x, timestep, context, cond, hook)
    x        (B, C, T, H, W)  noisy latent, C = out_dim (16, or 48 for Wan 2.2 TI2V 5B)
    timestep (B,) or (B, T)   Wan's t = sigma · 1000; per latent frame for TI2V (clean first frame)
    context  (B, L, D_text)   umT5 text embedding (Wan pads it to 512 tokens with zeros; the caller does)
    cond     Conditioning     I2V ``image`` y, ``clip_fea``, cue latents (conditioning.py)
    hook     BlockHook        optional (hooks.py): CueFusion injection, Same2X block-D readout
    v        (B, C, T, H, W)  velocity (noise - x0), dtype of x

Module names (checkpoint keys): ``patch_embedding``, ``text_embedding.{0,2}``, ``time_embedding.{0,2}``,
``time_projection.1``, ``blocks.N.{self_attn.{q,k,v,o,norm_q,norm_k}, norm3, cross_attn.{q,k,v,o,
norm_q,norm_k[,k_img,v_img,norm_k_img]}, ffn.{0,2}, modulation}`` (norm1 / norm2 carry no weights),
``head.{head,modulation}``, ``img_emb.proj.{0,1,3,4}[, img_emb.emb_pos]``.

Precision islands as in Wan: patch embedding, time embedding, modulation tables, the residual stream,
norms and the head run in fp32; the attention and FFN Linears run in ``compute_dtype``. Weights keep
their stored dtype (fp8 included) and are upcast per layer (layers.py).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from ..errors import InputError
from .attention import attention
from .conditioning import NO_CONDITIONING, Conditioning
from .config import BackboneConfig
from .hooks import BlockHook
from .layers import CastConv3d, CastLinear, FP32LayerNorm, RMSNorm, modulate, per_token
from .rope import apply_rope, rope_table


def sinusoidal_embedding(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding: [cos, sin] of position · 10000^(-i / (dim/2)); (N,) -> (N, dim) fp32."""
    half = dim // 2
    angles = position.to(torch.float64)[:, None] * torch.pow(10000.0, -torch.arange(half, dtype=torch.float64,
                                                                                      device=position.device) / half)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


class WanSelfAttention(nn.Module):
    """Full 3D self-attention with q/k RMS norm over the width and 3D RoPE."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (CastLinear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) compute dtype, rope (L, d/2, 2) -> (B, L, D)."""
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1)), rope)  # (B, L, heads, d)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, (self.num_heads, -1)), rope)
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        return self.o(attention(q, k, v))


class WanCrossAttention(nn.Module):
    """Cross-attention to the text; with ``image_branch``, also to the CLIP image tokens (Wan 2.1 I2V),
    through their own k_img / v_img, the two results summed before ``o``."""

    def __init__(self, dim: int, num_heads: int, eps: float, image_branch: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (CastLinear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)
        if image_branch:
            self.k_img = CastLinear(dim, dim)
            self.v_img = CastLinear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))  # (B, L, heads, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, image_context: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, L, D), context (B, L_text, D), image_context (B, L_img, D) or None -> (B, L, D)."""
        q = self._heads(self.norm_q(self.q(x)))
        out = attention(q, self._heads(self.norm_k(self.k(context))), self._heads(self.v(context)))
        if image_context is not None:
            k_img = self._heads(self.norm_k_img(self.k_img(image_context)))
            out = out + attention(q, k_img, self._heads(self.v_img(image_context)))
        return self.o(out)


class WanAttentionBlock(nn.Module):
    """One Wan block: adaLN self-attention, cross-attention (norm3), adaLN FFN; ``modulation`` (1, 6, D)
    is added to the shared time projection to give shift/scale/gate for both halves."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, config.num_heads, eps)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = WanCrossAttention(dim, config.num_heads, eps, config.has_image_branch)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(CastLinear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 CastLinear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(self, x: torch.Tensor, e0: torch.Tensor, rope: torch.Tensor, context: torch.Tensor,
                image_context: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, L, D) fp32 residual stream, e0 (B, T_e, 6, D) fp32 -> (B, L, D) fp32."""
        dtype, length = context.dtype, x.shape[1]
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.float() + e0).unbind(2)  # (B, T_e, D) each
        y = self.self_attn(modulate(self.norm1(x), shift1, scale1).to(dtype), rope)
        x = torch.addcmul(x, y.float(), per_token(gate1, length))
        x = x + self.cross_attn(self.norm3(x).to(dtype), context, image_context).float()
        y = self.ffn(modulate(self.norm2(x), shift2, scale2).to(dtype))
        return torch.addcmul(x, y.float(), per_token(gate2, length))


class Head(nn.Module):
    """Final adaLN (``modulation`` (1, 2, D)) and the projection to patch pixels, in fp32 as Wan does."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(config.dim, config.eps, elementwise_affine=False)
        self.head = CastLinear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, config.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) fp32, e (B, T_e, D) fp32 -> (B, L, pt·ph·pw·C_out) fp32."""
        shift, scale = (self.modulation.float()[:, None] + e[:, :, None]).unbind(2)  # (B, T_e, D) each
        return self.head(modulate(self.norm(x), shift, scale))


class MLPProj(nn.Module):
    """Wan 2.1's CLIP image projection (``img_emb``): LN, Linear, GELU, Linear, LN; FLF2V adds ``emb_pos``."""

    def __init__(self, in_dim: int, out_dim: int, flf_tokens: Optional[int]) -> None:
        super().__init__()
        self.proj = nn.Sequential(FP32LayerNorm(in_dim), CastLinear(in_dim, in_dim), nn.GELU(),
                                  CastLinear(in_dim, out_dim), FP32LayerNorm(out_dim))
        self.emb_pos = nn.Parameter(torch.zeros(1, flf_tokens, in_dim)) if flf_tokens else None

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        """(B, L_img, in_dim) -> (B, L_img, out_dim) fp32."""
        x = clip_fea.float()
        if self.emb_pos is not None:
            x = x[:, :self.emb_pos.shape[1]] + self.emb_pos[:, :x.shape[1]].float()
        return self.proj(x)


class WanDiT(nn.Module):
    """Wan 2.1 / 2.2 diffusion transformer; see the module docstring for the call and the key names."""

    _offload_blocks = "blocks"  # the repeated block list (offload/plan.py)
    _no_split_modules = ("WanAttentionBlock",)
    _keep_in_fp32_modules = ("patch_embedding", "time_embedding", "time_projection", "modulation", "head")

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.compute_dtype = torch.float32
        dim = config.dim
        self.patch_embedding = CastConv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(CastLinear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            CastLinear(dim, dim))
        self.time_embedding = nn.Sequential(CastLinear(config.freq_dim, dim), nn.SiLU(), CastLinear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), CastLinear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanAttentionBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.img_emb = MLPProj(config.image_dim, dim, config.flf_tokens) if config.has_image_branch else None

    # -- the pieces, in call order ------------------------------------------------------------------

    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, in_dim, T, H, W) -> tokens (B, L, D) fp32 and the token grid (T', H', W')."""
        tokens = self.patch_embedding(x.float())  # (B, D, T', H', W')
        grid = tuple(tokens.shape[2:])
        return rearrange(tokens, "b d t h w -> b (t h w) d"), grid

    def embed_time(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep (B,) or (B, T) -> e (B, T_e, D) and e0 (B, T_e, 6, D), both fp32."""
        steps = timestep.reshape(timestep.shape[0], -1)  # (B, T_e)
        e = self.time_embedding(sinusoidal_embedding(self.config.freq_dim, steps.flatten()))
        e = e.unflatten(0, steps.shape)  # (B, T_e, D)
        return e, self.time_projection(e).unflatten(-1, (6, self.config.dim))

    def embed_context(self, context: torch.Tensor,
                      clip_fea: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Text (B, L_text, D_text) -> (B, L_text, D); CLIP states -> image tokens (B, L_img, D) or None."""
        text = self.text_embedding(context.to(self.compute_dtype))
        if self.img_emb is None:
            return text, None
        return text, self.img_emb(clip_fea).to(self.compute_dtype)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, L, pt·ph·pw·C) -> (B, C, T'·pt, H'·ph, W'·pw)."""
        pt, ph, pw = self.config.patch_size
        return rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                         t=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw)

    # -- the whole call -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                cond: Conditioning = NO_CONDITIONING, hook: Optional[BlockHook] = None) -> torch.Tensor:
        """Velocity for noisy latents x.

        Args:
            x: (B, C, T, H, W) noisy latent, C = out_dim.
            timestep: (B,) or (B, T) Wan timesteps (sigma · 1000).
            context: (B, L_text, D_text) text embedding.
            cond: image-to-video latent, CLIP features, cue latents (the cues are read by a hook).
            hook: block hook for adapters and readouts (hooks.py), or None.

        Returns:
            (B, C, T, H, W) velocity in the dtype of x.
        """
        self.check_inputs(x, timestep, context, cond)
        # 1. embeddings
        model_in = x if cond.image is None else torch.cat([x, cond.image.to(x.dtype)], dim=1)
        tokens, grid = self.patchify(model_in)
        e, e0 = self.embed_time(timestep)
        text, image = self.embed_context(context, cond.clip_fea)
        rope = rope_table(grid, self.config.head_dim, self.config.rope_theta, device=tokens.device)
        # 2. blocks
        hook = hook or BlockHook()
        hook.start(grid, e)
        for index, block in enumerate(self.blocks):
            tokens = hook.before_block(index, tokens)
            tokens = block(tokens, e0, rope, text, image)
            tokens = hook.after_block(index, tokens)
        # 3. head
        return self.unpatchify(self.head(tokens, e), grid).to(x.dtype)

    def check_inputs(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                     cond: Conditioning) -> None:
        """Raise InputError, before any work, for inputs this backbone cannot take."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.out_dim:
            raise InputError(f"latent x has shape {tuple(x.shape)}; this Wan backbone takes (B, {c.out_dim}, T, H, W): "
                             "encode with the matching VAE (16 channels Wan 2.1, 48 Wan 2.2 TI2V)")
        extra = 0 if cond.image is None else cond.image.shape[1]
        if c.out_dim + extra != c.in_dim:
            raise InputError(f"latent ({c.out_dim} ch) + image conditioning ({extra} ch) = {c.out_dim + extra} channels, "
                             f"the backbone's patch embedding takes {c.in_dim}: pass Conditioning.image with "
                             f"{c.in_dim - c.out_dim} channels (4 mask + image latent) for an image-to-video model, none otherwise")
        if cond.image is not None and cond.image.shape[2:] != x.shape[2:]:
            raise InputError(f"Conditioning.image grid {tuple(cond.image.shape[2:])} differs from the latent's "
                             f"{tuple(x.shape[2:])}: build the image latent for the same length and size")
        if x.shape[3] % c.patch_size[1] or x.shape[4] % c.patch_size[2] or x.shape[2] % c.patch_size[0]:
            raise InputError(f"latent size {tuple(x.shape[2:])} is not a multiple of the patch {c.patch_size}: "
                             "use a pixel width and height that are multiples of 16 (Wan 2.1) or 32 (Wan 2.2 5B)")
        if timestep.ndim not in (1, 2) or timestep.shape[0] != x.shape[0] or (
                timestep.ndim == 2 and timestep.shape[1] not in (1, x.shape[2] // c.patch_size[0])):
            raise InputError(f"timestep shape {tuple(timestep.shape)} does not fit batch {x.shape[0]} and "
                             f"{x.shape[2]} latent frames: pass (B,) or one timestep per latent frame (B, T)")
        if context.ndim != 3 or context.shape[-1] != c.text_dim:
            raise InputError(f"text context has shape {tuple(context.shape)}; expected (B, L, {c.text_dim}) "
                             "umT5-XXL states: connect the Wan text encoder's output")
        if c.has_image_branch and cond.clip_fea is None:
            raise InputError("this Wan 2.1 image-to-video backbone attends to CLIP image features, but "
                             "Conditioning.clip_fea is None: pass the CLIP vision output (B, 257, 1280)")
        if c.has_image_branch and (cond.clip_fea.ndim != 3 or cond.clip_fea.shape[-1] != c.image_dim):
            raise InputError(f"clip_fea has shape {tuple(cond.clip_fea.shape)}; this backbone takes (B, L, {c.image_dim}) "
                             "CLIP vision penultimate states: connect a CLIP ViT-H/14 vision output")


def build_backbone(config: BackboneConfig, device: Optional[torch.device] = None) -> WanDiT:
    """A WanDiT for ``config``; on the meta device (no memory) when ``device`` is meta, as the loader does.

    Args:
        config: the backbone's sizes.
        device: where parameters are created; None = the current default device.
    """
    with torch.device(device or torch.get_default_device()):
        return WanDiT(config)


def init_weights(model: WanDiT, generator: Optional[torch.Generator] = None) -> WanDiT:
    """Wan's training init (Xavier Linears, zero biases, N(0, 0.02) embeddings, zero head) for a
    freshly built model on a real device; checkpoints replace all of it.

    Args:
        model: the backbone, changed in place.
        generator: random source for reproducible tests.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = math.sqrt(6 / (module.in_features + module.out_features))
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
        for name, param in model.named_parameters():
            if name.endswith("modulation"):
                param.copy_(torch.randn(param.shape, generator=generator) / model.config.dim ** 0.5)
        for seq in (model.text_embedding, model.time_embedding):
            for layer in seq:
                if isinstance(layer, nn.Linear):
                    layer.weight.normal_(0, 0.02, generator=generator)
        model.head.head.weight.zero_()
    return model
