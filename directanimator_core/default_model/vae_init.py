"""A pass-through start for the small VAE: encoder = 8x average pooling, decoder = nearest upsampling.

Trained from PyTorch's default initialisation, the Wan VAE at width 16 falls at once into
"decode the mean picture": the decoder's stream fills with an input-independent part, every RMS norm
then scales the latent's contribution down, and the encoder stops getting a gradient (measured: the
decoded picture does not change when unit noise is added to the latent, after any number of steps).
Starting from a network that already carries the picture through the latent avoids that trap:

    residual branches and attention outputs start at zero (each block is the identity);
    width-changing shortcuts and resamplers copy channels (down: 2x2 average, up: nearest);
    the first convolution copies RGB into channels 0-2 and puts a constant in channel 3, so the RMS
    norms see a near-constant length and stay close to linear on the colour channels;
    the two heads (after their norm and SiLU) are fitted by least squares on a batch, so the latent's
    first channels hold the pooled picture at unit scale and the decoder returns it.

Training then adds what average pooling loses. The weights keep Wan's layout; only the start differs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..models.vae import AttentionBlock, Resample, ResidualBlock, WanVAE, denormalize_latents, normalize_latents

CONSTANT = 2.0  # the constant channel (3) the first convolutions add
HEAD_NORM_GAIN = 0.25  # RMS-norm gain before each head's SiLU: keeps the SiLU near its linear part


def _copy_channels(conv: nn.Module, taps: list[tuple[int, ...]], offsets: tuple[int, ...] = (0,)) -> None:
    """Zero ``conv`` and let output channel ``offset + i`` (for each offset) copy input channel i, averaged
    over ``taps`` (kernel indices)."""
    with torch.no_grad():
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
        for offset in offsets:
            for i in range(min(conv.in_channels, conv.out_channels - offset)):
                for tap in taps:
                    conv.weight[(offset + i, i, *tap)] = 1.0 / len(taps)


def _last_centre(conv: nn.Module) -> tuple[int, ...]:
    """The kernel index of the current frame's centre pixel (a causal conv's last time slice)."""
    size = conv.kernel_size
    return (size[0] - 1, *(k // 2 for k in size[1:])) if len(size) == 3 else tuple(k // 2 for k in size)


def _init_block(module: nn.Module) -> None:
    if isinstance(module, ResidualBlock):
        nn.init.zeros_(module.residual[6].weight)
        nn.init.zeros_(module.residual[6].bias)
        if not isinstance(module.shortcut, nn.Identity):
            _copy_channels(module.shortcut, [_last_centre(module.shortcut)])
    elif isinstance(module, AttentionBlock):
        nn.init.zeros_(module.proj.weight)
        nn.init.zeros_(module.proj.bias)
    elif isinstance(module, Resample):
        conv = module.resample[1]
        if module.mode.startswith("downsample"):  # zero pad right/bottom, 3x3 stride 2: taps 0-1 see the 2x2 cell
            _copy_channels(conv, [(0, 0), (0, 1), (1, 0), (1, 1)])
        else:
            _copy_channels(conv, [(1, 1)])
        if module.mode == "downsample3d":  # (previous, pair) -> the pair's mean
            _copy_channels(module.time_conv, [(1, 0, 0), (2, 0, 0)])
        elif module.mode == "upsample3d":  # both frames of a doubled pair copy the current frame
            _copy_channels(module.time_conv, [(2, 0, 0)], offsets=(0, module.time_conv.in_channels))


def _first_conv(conv: nn.Module, channels: int) -> None:
    _copy_channels(conv, [_last_centre(conv)])
    with torch.no_grad():
        conv.weight[channels:].zero_()
        conv.bias[channels] = CONSTANT


def _head_input(conv: nn.Module, run: Callable[[], object]) -> torch.Tensor:
    """What the head convolution ``conv`` receives (after its norm and SiLU) while ``run()`` runs the
    model's own forward: (N, C) rows, one per pixel."""
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    try:
        run()
    finally:
        handle.remove()
    return torch.cat(seen, dim=2).transpose(0, 1).flatten(1).T


def _fit_head(conv: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> None:
    """Least-squares fit of the head conv's centre tap and bias: features (N, C) -> targets (N, K)."""
    design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution  # (C + 1, K)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        tap = _last_centre(conv)
        conv.weight[(slice(0, targets.shape[1]), slice(None), *tap)] = solution[:-1].T
        conv.bias[:targets.shape[1]] = solution[-1]


def passthrough_init(vae: WanVAE, images: torch.Tensor) -> WanVAE:
    """Set ``vae`` to the pass-through start (module docstring), fitting the heads on ``images``.

    Args:
        vae: a freshly built VAE.
        images: (B, 3, 1, H, W) training pictures in [-1, 1].
    """
    for module in vae.modules():
        _init_block(module)
    for head in (vae.encoder.head, vae.decoder.head):
        nn.init.constant_(head[0].gamma, HEAD_NORM_GAIN)
    _first_conv(vae.encoder.conv1, 3)
    _copy_channels(vae.conv1, [(0, 0, 0)])
    _copy_channels(vae.conv2, [(0, 0, 0)])
    _first_conv(vae.decoder.conv1, 3)
    with torch.no_grad():
        # latent channels 0-2: the pooled picture at unit scale; the rest (and the log-variance) zero
        pooled = nn.functional.avg_pool3d(images, (1, 8, 8))  # (B, 3, 1, h, w)
        target = torch.zeros(pooled.shape[0], vae.config.z_dim, *pooled.shape[2:])
        target[:, :3] = pooled / pooled.std()
        encoder_head = vae.encoder.head[2]
        features = _head_input(encoder_head, lambda: vae.encode(images, chunk_frames=None))
        _fit_head(encoder_head, features, denormalize_latents(target).transpose(0, 1).flatten(1).T)
        latents = denormalize_latents(normalize_latents(vae.encode(images, chunk_frames=None)))  # as training decodes
        decoder_head = vae.decoder.head[2]
        features = _head_input(decoder_head, lambda: vae.decode(latents, chunk_latents=None))
        _fit_head(decoder_head, features, images.transpose(0, 1).flatten(1).T)
    return vae

