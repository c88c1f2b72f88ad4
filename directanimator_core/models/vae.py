"""The Wan 2.1 VAE: a causal 3D convolutional autoencoder, 16 latent channels, 4x time and 8x space.

Module and parameter names are Wan's own (``encoder.downsamples.0.residual.2.weight``...), so the official
weights and ComfyUI's ``wan_2.1_vae.safetensors`` load with no renames; ``checkpoints/vae.py`` maps the
diffusers ``AutoencoderKLWan`` layout onto them.

Causality: frame f of the output depends only on input frames <= f. The first frame is coded on its own
(it becomes latent frame 0), every later group of 4 pixel frames becomes one latent frame, so F pixel
frames <-> T = (F - 1) / 4 + 1 latent frames. Because every temporal operation is causal, a video can be
streamed through the model in chunks, each convolution carrying the last frames it saw in a
:class:`CausalCache` (Wan's ``feat_cache``); the result is the same as one pass over the whole video,
at the memory of one chunk. Wan encodes the first frame alone and then 4 frames at a time, and decodes
one latent frame at a time; those are the defaults here.

Shapes: pixels [B, 3, F, H, W] in [-1, 1]; latents [B, 16, T, H/8, W/8]. ``WanVAE.encode`` returns the
raw posterior mean and ``decode`` takes raw latents, as ComfyUI's LATENT holds them; the diffusion model
sees ``normalize_latents(z)`` (Wan's per-channel mean / std).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import InputError, Interrupted

log = logging.getLogger(__name__)

# Per-channel statistics of Wan 2.1 latents (Wan2.1 wan/modules/vae.py; ComfyUI latent_formats.Wan21).
WAN21_LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

TIME_STRIDE, SPACE_STRIDE = 4, 8


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a Wan-style VAE. ``dim`` is the base width; the real Wan 2.1 VAE is ``WAN21_VAE``."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # Wan's spelling, kept for grep-ability


WAN21_VAE = VAEConfig()
TINY_VAE = VAEConfig(dim=8)  # the same block structure at 1/12 width, for tests on a CPU


def normalize_latents(z: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents [B, 16, T, H, W] -> the unit-scale latents the Wan DiT was trained on."""
    mean, std = _latent_stats(z)
    return (z - mean) / std


