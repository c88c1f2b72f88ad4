"""CueFusion inside a block loop the pack does not own (ComfyUI's own Wan MODEL): what a block patch needs.

Our WanDiT calls a BlockHook itself (hooks.py). A host backbone that runs its own blocks instead (ComfyUI's
``WanModel``) gives a patch two things per forward call: the timestep embedding e (B, T_e, D) once, before
the blocks, and the tokens entering each block. ``CueFusionPatch`` holds the adapter and one run's cue
latents and turns those into the same CueFusion calls our own backbone makes:

    hook = patch.begin(e, latent_shape)       # once per forward: cue tokens embedded, Eq. 1 shared projection
    tokens = patch.fuse(hook, i, tokens)      # before block i's self-attention: Eq. 2-3 and the injection

The math is CueFusionBlock / CueFusionHook's (cuefusion.py); nothing here computes a cue term of its own.
Batches: the host may stack several latents in one call (ComfyUI runs cond and uncond together for CFG);
cue latents of batch 1 are shared by every entry, as our own sampler shares them between guidance variants.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import InputError
from .conditioning import CueLatents
from .cuefusion import CueFusion, CueFusionHook


class CueFusionPatch:
    """A CueFusion adapter bound to one run's cue latents, for a host backbone's block loop.

    Args:
        adapter: the loaded adapter (its weights stay where the host's memory manager puts them).
        cues: normalised cue latents (B = 1) on the video latent's grid (cue_embed.pack_mask for the masks).
    """

    def __init__(self, adapter: CueFusion, cues: CueLatents) -> None:
        self.adapter, self.cues = adapter, cues
        self.blocks = tuple(sorted(int(i) for i in adapter.blocks))

    def check_backbone(self, dim: int, num_layers: int, patch_size: tuple[int, ...]) -> None:
        """InputError unless the host backbone fits the adapter (``check_host``)."""
        check_host(self.adapter, dim, num_layers, patch_size)

    def check_latent(self, latent_shape: torch.Size) -> None:
        """InputError when the cue latents are not on the grid of a (B, C, T, H, W) latent (cuefusion.check_cues)."""
        self.adapter.check_cues(self.cues, latent_shape)

    def to(self, device: torch.device) -> "CueFusionPatch":
        """Move the cue latents (data, not weights: the host places the adapter's weights) to ``device``."""
        c = self.cues
        self.cues = CueLatents(*(t.to(device) for t in (c.pose, c.face, c.pose_mask, c.face_mask)))
        return self

    def begin(self, time_embedding: torch.Tensor, latent_shape: torch.Size,
              frames: Optional[Sequence[int]] = None) -> CueFusionHook:
        """A CueFusionHook started for one forward call of the host.

        Args:
            time_embedding: (B, T_e, D) the host's timestep embedding e (before its 6-way projection).
            latent_shape: (B, C, T, H, W) of the host's input latent (noise plus concatenated conditioning).
            frames: the latent frames of the whole video this call covers, when the host samples a long video in
                context windows (ComfyUI's WAN Context Windows); None = all of them.
        """
        c = self.cues
        if c.pose.device != time_embedding.device:
            self.to(time_embedding.device)
            c = self.cues
        if frames is not None:
            if max(frames) >= c.pose.shape[2]:
                raise InputError(f"a context window covers latent frames up to {max(frames)}, but the cues cover "
                                 f"{c.pose.shape[2]}: build the cues for the whole clip the sampler runs")
            index = torch.as_tensor(list(frames), device=c.pose.device)
            c = CueLatents(*(t.index_select(2, index) for t in (c.pose, c.face, c.pose_mask, c.face_mask)))
        self.adapter.check_cues(c, latent_shape)
        grid = tuple(n // p for n, p in zip(latent_shape[2:], self.adapter.backbone_config.patch_size))
        hook = self.adapter.bind(c)
        hook.start(grid, time_embedding.float())
        return hook

    def fuse(self, hook: Optional[CueFusionHook], index: int, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens (B, L, D) entering block ``index`` with the cues fused in, in the tokens' dtype.

        Args:
            hook: what ``begin`` returned for this forward call.
            index: the host's block index.
            tokens: (B, L, D) hidden states entering the block.
        """
        if hook is None:
            raise InputError(f"CueFusion block {index} ran without the cue set-up of its forward call: the MODEL's "
                             "DirectAnimator wrapper was removed by another node; apply DirectAnimator last")
        if tokens.shape[:2] != hook.pose.shape[:2]:
            raise InputError(f"block {index} sees {tokens.shape[1]} tokens in a batch of {tokens.shape[0]}; the cues "
                             f"cover {hook.pose.shape[1]} tokens in a batch of {hook.pose.shape[0]}: another patch "
                             "adds tokens (reference or time-concatenated latents), which DirectAnimator cannot align")
        return hook.before_block(index, tokens).to(tokens.dtype)


def check_host(adapter: CueFusion, dim: int, num_layers: int, patch_size: tuple[int, ...]) -> None:
    """InputError unless a host backbone has the width, depth and patch ``adapter`` was trained for.

    Args:
        adapter: the loaded adapter.
        dim: the host's hidden width D.
        num_layers: the host's block count.
        patch_size: the host's (pt, ph, pw) patch.
    """
    trained = adapter.backbone_config
    if (dim, num_layers, tuple(patch_size)) != (trained.dim, trained.num_layers, tuple(trained.patch_size)):
        raise InputError(f"the DirectAnimator adapter was trained on a Wan model of width {trained.dim}, "
                         f"{trained.num_layers} blocks, patch {tuple(trained.patch_size)}; this MODEL has width "
                         f"{dim}, {num_layers} blocks, patch {tuple(patch_size)}: load the Wan model the adapter "
                         "was trained for")
