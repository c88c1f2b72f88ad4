"""Frozen configs of the backbone and of the CueFusion adapter, and their JSON form for checkpoints.

Presets (named sizes) live in registry.py; a checkpoint's config is read from its tensor shapes by
checkpoints/backbone.py. Overrides go through ``dataclasses.replace``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

from ..errors import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneConfig:
    """A Wan DiT (2.1 / 2.2): widths, depth, channels; everything Wan fixes is a default here.

    ``in_dim`` counts every channel the patch embedding sees: 16 noise channels for text-to-video,
    16 noise + 4 mask + 16 image-latent = 36 for image-to-video, 48 for Wan 2.2 TI2V 5B.
    ``image_dim`` is the CLIP width (1280) when the model has Wan 2.1's image branch (``img_emb``,
    ``k_img``/``v_img``), else None; ``flf_tokens`` the FLF2V position-embedding length (``emb_pos``).
    """

    dim: int = 1536
    ffn_dim: int = 8960
    num_layers: int = 30
    num_heads: int = 12
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    image_dim: Optional[int] = None
    flf_tokens: Optional[int] = None
    eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        head_dim, rest = divmod(self.dim, self.num_heads)
        if rest or head_dim % 2 or head_dim < 6:
            raise CheckpointError(f"dim={self.dim} with num_heads={self.num_heads} gives head width "
                                  f"{self.dim / self.num_heads}: Wan's 3D RoPE needs an even head width of at "
                                  "least 6 dividing dim; pick num_heads so dim / num_heads is even")
        object.__setattr__(self, "patch_size", tuple(self.patch_size))

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_branch(self) -> bool:
        return self.image_dim is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BackboneConfig":
        return _from_json(cls, text)


@dataclass(frozen=True)
class CueFusionConfig:
    """The CueFusion adapter (PAPER.md §2.3): which cue latents come in and which blocks fuse them.

    ``cue_channels`` is the VAE latent width of the pose and face cue videos (16 for the Wan 2.1 VAE);
    each is concatenated with ``mask_channels`` of its location mask at latent resolution (4: the
    four pixel frames of one latent frame stacked, as Wan packs its image-to-video mask).
    ``blocks`` lists the CueFusion blocks; None means every block (our reading of the paper).
    ``same2x_depth`` is the block D whose hidden states Same2X aligns (paper: 10). On a backbone of
    ``same2x_depth`` blocks or fewer it names the last block instead (``for_backbone``, logged), so the
    default config builds an adapter for any backbone; the trainer checks its own depth (same2x.depth).
    """

    cue_channels: int = 16
    mask_channels: int = 4
    blocks: Optional[tuple[int, ...]] = None
    same2x_depth: int = 10

    def __post_init__(self) -> None:
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(sorted(set(int(b) for b in self.blocks))))

    def for_backbone(self, num_layers: int) -> "CueFusionConfig":
        """This config on a backbone of ``num_layers`` blocks: a same2x_depth past the last block becomes the
        last block, and the log says so (other values are checked by block_indices).

        Args:
            num_layers: the backbone's block count.
        """
        if num_layers < 1 or self.same2x_depth < num_layers:
            return self
        log.warning("same2x_depth=%d is past the last block of this %d-block backbone: using block %d (set "
                    "CueFusionConfig.same2x_depth to choose another)", self.same2x_depth, num_layers, num_layers - 1)
        return replace(self, same2x_depth=num_layers - 1)

    def block_indices(self, num_layers: int) -> tuple[int, ...]:
        """The fused blocks for a backbone of ``num_layers`` blocks (every block when ``blocks`` is None)."""
        indices = tuple(range(num_layers)) if self.blocks is None else self.blocks
        if not 0 <= self.same2x_depth < num_layers:
            raise CheckpointError(f"same2x_depth={self.same2x_depth} names no block of a {num_layers}-block backbone: "
                                  f"use 0..{num_layers - 1} (the paper uses 10)")
        bad = [i for i in indices if not 0 <= i < num_layers]
        if bad:
            raise CheckpointError(f"CueFusion blocks {bad} do not exist in a backbone of {num_layers} blocks: "
                                  f"use indices 0..{num_layers - 1} or blocks=None for every block")
        return indices

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CueFusionConfig":
        return _from_json(cls, text)


def _from_json(cls, text: str):
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{cls.__name__} metadata is not JSON ({error}): the file was not written by "
                              "this pack or is damaged") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{cls.__name__} metadata is JSON but not a table of fields: the file was not written "
                              "by this pack or is damaged")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{cls.__name__} metadata has unknown fields {unknown}: the file comes from a newer "
                              "version of the pack; update it")
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{cls.__name__} metadata has a field of the wrong type ({' '.join(str(error).split())}): "
                              "the file was not written by this pack or is damaged") from None