def denormalize_latents(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_latents`."""
    mean, std = _latent_stats(z)
    return z * std + mean


def _latent_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if z.ndim != 5 or z.shape[1] != len(WAN21_LATENT_MEAN):
        raise InputError(f"latents of shape {tuple(z.shape)} are not Wan 2.1 latents [B, 16, T, H, W]")
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(WAN21_LATENT_MEAN, device=z.device, dtype=z.dtype).view(shape)
    std = torch.tensor(WAN21_LATENT_STD, device=z.device, dtype=z.dtype).view(shape)
    return mean, std


def latent_frames(frames: int) -> int:
    """Latent frames T for F = 4n + 1 pixel frames."""
    return (frames - 1) // TIME_STRIDE + 1


def pixel_frames(latent_t: int) -> int:
    """Pixel frames F decoded from T latent frames."""
    return (latent_t - 1) * TIME_STRIDE + 1


# -- the causal cache ----------------------------------------------------------------------------------

class CausalCache:
    """What each temporal layer remembers between chunks of one encode or decode pass.

    ``tails[module]``: the last input frames a causal convolution (or a temporal downsampler) saw.
    ``started``: temporal upsamplers that have already passed the first frame through.
    One cache serves one pass over one video; a fresh pass needs a fresh cache.
    """

    def __init__(self) -> None:
        self.tails: dict[nn.Module, torch.Tensor] = {}
        self.started: set[nn.Module] = set()


# -- layers --------------------------------------------------------------------------------------------

class CausalConv3d(nn.Conv3d):
    """Conv3d padded only on the past side in time (2 * pad frames before, none after)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        pad_t, pad_h, pad_w = self.padding
        self._time_pad = 2 * pad_t
        self._space_pad = (pad_w, pad_w, pad_h, pad_h)
        self.padding = (0, 0, 0)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C', T', H', W']; with a cache, the past frames come from the last chunk."""
        past = 0
        if cache is not None and self._time_pad > 0:
            tail = cache.tails.get(self)
            if tail is not None:
                x = torch.cat([tail.to(x), x], dim=2)
                past = tail.shape[2]
            cache.tails[self] = x[:, :, -self._time_pad:].clone()
        if past == 0 and x.shape[2] == 1 and self._time_pad == self.kernel_size[0] - 1:
            return self._single_frame(x)
        x = F.pad(x, (*self._space_pad, self._time_pad - past, 0))
        return super().forward(x)

    def _single_frame(self, x: torch.Tensor) -> torch.Tensor:
        # A lone first frame meets only the kernel's last time slice (the rest sees the zero padding):
        # one 2-D convolution instead of a 3-D one over mostly zeros (3x less work for images).
        frame = F.pad(x[:, :, 0], self._space_pad)
        out = F.conv2d(frame, self.weight[:, :, -1], self.bias, self.stride[1:], 0, self.dilation[1:], self.groups)
        return out.unsqueeze(2)


class RMSNorm(nn.Module):
    """RMS norm over channels (axis 1): x / ||x|| * sqrt(C) * gamma. ``images``: 4-D input [B, C, H, W]."""

    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma.to(x)


class ResidualBlock(nn.Module):
    """Two causal 3x3x3 convolutions with RMS norm and SiLU, plus a 1x1x1 shortcut when widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        # Index 5 is Wan's Dropout (p = 0): an Identity keeps the conv at index 6, hence its key name.
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Identity(), CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        shortcut = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + shortcut


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h = x.shape[2], x.shape[3]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        q, k, v = self.to_qkv(self.norm(frames)).chunk(3, dim=1)
        q, k, v = (rearrange(a, "n c h w -> n 1 (h w) c") for a in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B*T, 1, H*W, C)
        out = self.proj(rearrange(out, "n 1 (h w) c -> n c h w", h=h))
        return x + rearrange(out, "(b t) c h w -> b c t h w", t=t)


class Resample(nn.Module):
    """2x spatial up/downsampling per frame, and for the ``*3d`` modes 2x in time as well, causally.

    Temporal downsampling keeps the first frame as it is and merges each later pair of frames with a
    stride-2 kernel-3 convolution over (previous, pair); temporal upsampling passes the first frame through
    and doubles every later frame with a causal convolution to 2C channels.
    """

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        t = x.shape[2]
        x = self.resample(rearrange(x, "b c t h w -> (b t) c h w"))
        x = rearrange(x, "(b t) c h w -> b c t h w", t=t)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        first = None
        if self not in cache.started:  # the first frame has no past to double: it passes through
            cache.started.add(self)
            first, x = x[:, :, :1], x[:, :, 1:]
            if x.shape[2] == 0:
                return first
        doubled = rearrange(self.time_conv(x, cache), "b (two c) t h w -> b c (t two) h w", two=2)
        return doubled if first is None else torch.cat([first, doubled], dim=2)

    def _downsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        tail = cache.tails.get(self)
        cache.tails[self] = x[:, :, -1:].clone()
        if tail is not None:
            return self.time_conv(torch.cat([tail.to(x), x], dim=2))
        if x.shape[2] == 1:
            return x
        return torch.cat([x[:, :, :1], self.time_conv(x)], dim=2)  # frame 0 kept, then pairs after it


def _run(layers: nn.Sequential, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, (CausalConv3d, ResidualBlock, Resample)) else layer(x)
    return x


def _head(out_dim: int, channels: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(), CausalConv3d(out_dim, channels, 3, padding=1))


def _middle(dim: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


# -- encoder and decoder ---------------------------------------------------------------------------------

class Encoder3d(nn.Module):
    """[B, 3, F, H, W] -> [B, out_channels, T, H/8, W/8]."""

    def __init__(self, config: VAEConfig, out_channels: int) -> None:
        super().__init__()
        dims = [config.dim * m for m in (1, *config.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(config.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if level != len(config.dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if config.temperal_downsample[level] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = _middle(dims[-1])
        self.head = _head(dims[-1], out_channels)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for part in (self.downsamples, self.middle, self.head):
            x = _run(part, x, cache)
        return x


class Decoder3d(nn.Module):
    """[B, z_dim, T, h, w] -> [B, 3, 4(T - 1) + 1, 8h, 8w]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        mult = config.dim_mult
        dims = [config.dim * m for m in (mult[-1], *mult[::-1])]
        temperal_upsample = config.temperal_downsample[::-1]
        self.conv1 = CausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        blocks: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if level > 0:
                in_dim //= 2  # each upsampler halves the width it hands on
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if level != len(mult) - 1:
                blocks.append(Resample(out_dim, "upsample3d" if temperal_upsample[level] else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)
        self.head = _head(dims[-1], 3)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for part in (self.middle, self.upsamples, self.head):
            x = _run(part, x, cache)
        return x


def _time_chunks(length: int, chunk: Optional[int]) -> Iterator[slice]:
    """Frame 0 alone, then ``chunk`` frames at a time (None: everything in one pass)."""
    if chunk is None:
        yield slice(0, length)
        return
    yield slice(0, 1)
    for start in range(1, length, chunk):
        yield slice(start, min(start + chunk, length))


FrameReader = Callable[[slice], torch.Tensor]  # frames of a video by index range -> [B, C, f, H, W]


def _stream(network: nn.Module, read: FrameReader, length: int, chunk: Optional[int],
            should_stop: Optional[Callable[[], bool]], what: str) -> torch.Tensor:
    """Run ``network`` over ``length`` frames chunk by chunk with one causal cache; should_stop between chunks."""
    cache, outputs = CausalCache(), []
    for part in _time_chunks(length, chunk):
        if should_stop is not None and should_stop():
            raise Interrupted(f"{what} stopped on request at frame {part.start} of {length}")
        outputs.append(network(read(part), cache))
    return torch.cat(outputs, dim=2)


class WanVAE(nn.Module):
    """The Wan 2.1 VAE. ``encoder``/``conv1``/``conv2``/``decoder`` are the checkpoint's top-level names."""

    def __init__(self, config: VAEConfig = WAN21_VAE) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder3d(config, config.z_dim * 2)
        self.conv1 = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)  # posterior mean and log-variance
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder3d(config)

    def encode(self, video: torch.Tensor, chunk_frames: Optional[int] = 4,
               should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
        """Pixels [B, 3, F, H, W] in [-1, 1], F = 4n + 1, H and W multiples of 8 -> raw latent mean [B, z, T, H/8, W/8].

        Args:
            video: the pixel video.
            chunk_frames: pixel frames per pass after the first frame (a multiple of 4; Wan uses 4);
                None encodes the whole video in one pass (same result, more memory).
            should_stop: polled between chunks; True raises Interrupted.
        """
        if video.ndim != 5:
            raise InputError(f"video of shape {tuple(video.shape)} must be [B, 3, F, H, W]")
        return self.encode_frames(lambda part: video[:, :, part], video.shape[2], chunk_frames, should_stop)

    def encode_frames(self, read: FrameReader, num_frames: int, chunk_frames: Optional[int] = 4,
                      should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
        """:meth:`encode` reading the video one chunk at a time, so a long video is never one float tensor.

        Args:
            read: ``read(frames: slice) -> [B, 3, f, H, W]`` pixels in [-1, 1] for those frames.
            num_frames: F = 4n + 1.
            chunk_frames: as :meth:`encode`.
            should_stop: polled between chunks; True raises Interrupted.
        """
        _check_frame_count(num_frames)
        if chunk_frames is not None and (chunk_frames < 4 or chunk_frames % TIME_STRIDE):
            raise InputError(f"chunk_frames={chunk_frames} must be a positive multiple of 4 (or None for one pass)")
        dtype = self.conv1.weight.dtype

        def checked(part: slice) -> torch.Tensor:
            pixels = read(part)
            _check_chunk(pixels, part)
            return pixels.to(dtype)

        out = _stream(self.encoder, checked, num_frames, chunk_frames, should_stop, "VAE encode")
        mean, _log_var = self.conv1(out).chunk(2, dim=1)
        return mean

    def decode(self, latents: torch.Tensor, chunk_latents: Optional[int] = 1,
               should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
        """Raw latents [B, z, T, h, w] -> pixels [B, 3, 4(T - 1) + 1, 8h, 8w], roughly in [-1, 1] (not clamped).

        Args:
            latents: raw (not normalised) latents.
            chunk_latents: latent frames per pass after the first (Wan: 1); None decodes in one pass.
            should_stop: polled between chunks; True raises Interrupted.
        """
        if latents.ndim != 5 or latents.shape[1] != self.config.z_dim:
            raise InputError(f"latents of shape {tuple(latents.shape)} do not fit this VAE: expected "
                             f"[B, {self.config.z_dim}, T, H, W]")
        if chunk_latents is not None and chunk_latents < 1:
            raise InputError(f"chunk_latents={chunk_latents} must be at least 1 (or None for one pass)")
        x = self.conv2(latents.to(self.conv2.weight.dtype))
        return _stream(self.decoder, lambda part: x[:, :, part], x.shape[2], chunk_latents, should_stop, "VAE decode")


def _check_frame_count(frames: int) -> None:
    if frames < 1 or (frames - 1) % TIME_STRIDE:
        raise InputError(f"{frames} frames do not fit the causal VAE: the count must be 4n + 1 "
                         f"(e.g. {4 * ((frames - 1) // 4) + 1} or {4 * ((frames - 1) // 4 + 1) + 1})")


def _check_chunk(pixels: torch.Tensor, part: slice) -> None:
    if pixels.ndim != 5 or pixels.shape[1] != 3 or pixels.shape[2] != part.stop - part.start:
        raise InputError(f"pixels for frames {part.start}-{part.stop - 1} have shape {tuple(pixels.shape)}; "
                         f"expected [B, 3, {part.stop - part.start}, H, W]")
    height, width = pixels.shape[3:]
    if height % SPACE_STRIDE or width % SPACE_STRIDE:
        raise InputError(f"frame size {height}x{width} must be a multiple of 8 on both sides: crop or resize")


def build_vae(config: VAEConfig = WAN21_VAE, device: Optional[torch.device] = None) -> WanVAE:
    """A WanVAE with random (PyTorch default) weights; ``device="meta"`` allocates nothing, for loading."""
    with torch.device(device or "cpu"):
        return WanVAE(config)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` cells covering ``length`` with at least ``overlap`` shared cells."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(size: int, fade_in: int, fade_out: int, device: torch.device) -> torch.Tensor:
    """Weights along one axis of a tile: linear ramps over the shared edges, 1 in between (never 0)."""
    weight = torch.ones(size, device=device)
    if fade_in:
        weight[:fade_in] = (torch.arange(fade_in, device=device) + 0.5) / fade_in
    if fade_out:
        weight[size - fade_out:] = torch.minimum(weight[size - fade_out:],
                                                 (torch.arange(fade_out, 0, -1, device=device) - 0.5) / fade_out)
    return weight


def _axis_weights(starts: Sequence[int], tile: int, scale: int, device: torch.device) -> list[torch.Tensor]:
    """Per tile, its pixel weights along one axis; each ramp spans exactly the overlap with its neighbour."""
    weights = []
    for i, start in enumerate(starts):
        fade_in = (starts[i - 1] + tile - start) * scale if i > 0 else 0
        fade_out = (start + tile - starts[i + 1]) * scale if i + 1 < len(starts) else 0
        weights.append(_ramp(tile * scale, fade_in, fade_out, device))
    return weights


def decode_tiled(vae: WanVAE, latents: torch.Tensor, tile: tuple[int, int] = (256, 256), overlap: int = 64,
                 chunk_latents: Optional[int] = 1, should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
    """Decode in overlapping spatial tiles, blended with linear ramps over each overlap, to bound memory.

    Each tile is decoded over all frames (streamed in time as :meth:`WanVAE.decode`); where tiles
    overlap, their pixels are averaged with weights that fall linearly to the tile's edge, so the seam is
    a smooth crossfade. The result is close to, not identical with, the whole-frame decode: the decoder's
    mid-block attention spans the whole frame and its convolutions see past the tile edge.

    Args:
        vae: the VAE.
        latents: raw latents [B, z, T, h, w].
        tile: (H, W) of a tile in pixels, overlap included, multiples of 8.
        overlap: pixels shared by neighbouring tiles, a multiple of 8, smaller than the tile.
        chunk_latents: as :meth:`WanVAE.decode`.
        should_stop: polled between chunks of every tile; True raises Interrupted.
    """
    tile_h, tile_w = (side // SPACE_STRIDE for side in tile)
    lap = overlap // SPACE_STRIDE
    if any(side % SPACE_STRIDE for side in tile) or overlap % SPACE_STRIDE or not 0 <= lap < min(tile_h, tile_w):
        raise InputError(f"tile={tile} px with overlap={overlap} px: both must be multiples of 8 and the overlap "
                         "smaller than the tile (e.g. tile=(256, 256), overlap=64)")
    height, width = latents.shape[3:]
    tile_h, tile_w = min(tile_h, height), min(tile_w, width)
    stop = {} if should_stop is None else {"should_stop": should_stop}  # any object with decode() tiles
    rows, cols = tile_starts(height, tile_h, lap), tile_starts(width, tile_w, lap)
    if len(rows) * len(cols) == 1:
        return vae.decode(latents, chunk_latents, **stop)
    out, total = None, None
    row_w = _axis_weights(rows, tile_h, SPACE_STRIDE, latents.device)
    col_w = _axis_weights(cols, tile_w, SPACE_STRIDE, latents.device)
    for r, top in enumerate(rows):
        for c, left in enumerate(cols):
            pixels = vae.decode(latents[:, :, :, top:top + tile_h, left:left + tile_w], chunk_latents, **stop)
            if out is None:  # float32 sums: a bf16 VAE's tiles would lose the crossfade's small weights
                out = torch.zeros((*pixels.shape[:3], height * SPACE_STRIDE, width * SPACE_STRIDE),
                                  device=pixels.device, dtype=torch.float32)
                total = torch.zeros(out.shape[3:], device=out.device)
            weight = row_w[r][:, None] * col_w[c][None, :]  # (tile_h * 8, tile_w * 8)
            y, x = top * SPACE_STRIDE, left * SPACE_STRIDE
            out[..., y:y + weight.shape[0], x:x + weight.shape[1]] += pixels.float() * weight
            total[y:y + weight.shape[0], x:x + weight.shape[1]] += weight
    return (out / total).to(pixels.dtype)
