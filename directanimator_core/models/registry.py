"""Named backbone configurations: the Wan checkpoints users have, and a tiny one for tests.

Override a field with ``dataclasses.replace(PRESETS["wan2.1-t2v-1.3b"], num_layers=2)``. A checkpoint's
own config comes from its shapes (checkpoint.config_from_state_dict); ``preset_name`` names it.
"""

from __future__ import annotations

from typing import Optional

from ..errors import InputError
from .config import BackboneConfig

CLIP_DIM = 1280  # Wan 2.1 image-to-video: CLIP ViT-H/14 penultimate width
WAN_14B = dict(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40)

PRESETS: dict[str, BackboneConfig] = {
    "wan2.1-t2v-1.3b": BackboneConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12),
    "wan2.1-t2v-14b": BackboneConfig(**WAN_14B),
    "wan2.1-i2v-14b": BackboneConfig(**WAN_14B, in_dim=36, image_dim=CLIP_DIM),
    "wan2.1-flf2v-14b": BackboneConfig(**WAN_14B, in_dim=36, image_dim=CLIP_DIM, flf_tokens=514),
    "wan2.2-ti2v-5b": BackboneConfig(dim=3072, ffn_dim=14336, num_layers=30, num_heads=24, in_dim=48, out_dim=48),
    # Wan 2.2 A14B: a high-noise and a low-noise expert, each Wan 2.1 14B-shaped; I2V has no CLIP branch.
    "wan2.2-i2v-a14b": BackboneConfig(**WAN_14B, in_dim=36),
    "tiny": BackboneConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32),
    "tiny-i2v": BackboneConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32, in_dim=36,
                               image_dim=CLIP_DIM),
}
ALIASES = {"wan2.2-t2v-a14b": "wan2.1-t2v-14b"}  # same shapes; only the weights differ


def get_preset(name: str) -> BackboneConfig:
    """The named config (``PRESETS`` keys, or an alias such as ``wan2.2-t2v-a14b``).

    Args:
        name: preset name.
    """
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise InputError(f"unknown backbone preset {name!r}: choose one of {sorted(PRESETS) + sorted(ALIASES)}")
    return PRESETS[key]


def preset_name(config: BackboneConfig) -> Optional[str]:
    """The preset equal to ``config``, or None for a config no preset has.

    Args:
        config: a backbone config (e.g. read from a checkpoint).
    """
    return next((name for name, preset in PRESETS.items() if preset == config), None)
