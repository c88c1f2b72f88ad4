"""fp8 weight storage: round trips within the format's precision, upcast per layer, plans its own bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from directanimator_core.errors import InputError
from directanimator_core.models.layers import CastLinear
from directanimator_core.offload.blockswap import BlockSwap, InlineTransfer
from directanimator_core.offload.lowbit import quantize_fp8, store_low_bit
from directanimator_core.offload.plan import measure_model, plan_memory

# mantissa bits and the smallest subnormal step of each format
FORMATS = {torch.float8_e4m3fn: (3, 2.0**-9), torch.float8_e5m2: (2, 2.0**-16)}


def _weights(generator: torch.Generator) -> torch.Tensor:
    w = torch.randn(64, 48, generator=generator) * 0.02
    w[0, 0] = 0.7  # one outlier, as real weights have
    w[1, :4] = 0.0
    return w


def _dequantize(q: torch.Tensor, scale) -> torch.Tensor:
    return q.float() if scale is None else q.float() * scale


@pytest.mark.parametrize("dtype", list(FORMATS))
@pytest.mark.parametrize("scaled", [True, False])
def test_fp8_round_trip_is_within_the_format_precision(dtype: torch.dtype, scaled: bool,
                                                        generator: torch.Generator) -> None:
    w = _weights(generator)
    q, scale = quantize_fp8(w, dtype, scaled)
    assert q.dtype == dtype and (scale is not None) == scaled
    back = _dequantize(q, scale)
    mantissa, subnormal = FORMATS[dtype]
    unit = 1.0 if scale is None else float(scale)
    bound = w.abs() * 2.0 ** -(mantissa + 1) + unit * subnormal / 2  # half an ulp, or half a subnormal step
    assert torch.all((back - w).abs() <= bound * (1 + 1e-6))
    assert torch.equal(back[1, :4], torch.zeros(4))
    if scaled:  # the largest magnitude lands on the format's largest finite value
        assert q.float().abs().max() == torch.finfo(dtype).max


def test_scaled_fp8_beats_plain_fp8_on_small_weights(generator: torch.Generator) -> None:
    w = torch.randn(64, 64, generator=generator) * 1e-3  # many values in e4m3fn's subnormal range
    plain = _dequantize(*quantize_fp8(w, torch.float8_e4m3fn, scaled=False))
    scaled = _dequantize(*quantize_fp8(w, torch.float8_e4m3fn, scaled=True))
    assert (scaled - w).abs().mean() < 0.2 * (plain - w).abs().mean()


class Stack(nn.Module):
    _offload_blocks = "blocks"
    _keep_in_fp32_modules = ("gate",)

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ffn": nn.Sequential(nn.Linear(16, 32), nn.GELU(), CastLinear(32, 16)),
                           "gate": nn.Linear(16, 16)}) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block["ffn"](x) * torch.sigmoid(block["gate"](x))
        return x


def test_stored_layers_upcast_per_call_and_stay_close(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = Stack()
    x = torch.randn(3, 8, generator=generator)
    with torch.no_grad():
        full = model(x)
        store_low_bit(model, torch.float8_e4m3fn, keep=Stack._keep_in_fp32_modules)
        layer = model.blocks[0]["ffn"][0]
        assert isinstance(layer, CastLinear) and layer.weight.dtype == torch.float8_e4m3fn
        h = torch.randn(3, 16, generator=generator)
        exact = F.linear(h, layer.weight.float() * layer.scale_weight, layer.bias)
        assert torch.equal(layer(h), exact)
        assert (model(x) - full).norm() < 0.05 * full.norm()  # four fp8 blocks deep, still within a few %
        assert layer(h.bfloat16()).dtype == torch.bfloat16
    assert set(layer.state_dict()) == {"weight", "bias", "scale_weight"}


def test_store_low_bit_keeps_names_and_matches_the_planned_bytes() -> None:
    torch.manual_seed(0)
    model = Stack()
    with torch.device("meta"):
        predicted = measure_model(Stack(), torch.float8_e4m3fn)
    keys = set(model.state_dict())
    converted = store_low_bit(model, torch.float8_e4m3fn, scaled=True, keep=Stack._keep_in_fp32_modules)
    assert converted == 1 + 4 * 2  # embed + two FFN layers per block; the gates stay as they are
    assert type(model.blocks[0]["gate"]) is nn.Linear and model.blocks[0]["gate"].weight.dtype == torch.float32
    new_keys = set(model.state_dict())
    assert keys <= new_keys and all(k.endswith("scale_weight") for k in new_keys - keys)
    assert measure_model(model) == predicted  # the plan's fp8 accounting is the real storage
    assert store_low_bit(model, torch.float8_e4m3fn, keep=Stack._keep_in_fp32_modules) == 0  # already stored


def test_unscaled_storage_adds_no_scale_keys() -> None:
    model = Stack()
    keys = set(model.state_dict())
    store_low_bit(model, torch.float8_e5m2, scaled=False)
    assert set(model.state_dict()) == keys  # a plain fp8 checkpoint has no scale keys


def test_streaming_an_fp8_model_is_bit_identical_to_keeping_it_resident() -> None:
    torch.manual_seed(0)
    model = Stack()
    store_low_bit(model, torch.float8_e5m2, keep=Stack._keep_in_fp32_modules)
    x = torch.randn(2, 8)
    with torch.no_grad():
        reference = model(x)
        sizes = measure_model(model)
        plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 2**20, reserve_bytes=0, min_streamed=3)
        with BlockSwap(model, plan, InlineTransfer(torch.device("cpu"))):
            assert torch.equal(model(x), reference)
            assert torch.equal(model(x), reference)


def test_a_non_fp8_storage_dtype_is_refused() -> None:
    with pytest.raises(InputError, match="not an fp8 type"):
        quantize_fp8(torch.ones(2, 2), torch.bfloat16)
