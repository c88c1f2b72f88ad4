"""The Wan 2.1 VAE: equivalence with ComfyUI's own ``comfy/ldm/wan/vae.py`` on the same random weights,
both key layouts, causal chunking, tiled decoding, and refusing files that are not a Wan 2.1 VAE.

ComfyUI is imported in a subprocess: its ``model_management`` picks a device at import and needs
``--cpu`` on a machine without a GPU, which must not leak into this test process.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.comfyui import comfyui_dir

from directanimator_core.errors import CheckpointError, InputError, Interrupted
from directanimator_core.models.vae import (
    TINY_VAE, WAN21_LATENT_MEAN, WAN21_VAE, VAEConfig, WanVAE, build_vae, decode_tiled, denormalize_latents,
    normalize_latents, tile_starts)
from directanimator_core.models.checkpoints.vae import (
    diffusers_key_to_wan, load_wan_vae, to_native)

COMFY_RUNNER = r"""
import json, sys
comfy_dir, weights, inputs, outputs, shapes_out = sys.argv[1:6]
sys.path.insert(0, comfy_dir)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import load_file, save_file
from comfy.ldm.wan.vae import WanVAE

def build(dim):
    return WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                  temperal_downsample=[False, True, True], dropout=0.0)

sd = load_file(weights)
model = build(sd["decoder.head.0.gamma"].shape[0])
model.load_state_dict(sd, strict=True)
model.eval()
data = load_file(inputs)
with torch.no_grad():
    out = {"latents": model.encode(data["video"]).contiguous(), "pixels": model.decode(data["latents"]).contiguous()}
save_file(out, outputs)
with torch.device("meta"):
    real = build(96)
json.dump({k: list(v.shape) for k, v in real.state_dict().items()}, open(shapes_out, "w"))
"""


def randomised(model: WanVAE, seed: int = 0) -> WanVAE:
    """Every parameter random, RMS-norm gains included (they are ones at init and would hide a misuse)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.copy_(1 + 0.2 * torch.randn(param.shape, generator=generator))
            elif name.endswith("bias"):
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[WanVAE, Path]:
    torch.manual_seed(0)
    model = randomised(build_vae(TINY_VAE))
    path = tmp_path_factory.mktemp("vae") / "wan_2.1_vae_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


