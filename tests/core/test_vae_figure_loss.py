"""The VAE's figure-weighted reconstruction loss (default_model/vae_train.py: figure_weights, vae_losses)."""

from __future__ import annotations

import torch

from directanimator_core.default_model.vae_train import figure_weights, vae_losses
from directanimator_core.models.vae import TINY_VAE, build_vae


def test_figure_weights_are_one_off_the_person_and_one_plus_w_on_its_dilated_mask() -> None:
    masks = torch.zeros(1, 2, 16, 16)
    masks[:, :, 8, 8] = 1.0
    weights = figure_weights(masks, 4.0, radius=2)
    assert weights.shape == (1, 1, 2, 16, 16)
    assert weights[0, 0, :, 6:11, 6:11].eq(5.0).all()  # the pixel and 2 around it
    assert weights.sum() == 2 * (256 + 4 * 25)  # everything else 1


def test_unit_weights_give_the_unweighted_loss_and_a_figure_weight_moves_it_toward_the_figure() -> None:
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE).eval()
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    plain = vae_losses(vae, video, torch.Generator().manual_seed(1))
    ones = vae_losses(vae, video, torch.Generator().manual_seed(1), torch.ones(1, 1, 5, 16, 16))
    assert torch.allclose(plain["l1"], ones["l1"]) and torch.allclose(plain["mse"], ones["mse"])
    # a figure where the reconstruction is perfect (the video set to it there): weighting it lowers the loss
    with torch.no_grad():
        recon = vae.decode(vae.encode(video, chunk_frames=None), chunk_latents=None)
    masks = torch.zeros(1, 5, 16, 16)
    masks[:, :, 4:12, 4:12] = 1.0
    exact = torch.where(masks[:, None].bool(), recon, video)
    unweighted = vae_losses(vae, exact, torch.Generator().manual_seed(1))
    weighted = vae_losses(vae, exact, torch.Generator().manual_seed(1), figure_weights(masks, 4.0, radius=0))
    assert weighted["l1"] < unweighted["l1"]
