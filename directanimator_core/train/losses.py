"""Training losses: rectified-flow denoising (Wan's objective) and the Same2X alignment (PAPER.md §3).

Flow convention as sampling/schedules.py: x_σ = (1 - σ)·x0 + σ·ε, the model predicts v = ε - x0.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..sampling.schedules import shift_sigmas


def draw_noise(latent: torch.Tensor, seeds: Sequence[int], shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample noise and sigma drawn from each sample's own seed (data.sample_seed).

    σ = shift(u), u ~ U(0, 1): Wan's time shift moves training toward high noise, as its sampler does.

    Args:
        latent: (B, C, T, H, W) clean latents (for shape, device, dtype).
        seeds: one seed per sample.
        shift: Wan's time shift (1 = uniform σ).

    Returns:
        noise (B, C, T, H, W) and sigma (B,), on latent's device.
    """
    noise, sigma = [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed + 1)  # +1: not the data layer's stream
        sigma.append(torch.rand((), generator=generator, dtype=torch.float64))
        noise.append(torch.randn(latent.shape[1:], generator=generator))
    sigmas = shift_sigmas(torch.stack(sigma), shift).float()
    return torch.stack(noise).to(latent.device, latent.dtype), sigmas.to(latent.device)


def noisy_latent(latent: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 - σ)·x0 + σ·ε; latent, noise (B, C, T, H, W), sigma (B,)."""
    s = sigma.view(-1, 1, 1, 1, 1).to(latent.dtype)
    return (1 - s) * latent + s * noise


def flow_matching_loss(velocity: torch.Tensor, latent: torch.Tensor, noise: torch.Tensor,
                       weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared error of the predicted velocity against ε - x0 (Wan / SD3 rectified flow), in fp32.

    Args:
        velocity: (B, C, T, H, W) model output.
        latent: (B, C, T, H, W) clean x0.
        noise: (B, C, T, H, W) ε.
        weight: (B, 1, T, H, W) per latent pixel (figure_weights), or None for the plain mean. The
            weighted mean is divided by the mean weight, so the loss keeps the plain loss's scale.
    """
    error = (velocity.float() - (noise - latent).float()) ** 2
    if weight is None:
        return error.mean()
    weight = weight.float().expand_as(error)
    return (error * weight).mean() / weight.mean()


def figure_weights(figure: torch.Tensor, figure_weight: float) -> torch.Tensor:
    """1 + figure_weight on the latent pixels the person covers, 1 elsewhere.

    Args:
        figure: (B, M, T, H, W) the target's own person mask at latent resolution (the cache's ``figure``:
            M pixel frames per latent frame, area-averaged), in [0, 1].
        figure_weight: the extra weight of the figure.

    Returns:
        (B, 1, T, H, W); a latent pixel counts when any of its pixel frames touches the person (a limb is
        often narrower than one latent pixel).
    """
    return 1.0 + figure_weight * (figure.float().amax(1, keepdim=True) > 0).float()


def same2x_alignment_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """L_S2X = 1 - mean over batch and patch tokens of cos(h_X^[D], h_S^[D]) (PAPER.md §3).

    The paper writes -mean cos; adding 1 changes no gradient and puts the minimum, reached when the
    student's block-D tokens point the same way as the teacher's, at exactly 0. The teacher's tokens
    are detached: only the student is pulled.

    Args:
        student: (B, L, D) block-D output tokens of θ_X (cross-ID cues).
        teacher: (B, L, D) block-D output tokens of the frozen θ_S (same-ID cues).
        eps: guards the norms of all-zero tokens.
    """
    s, t = student.float(), teacher.detach().float()
    cosine = (s * t).sum(-1) / (s.norm(dim=-1).clamp_min(eps) * t.norm(dim=-1).clamp_min(eps))  # (B, L)
    return 1 - cosine.mean()
