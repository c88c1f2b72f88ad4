"""The VAE tile plan drives models/vae.py's tiled decode: its tiles are accepted and blend back exactly.

Exactness is checked with a decoder whose pixels depend only on their own latent pixel (tiles then
agree where they overlap, so any difference would come from the tile geometry the plan chose). A
random-weight VAE sees far past a tile edge, so its tiled output is only close to the whole-frame one;
tests/core/test_vae.py checks that closeness and the absence of seams.
"""

from __future__ import annotations

import pytest
import torch

from directanimator_core.offload.plan import GiB, WAN_VAE_DECODE_ELEMS_PER_PIXEL, plan_vae_tiles

vae = pytest.importorskip("directanimator_core.models.vae")


class LocalDecoder:
    def __init__(self) -> None:
        self.weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
        self.calls = 0

    def decode(self, latents: torch.Tensor, chunk_latents=1) -> torch.Tensor:  # (B, 16, T, h, w) -> (B, 3, T, 8h, 8w)
        self.calls += 1
        pixels = torch.einsum("oc,bcthw->bothw", self.weight, latents)
        return pixels.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)


@pytest.mark.parametrize("side", [128, 192, 256])
def test_planned_tiles_decode_exactly_like_the_whole_frame(side: int) -> None:
    height, width, weights = 384, 640, 250 * 2**20
    per_pixel = WAN_VAE_DECODE_ELEMS_PER_PIXEL * 2
    budget = weights + per_pixel * side * side + 1
    plan = plan_vae_tiles(budget, height, width, weight_bytes=weights, reserve_bytes=0)
    assert plan.tile == (side, side) and plan.predicted_peak_bytes <= budget
    latents = torch.randn(1, 16, 2, height // 8, width // 8, generator=torch.Generator().manual_seed(0))
    decoder = LocalDecoder()
    tiled = vae.decode_tiled(decoder, latents, plan.tile, plan.overlap, plan.chunk_frames)
    assert decoder.calls > 1  # really tiled
    torch.testing.assert_close(tiled, LocalDecoder().decode(latents), atol=1e-5, rtol=1e-5)


def test_a_roomy_budget_decodes_whole_frames() -> None:
    plan = plan_vae_tiles(24 * GiB, 480, 832, weight_bytes=250 * 2**20)
    assert plan.tile is None
