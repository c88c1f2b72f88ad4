"""Offloading the real backbone: the Wan DiT's hints are honoured and streaming it changes no output bit."""

from __future__ import annotations

from dataclasses import replace

import torch

from directanimator_core.models.registry import get_preset
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.offload.blockswap import BlockSwap, InlineTransfer
from directanimator_core.offload.lowbit import store_low_bit
from directanimator_core.offload.plan import keep_fp32_names, measure_model, plan_memory

CONFIG = replace(get_preset("tiny"), num_layers=4)


def _model() -> torch.nn.Module:
    return init_weights(build_backbone(CONFIG, torch.device("cpu")), torch.Generator().manual_seed(0)).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 16, 2, 4, 6, generator=g), torch.tensor([500.0]),
            torch.randn(1, 7, CONFIG.text_dim, generator=g))


def test_meta_sizes_equal_real_sizes_in_every_storage_dtype() -> None:
    meta = build_backbone(CONFIG, torch.device("meta"))
    real = _model()
    for storage in (None, torch.float8_e4m3fn):
        assert measure_model(meta, storage) == measure_model(real, storage)
    predicted = measure_model(meta, torch.float8_e5m2)
    store_low_bit(real, torch.float8_e5m2, keep=keep_fp32_names(real))
    assert measure_model(real) == predicted
    assert real.time_projection[1].weight.dtype == torch.float32  # a keep-in-fp32 module stays
    assert real.blocks[0].ffn[0].weight.dtype == torch.float8_e5m2


def test_streamed_wan_is_bit_identical_to_resident_in_fp32_and_fp8() -> None:
    for storage in (None, torch.float8_e4m3fn):
        model = _model()
        if storage is not None:
            store_low_bit(model, storage, keep=keep_fp32_names(model))
        x, t, context = _inputs()
        with torch.no_grad():
            reference = model(x, t, context)
            sizes = measure_model(model)
            plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 2**30, reserve_bytes=0, prefetch=1,
                               min_streamed=3)
            with BlockSwap(model, plan, InlineTransfer(torch.device("cpu"))):
                outputs = [model(x, t, context) for _ in range(2)]
        assert all(torch.equal(out, reference) for out in outputs)


def test_streamed_cuefusion_model_with_active_cues_is_bit_identical() -> None:
    from harness.wan_dit import randomise, run_ours, tiny_inputs

    from directanimator_core.models.conditioning import CueLatents
    from directanimator_core.models.config import CueFusionConfig
    from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT

    torch.manual_seed(0)
    backbone = randomise(build_backbone(get_preset("tiny-i2v")), 0)
    adapter = randomise(CueFusion(backbone.config, CueFusionConfig(same2x_depth=1)), 3)  # gates open: cues act
    model = CueFusionDiT(backbone, adapter).eval()
    case = tiny_inputs(backbone.config)
    g = torch.Generator().manual_seed(5)
    grid = case["x"].shape[2:]
    cues = CueLatents(pose=torch.randn((1, 16, *grid), generator=g), face=torch.randn((1, 16, *grid), generator=g),
                      pose_mask=torch.rand((1, 4, *grid), generator=g), face_mask=torch.rand((1, 4, *grid), generator=g))
    reference = run_ours(model, case, cues=cues)
    assert not torch.equal(reference, run_ours(model, case))  # the cues change the output
    sizes = measure_model(model)
    assert sizes.rest_bytes > measure_model(backbone).rest_bytes  # the adapter stays resident with the rest
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 2**30, reserve_bytes=0, prefetch=1, min_streamed=1)
    with BlockSwap(model, plan, InlineTransfer(torch.device("cpu"))):
        assert torch.equal(run_ours(model, case, cues=cues), reference)
