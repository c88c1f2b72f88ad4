"""LoRA on the blocks' Linears: a fresh LoRA is a no-op, folding it into the weights equals the hooked
model, and ComfyUI's own LoRA loader reads the file the trainer writes."""

from __future__ import annotations

import subprocess
import sys

import torch
from safetensors.torch import save_file

from directanimator_core.models.config import BackboneConfig
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.train.lora import LoRA
from harness.comfyui import comfyui_dir
from harness.paths import REPO

CONFIG = BackboneConfig(dim=32, ffn_dim=64, num_layers=2, num_heads=2, text_dim=16)
TARGETS = ("self_attn.q", "cross_attn.o", "ffn.0")


def _model_and_inputs():
    generator = torch.Generator().manual_seed(0)
    model = init_weights(build_backbone(CONFIG, torch.device("cpu")), generator)
    torch.nn.init.normal_(model.head.head.weight, std=0.02, generator=generator)
    x = torch.randn(1, 16, 2, 4, 4, generator=generator)
    return model, (x, torch.tensor([500.0]), torch.randn(1, 3, 16, generator=generator))


def test_fresh_lora_is_a_no_op_and_merging_equals_the_hooks() -> None:
    model, inputs = _model_and_inputs()
    base = model(*inputs)
    torch.manual_seed(0)
    lora = LoRA(model.blocks, TARGETS, rank=4, alpha=8.0).attach()
    assert torch.equal(model(*inputs), base)  # B = 0
    with torch.no_grad():
        for pair in lora.pairs.values():
            pair.lora_B.normal_(0, 0.05)
    hooked = model(*inputs)
    assert not torch.allclose(hooked, base, atol=1e-4)
    lora.merge()
    torch.testing.assert_close(model(*inputs), hooked, rtol=1e-4, atol=1e-5)


COMFY_READS_LORA = r"""
import sys
sys.path.insert(0, sys.argv[1]); sys.argv[1:] = ["--cpu"]
import comfy.options; comfy.options.enable_args_parsing()
import comfy.lora
from safetensors.torch import load_file
lora = load_file(sys.argv[0].replace("check.py", "lora.safetensors"))
keys = [line.strip() for line in open(sys.argv[0].replace("check.py", "keys.txt"))]
key_map = {"diffusion_model." + k[:-len(".weight")]: "diffusion_model." + k for k in keys if k.endswith(".weight")}
patches = comfy.lora.load_lora(lora, key_map)
print(sorted(patches))
print(sorted({type(p).__name__ for p in patches.values()}))
"""


def test_comfyui_reads_the_lora_file(tmp_path) -> None:
    model, _ = _model_and_inputs()
    lora = LoRA(model.blocks, TARGETS, rank=4, alpha=8.0)
    save_file(lora.to_file_tensors(), str(tmp_path / "lora.safetensors"), metadata=lora.file_metadata())
    (tmp_path / "keys.txt").write_text("\n".join(model.state_dict()))
    (tmp_path / "check.py").write_text(COMFY_READS_LORA)
    result = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(comfyui_dir())], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    patched, kinds = result.stdout.strip().splitlines()[-2:]
    expected = sorted(f"diffusion_model.blocks.{i}.{t}.weight" for i in range(2) for t in TARGETS)
    assert patched == str(expected) and kinds == "['LoRAAdapter']"
    assert "lora key not loaded" not in result.stdout + result.stderr


def test_a_lora_for_another_backbone_is_refused(tmp_path) -> None:
    import pytest

    from directanimator_core.errors import CheckpointError
    from directanimator_core.train.lora import build_lora

    model, _ = _model_and_inputs()
    lora = LoRA(model.blocks, TARGETS, rank=4, alpha=8.0)
    save_file(lora.to_file_tensors(), str(tmp_path / "lora.safetensors"), metadata=lora.file_metadata())
    wider = build_backbone(BackboneConfig(dim=64, ffn_dim=64, num_layers=2, num_heads=2, text_dim=16),
                           torch.device("cpu"))
    with pytest.raises(CheckpointError, match="this model needs \\(4, 64\\)"):
        build_lora(wider.blocks, 4, 8.0, TARGETS, tmp_path / "lora.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not 'directanimator.lora'"):
        build_lora(model.blocks, 4, 8.0, TARGETS, tmp_path / "other.safetensors")