VIDEO = torch.rand((1, 3, 9, 32, 40), generator=torch.Generator().manual_seed(1)) * 2 - 1  # F = 4*2 + 1
LATENTS = torch.randn((1, 16, 3, 4, 5), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def comfy_outputs(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """ComfyUI's WanVAE on the same weights and inputs, plus its real-size key shapes."""
    _, weights = tiny
    work = tmp_path_factory.mktemp("comfy")
    inputs, outputs, shapes = work / "in.safetensors", work / "out.safetensors", work / "shapes.json"
    save_file({"video": VIDEO.contiguous(), "latents": LATENTS.contiguous()}, str(inputs))
    result = subprocess.run([sys.executable, "-c", COMFY_RUNNER, str(comfyui_dir()), str(weights), str(inputs),
                             str(outputs), str(shapes)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {**load_file(str(outputs)), "shapes": json.loads(shapes.read_text())}


# -- equivalence with ComfyUI ----------------------------------------------------------------------------

def test_encode_matches_comfyui(tiny, comfy_outputs) -> None:
    model, _ = tiny
    with torch.no_grad():
        ours = model.encode(VIDEO)
    assert ours.shape == (1, 16, 3, 4, 5)
    torch.testing.assert_close(ours, comfy_outputs["latents"], atol=1e-4, rtol=1e-4)


def test_decode_matches_comfyui(tiny, comfy_outputs) -> None:
    model, _ = tiny
    with torch.no_grad():
        ours = model.decode(LATENTS)
    assert ours.shape == (1, 3, 9, 32, 40)
    torch.testing.assert_close(ours, comfy_outputs["pixels"], atol=1e-4, rtol=1e-4)


def test_real_config_has_comfyuis_keys_and_shapes(comfy_outputs) -> None:
    ours = {k: list(v.shape) for k, v in build_vae(WAN21_VAE, device=torch.device("meta")).state_dict().items()}
    assert ours == comfy_outputs["shapes"]
    assert len(ours) == 194  # guards against both sides silently shrinking


def test_meta_construction_allocates_nothing_and_loading_fills_everything(tiny) -> None:
    meta = build_vae(WAN21_VAE, device=torch.device("meta"))
    assert all(p.is_meta for p in meta.parameters())
    model, report = load_wan_vae(tiny[1])
    assert report.ok and report.layout == "wan"
    assert not any(p.is_meta for p in model.parameters())
    for key, value in tiny[0].state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# -- the diffusers layout ----------------------------------------------------------------------------------

def wan_key_to_diffusers(key: str) -> str:
    """Wan -> AutoencoderKLWan names, as diffusers' scripts/convert_wan_to_diffusers.py ``convert_vae`` writes
    them (num_res_blocks = 2: a decoder up block is 3 residual blocks then an upsampler). Written
    independently of the loader's table, so the round trip checks one against the other."""
    parts = key.split(".")
    if parts[0] in ("conv1", "conv2"):
        return {"conv1": "quant_conv", "conv2": "post_quant_conv"}[parts[0]] + "." + parts[1]
    side, block, rest = parts[0], parts[1], parts[2:]
    if block == "conv1":
        return f"{side}.conv_in.{rest[0]}"
    if block == "head":
        return f"{side}.{'norm_out' if rest[0] == '0' else 'conv_out'}.{rest[-1]}"
    index, rest = int(rest[0]), rest[1:]
    if block == "middle":
        prefix = f"{side}.mid_block.attentions.0" if index == 1 else f"{side}.mid_block.resnets.{index // 2}"
    elif block == "downsamples":
        prefix = f"{side}.down_blocks.{index}"
    else:
        up, position = divmod(index, 4)
        prefix = f"decoder.up_blocks.{up}." + ("upsamplers.0" if position == 3 else f"resnets.{position}")
    leaf = ".".join(rest)
    for old, new in (("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
                     ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut.")):
        if leaf.startswith(old):
            leaf = new + leaf[len(old):]
    return f"{prefix}.{leaf}"


def test_diffusers_layout_loads_the_identical_model(tiny, tmp_path: Path) -> None:
    model, _ = tiny
    diffusers_sd = {wan_key_to_diffusers(k): v.contiguous() for k, v in model.state_dict().items()}
    # key names diffusers' AutoencoderKLWan really has (its module tree), not just our own inverse
    for known in ("quant_conv.weight", "post_quant_conv.bias", "encoder.conv_in.weight", "encoder.norm_out.gamma",
                  "encoder.down_blocks.2.resample.1.weight", "encoder.down_blocks.5.time_conv.weight",
                  "encoder.down_blocks.3.conv_shortcut.weight", "encoder.mid_block.attentions.0.to_qkv.weight",
                  "decoder.mid_block.resnets.1.norm2.gamma", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
                  "decoder.up_blocks.0.upsamplers.0.time_conv.weight", "decoder.up_blocks.2.upsamplers.0.resample.1.bias",
                  "decoder.up_blocks.3.resnets.2.conv2.weight", "decoder.conv_out.weight"):
        assert known in diffusers_sd, known
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(diffusers_sd, str(path))
    loaded, report = load_wan_vae(path)
    assert report.layout == "diffusers" and report.ok
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(LATENTS[:, :, :2]), model.decode(LATENTS[:, :, :2]), atol=0, rtol=0)


def test_equals_diffusers_autoencoder_kl_wan_when_installed() -> None:
    """diffusers' own AutoencoderKLWan, its random state dict renamed by our table, gives our outputs.
    diffusers is not a test dependency: run with it on PYTHONPATH (e.g. pip install --target DIR diffusers)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference = diffusers.AutoencoderKLWan(base_dim=8).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("gamma"):
                param.copy_(1 + 0.2 * torch.randn_like(param))
    native, layout = to_native(reference.state_dict())
    ours = build_vae(TINY_VAE, device=torch.device("meta"))
    ours.load_state_dict(native, strict=True, assign=True)
    with torch.no_grad():
        latents = reference.encode(VIDEO).latent_dist.mode()
        torch.testing.assert_close(ours.eval().encode(VIDEO), latents, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.decode(latents).clamp(-1, 1), reference.decode(latents).sample,
                                   atol=1e-4, rtol=1e-4)


def test_wan_keys_pass_through_the_diffusers_renamer_unchanged() -> None:
    for key in build_vae(TINY_VAE, device=torch.device("meta")).state_dict():
        assert diffusers_key_to_wan(key) == key


def test_bundled_prefix_is_stripped(tiny) -> None:
    prefixed = {f"first_stage_model.{k}": v for k, v in tiny[0].state_dict().items()}
    native, layout = to_native(prefixed)
    assert layout == "wan" and native.keys() == tiny[0].state_dict().keys()


# -- refusing what is not a Wan 2.1 VAE ----------------------------------------------------------------------

def test_a_dit_checkpoint_is_refused_naming_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "wan2.1_t2v_1.3B.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(4, 4), "head.head.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(CheckpointError, match=r"wan2.1_t2v_1.3B.safetensors is a Wan DiT diffusion model \(found "
                                              r"'blocks.0.self_attn.q.weight'\), not a Wan 2.1 VAE \(which has "
                                              r"'decoder.middle.0.residual.0.gamma'\): pick the VAE file"):
        load_wan_vae(path)
    other = tmp_path / "mystery.safetensors"
    save_file({"net.layer.weight": torch.zeros(4, 4)}, str(other))
    with pytest.raises(CheckpointError, match=r"mystery.safetensors is not a Wan 2.1 VAE: expected a key "
                                              r"'decoder.middle.0.residual.0.gamma'.*found 1 keys like 'net.layer.weight'"):
        load_wan_vae(other)


def test_the_wan22_vae_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "wan2.2_vae.safetensors"
    save_file({"decoder.upsamples.0.upsamples.0.residual.2.weight": torch.zeros(1),
               "decoder.middle.0.residual.0.gamma": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="Wan 2.2 VAE .*48 latent channels"):
        load_wan_vae(path)


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "Wan2.1_VAE.pth"
    path.write_bytes(pickle.dumps(Trap()))
    with pytest.raises(CheckpointError, match="not a readable safetensors file.*never loaded"):
        load_wan_vae(path)
    assert not marker.exists()


def test_a_truncated_file_is_refused(tiny, tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny[1].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cut.safetensors is not a readable safetensors file"):
        load_wan_vae(path)


def test_missing_and_misshapen_tensors_are_reported(tiny, tmp_path: Path) -> None:
    sd = dict(tiny[0].state_dict())
    del sd["decoder.upsamples.4.shortcut.weight"]
    sd["encoder.conv1.bias"] = torch.zeros(3)
    path = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match=r"missing 1 \(e.g. 'decoder.upsamples.4.shortcut.weight'\).*"
                                              r"wrong shape 1 \(e.g. 'encoder.conv1.bias'\)"):
        load_wan_vae(path)


# -- causal chunking -----------------------------------------------------------------------------------------

def test_chunked_encode_equals_one_pass(tiny) -> None:
    model, _ = tiny
    with torch.no_grad():
        wan_chunks = model.encode(VIDEO, chunk_frames=4)
        whole = model.encode(VIDEO, chunk_frames=None)
        eights = model.encode(VIDEO, chunk_frames=8)
    torch.testing.assert_close(wan_chunks, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eights, whole, atol=1e-5, rtol=1e-5)


def test_encoding_from_a_frame_reader_reads_chunks_only(tiny) -> None:
    model, _ = tiny
    asked: list[tuple[int, int]] = []

    def read(part: slice) -> torch.Tensor:
        asked.append((part.start, part.stop))
        return VIDEO[:, :, part]

    with torch.no_grad():
        streamed = model.encode_frames(read, VIDEO.shape[2])
        torch.testing.assert_close(streamed, model.encode(VIDEO), atol=0, rtol=0)
    assert asked == [(0, 1), (1, 5), (5, 9)]  # Wan's chunks: never the whole video at once
    with pytest.raises(InputError, match="frames 1-4 have shape \\(1, 3, 3, 32, 40\\); expected \\[B, 3, 4, H, W\\]"):
        model.encode_frames(lambda part: VIDEO[:, :, part][:, :, :3], 9)


def test_chunked_decode_equals_one_pass(tiny) -> None:
    model, _ = tiny
    with torch.no_grad():
        torch.testing.assert_close(model.decode(LATENTS, 1), model.decode(LATENTS, None), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.decode(LATENTS, 2), model.decode(LATENTS, None), atol=1e-5, rtol=1e-5)


def test_the_model_is_causal(tiny) -> None:
    model, _ = tiny
    changed = VIDEO.clone()
    changed[:, :, 5:] = 0  # frames 5.. belong to latent frame 2 only
    with torch.no_grad():
        a, b = model.encode(VIDEO), model.encode(changed)
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2], atol=0, rtol=0)
    assert not torch.allclose(a[:, :, 2], b[:, :, 2])


def test_should_stop_is_honoured_between_chunks(tiny) -> None:
    polls = []

    def stop_on_second_poll() -> bool:
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(Interrupted, match="VAE decode stopped on request at frame 1 of 3"):
        tiny[0].decode(LATENTS, should_stop=stop_on_second_poll)
    polls.clear()
    with pytest.raises(Interrupted, match="VAE encode stopped on request at frame 1 of 9"):
        tiny[0].encode(VIDEO, should_stop=stop_on_second_poll)


def test_bad_frame_counts_and_sizes_are_refused(tiny) -> None:
    with pytest.raises(InputError, match="8 frames .* 4n \\+ 1 \\(e.g. 5 or 9\\)"):
        tiny[0].encode(VIDEO[:, :, :8])
    with pytest.raises(InputError, match="30x40 must be a multiple of 8"):
        tiny[0].encode(VIDEO[:, :, :, :30])


def test_latent_normalisation_round_trips() -> None:
    z = torch.randn(2, 16, 3, 4, 4)
    torch.testing.assert_close(denormalize_latents(normalize_latents(z)), z)
    mean = torch.tensor(WAN21_LATENT_MEAN).view(1, 16, 1, 1, 1).expand(1, 16, 1, 2, 2)
    assert normalize_latents(mean).abs().max() < 1e-6


# -- tiled decoding --------------------------------------------------------------------------------------------

class LocalDecoder:
    """A stand-in decoder whose output pixel depends only on its own latent pixel: tiles agree exactly where
    they overlap, so any difference from the whole-frame decode is the blending's own error."""

    def __init__(self) -> None:
        self.weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))

    def decode(self, latents: torch.Tensor, chunk_latents=1, should_stop=None) -> torch.Tensor:
        pixels = torch.einsum("oc,bcthw->bothw", self.weight, latents)
        return pixels.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)


def test_tiles_cover_the_frame_with_the_overlap() -> None:
    assert tile_starts(20, 8, 4) == [0, 4, 8, 12]
    assert tile_starts(21, 8, 4) == [0, 4, 8, 12, 13]
    assert tile_starts(6, 8, 4) == [0]


@pytest.mark.parametrize(("tile", "overlap"), [((64, 64), 32), ((48, 80), 16), ((64, 96), 8)])
def test_blending_is_exact_where_tiles_agree(tile, overlap) -> None:
    latents = torch.randn(1, 16, 2, 13, 21)
    decoder = LocalDecoder()
    torch.testing.assert_close(decode_tiled(decoder, latents, tile, overlap), decoder.decode(latents),
                               atol=1e-5, rtol=1e-5)


def hard_cut(model, latents: torch.Tensor, tile_w: int, overlap: int) -> torch.Tensor:
    """Two tiles side by side joined at the middle of their overlap, with no blending: a visible seam."""
    lt, lap = tile_w // 8, overlap // 8
    left = model.decode(latents[..., :lt])
    right = model.decode(latents[..., lt - lap:])
    cut = (lt - lap // 2) * 8
    return torch.cat([left[..., :cut], right[..., cut - (lt - lap) * 8:]], dim=-1)


def test_tiled_decode_is_close_to_whole_and_has_no_seam(tiny) -> None:
    model, _ = tiny
    # a smooth latent, as real latents are; two tiles across the width (latent columns 0-6 and 3-9)
    latents = torch.nn.functional.interpolate(torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(4)),
                                              size=(2, 6, 10), mode="trilinear")
    tile, overlap = (48, 56), 32
    with torch.no_grad():
        whole = model.decode(latents)
        tiled = decode_tiled(model, latents, tile, overlap)
        cut = hard_cut(model, latents, tile[1], overlap)
    assert tiled.shape == whole.shape
    # Random weights see past a whole tile (receptive field ~17 latent pixels, and the mid-block attention
    # spans the frame), so every tile differs from the whole decode everywhere; exactness of the blend
    # itself is test_blending_is_exact_where_tiles_agree. Here: blending adds no error and no seam.
    assert (tiled - whole).abs().mean() <= (cut - whole).abs().mean()
    seam = slice(tile[1] - overlap - 4, tile[1] + 4)  # the overlap, pixels 24-56, and a margin
    assert seam_spike(tiled, whole, seam) < 1.5
    assert seam_spike(cut, whole, seam) > 1.5  # the check can fail: an unblended join shows a jump


def seam_spike(image: torch.Tensor, whole: torch.Tensor, columns: slice) -> float:
    """Largest column-to-column jump of the error field (image - whole), each over its 6 neighbours' mean.

    A seam is a jump at one column that its neighbours do not share; a smooth crossfade has none.
    """
    error = image - whole
    jumps = (error[..., 1:] - error[..., :-1]).abs().mean(dim=(0, 1, 2, 3))  # one per column
    ratios = [jumps[c] / torch.cat([jumps[c - 3:c], jumps[c + 1:c + 4]]).mean()
              for c in range(columns.start, columns.stop)]
    return max(ratios).item()


def test_bad_tiles_are_refused(tiny) -> None:
    with pytest.raises(InputError, match="tile=\\(60, 64\\) px with overlap=16"):
        decode_tiled(tiny[0], LATENTS, (60, 64), 16)
    with pytest.raises(InputError, match="tile=\\(64, 68\\) px"):
        decode_tiled(tiny[0], LATENTS, (64, 68), 16)
    with pytest.raises(InputError, match="overlap smaller than the tile"):
        decode_tiled(tiny[0], LATENTS, (64, 64), 64)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, (1, 2, 2), (1, 0, 0)), (1, 1, 0)])
def test_a_lone_first_frame_takes_the_2d_path_with_the_3d_result(kernel, stride, padding) -> None:
    from directanimator_core.models.vae import CausalConv3d

    torch.manual_seed(0)
    conv = CausalConv3d(5, 7, kernel, stride=stride, padding=padding)
    frame = torch.randn(2, 5, 1, 9, 11)
    pad_t = conv._time_pad
    full = torch.nn.functional.conv3d(torch.nn.functional.pad(frame, (*conv._space_pad, pad_t, 0)), conv.weight,
                                      conv.bias, conv.stride)
    torch.testing.assert_close(conv(frame), full, atol=1e-5, rtol=1e-5)
