"""load_animator: base + adapter or one merged file, weight dtypes, refusals before loading, placement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from directanimator_core.pipeline.loaded_model import check_model_files, compute_dtype_for, load_animator, placement, placement_line
from directanimator_core.errors import CheckpointError
from directanimator_core.models.checkpoints.adapter import save_adapter, save_merged
from directanimator_core.models.config import BackboneConfig, CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.wan_dit import build_backbone, init_weights

TINY = BackboneConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=1, in_dim=36, out_dim=16, text_dim=64)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("animator")
    generator = torch.Generator().manual_seed(0)
    backbone = init_weights(build_backbone(TINY, device=torch.device("cpu")), generator)
    adapter = CueFusion(TINY, CueFusionConfig(same2x_depth=1)).init_weights(generator)
    paths = {"base": folder / "wan.safetensors", "adapter": folder / "adapter.safetensors",
             "merged": folder / "merged.safetensors", "bf16": folder / "wan_bf16.safetensors"}
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in backbone.state_dict().items()},
              str(paths["base"]))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in backbone.state_dict().items()}, str(paths["bf16"]))
    save_adapter(adapter, paths["adapter"])
    save_merged(CueFusionDiT(backbone, adapter), paths["merged"])
    return paths


def test_base_and_adapter_or_merged_load_the_same_model(files) -> None:
    separate = load_animator(files["base"], files["adapter"], device=torch.device("cpu"))
    merged = load_animator(files["merged"], None, device=torch.device("cpu"))
    assert separate.compute_dtype == torch.float32  # auto: as stored
    a, b = separate.model.state_dict(), merged.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weight_dtypes(files) -> None:
    """The weights keep the file's (or the chosen) dtype; a CPU computes them in fp32 (policy.matmul_dtype)."""
    bf16 = load_animator(files["bf16"], files["adapter"], device=torch.device("cpu"))
    assert bf16.model.backbone.blocks[0].ffn[0].weight.dtype == torch.bfloat16
    assert bf16.compute_dtype == bf16.model.backbone.compute_dtype == torch.float32
    fp8 = load_animator(files["base"], files["adapter"], torch.float8_e4m3fn, device=torch.device("cpu"))
    assert fp8.compute_dtype == torch.float32
    assert fp8.model.backbone.blocks[0].ffn[0].weight.dtype == torch.float8_e4m3fn
    assert compute_dtype_for(None, torch.bfloat16) == torch.bfloat16  # what an accelerator computes it in
    assert compute_dtype_for(torch.float8_e4m3fn, torch.float32) == torch.bfloat16
    half = load_animator(files["base"], files["adapter"], torch.float16, device=torch.device("cpu"))
    assert half.model.backbone.blocks[0].ffn[0].weight.dtype == torch.float16


def test_refusals_name_the_fix(files, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="plain Wan checkpoint with no DirectAnimator adapter in it: pick"):
        check_model_files(files["base"], None)
    with pytest.raises(CheckpointError, match="holds no DirectAnimator adapter tensors"):
        check_model_files(files["base"], files["base"])
    with pytest.raises(CheckpointError, match="does not exist: put it in the folder"):
        check_model_files(tmp_path / "missing.safetensors", files["adapter"])


def test_placement_on_the_cpu_keeps_every_block_resident(files) -> None:
    animator = load_animator(files["base"], files["adapter"], device=torch.device("cpu"))
    plan = placement(animator, 81, 480, 832)
    assert plan.streamed == () and plan.resident == (0, 1)
    line = placement_line(animator, plan, 81, 480, 832)
    assert "\n" not in line and "2 blocks resident, 0 streamed" in line and "predicted peak" in line


def test_nan_weights_are_refused_at_load_naming_the_file_and_tensor(files, tmp_path) -> None:
    from safetensors.torch import load_file

    from directanimator_core.errors import NumericError
    state = load_file(str(files["base"]))
    key = "model.diffusion_model.blocks.1.ffn.2.weight"
    state[key][3, 5] = float("nan")
    bad = tmp_path / "diverged.safetensors"
    save_file(state, str(bad))
    with pytest.raises(NumericError, match=r"^diverged.safetensors holds NaN or infinite values \(first in "
                                           r"'backbone.blocks.1.ffn.2.weight'\)"):
        load_animator(bad, files["adapter"], device=torch.device("cpu"))


def test_a_bf16_file_on_the_cpu_computes_in_fp32_on_its_bf16_weights(files) -> None:
    """Same output as the fp32 model holding the bf16-rounded weights: only the storage is 16-bit."""
    from directanimator_core.models.conditioning import Conditioning

    bf16 = load_animator(files["bf16"], files["adapter"], device=torch.device("cpu")).model.backbone
    rounded = load_animator(files["base"], files["adapter"], device=torch.device("cpu")).model.backbone
    g = torch.Generator().manual_seed(3)
    head = torch.randn(bf16.head.head.weight.shape, generator=g) / TINY.dim ** 0.5  # Wan zero-inits it
    with torch.no_grad():
        for name, param in rounded.named_parameters():
            param.copy_(bf16.get_parameter(name).float())  # the file's bf16 values (kept fp32 where Wan keeps it)
        bf16.head.head.weight.copy_(head)
        rounded.head.head.weight.copy_(head)
    x = torch.randn(1, TINY.out_dim, 2, 4, 4, generator=g)
    context = torch.randn(1, 3, TINY.text_dim, generator=g)
    image = torch.randn(1, TINY.in_dim - TINY.out_dim, 2, 4, 4, generator=g)
    clip = torch.randn(1, 4, TINY.image_dim, generator=g) if TINY.has_image_branch else None
    cond = Conditioning(image=image, clip_fea=clip)
    with torch.no_grad():
        expected = rounded(x, torch.tensor([400.0]), context, cond)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(bf16(x, torch.tensor([400.0]), context, cond), expected, atol=1e-5, rtol=1e-5)
