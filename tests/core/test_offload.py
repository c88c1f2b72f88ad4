"""Offloading: the plan respects its budget, block swap is exact and keeps to the plan, OOM re-plans.

The executor is checked without a GPU through a copy strategy that copies CPU -> CPU into storage of
its own and counts the live copies; forward hooks count the blocks on the "device" at every call.
"""

from __future__ import annotations

import gc
import itertools
import weakref

import pytest
import torch
from torch import nn

from directanimator_core.errors import InputError, MemoryPlanError
from directanimator_core.offload import policy
from directanimator_core.offload.blockswap import BlockSwap, InlineTransfer, build_transfer, offload
from directanimator_core.offload.plan import (
    GiB, OffloadConfig, estimate_activation_bytes, latent_tokens, measure_model, plan_for_model,
    plan_memory, spread_indices)
from directanimator_core.offload.recover import more_streaming, run_with_recovery


# -- a tiny stand-in transformer with the hints a backbone declares --------------------------------

class TinyBlock(nn.Module):
    def __init__(self, dim: int, ffn: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(approximate="tanh"), nn.Linear(ffn, dim))
        self.modulation = nn.Parameter(torch.randn(1, 4, dim) / dim**0.5)
        self.register_buffer("gain", torch.linspace(0.5, 1.5, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # (B, L, D), (B, 4, D)
        shift, scale, gate, out_gate = (self.modulation + e).unbind(1)
        h = self.norm1(x) * (1 + scale[:, None]) + shift[:, None]
        attn = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) / h.shape[-1] ** 0.5, dim=-1)
        x = x + gate[:, None] * self.o(attn @ self.v(h))
        return x + out_gate[:, None] * self.ffn(self.norm2(x)) * self.gain


class TinyDiT(nn.Module):
    _offload_blocks = "blocks"
    _keep_in_fp32_modules = ("modulation",)

    def __init__(self, depth: int = 6, dim: int = 16, ffn: int = 32) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(8, dim)
        self.time_embedding = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, 4 * dim))
        self.blocks = nn.ModuleList(TinyBlock(dim, ffn) for _ in range(depth))
        self.head = nn.Linear(dim, 8)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, L, 8), (B,)
        e = self.time_embedding(t[:, None]).unflatten(1, (4, -1))  # (B, 4, D)
        h = self.patch_embedding(x)
        for block in self.blocks:
            h = block(h, e)
        return self.head(h)


def tiny(depth: int = 6) -> TinyDiT:
    torch.manual_seed(0)
    return TinyDiT(depth).eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 12, 8, generator=g), torch.rand(2, generator=g)


# -- a CPU "device" that owns its storage and counts it -------------------------------------------

class CountingTransfer(InlineTransfer):
    """CPU -> CPU copies into fresh storage; tracks which storages are alive (freed = forgotten)."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.live: dict[int, int] = {}  # data_ptr -> bytes
        self.peak_bytes = 0

    def start(self, tensors):
        pending = super().start(tensors)
        for t in pending.tensors:
            ptr = t.data_ptr()
            self.live[ptr] = t.numel() * t.element_size()
            weakref.finalize(t.untyped_storage(), self.live.pop, ptr, None)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes())
        return pending

    def live_bytes(self) -> int:
        return sum(self.live.values())

    def on_device(self, module: nn.Module) -> bool:
        return all(p.data_ptr() in self.live for p in module.parameters())


def watch_blocks(model: TinyDiT, transfer: CountingTransfer, plan) -> list[tuple[int, int, int]]:
    """Hooks that record, at every block call, (blocks on device, streamed on device, live bytes)."""
    seen = []

    def check(i):
        def hook(module, args):
            assert transfer.on_device(module), f"block {i} runs with weights not on the device"
            on = [j for j, b in enumerate(model.blocks) if transfer.on_device(b)]
            seen.append((len(on), len(set(on) & set(plan.streamed)), transfer.live_bytes()))
        return hook

    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(check(i))
    return seen


# -- plan ------------------------------------------------------------------------------------------

def test_latent_tokens_of_wan_at_832x480x81() -> None:
    assert latent_tokens(81, 480, 832) == 21 * 30 * 52
    assert latent_tokens(81, 480, 832, vae_stride=(4, 16, 16)) == 21 * 15 * 26


def test_activation_estimate_is_linear_in_batch_and_tokens() -> None:
    one = estimate_activation_bytes(100, 64, 256)
    assert one == 100 * (14 * 64 + 2 * 256) * 2
    assert estimate_activation_bytes(100, 64, 256, batch=2) == 2 * one
    assert estimate_activation_bytes(300, 64, 256) == 3 * one
    assert estimate_activation_bytes(100, 64, 256, carried_fp32=2) == one + 100 * 64 * 4 * 2


@pytest.mark.parametrize("total,count", [(40, 0), (40, 1), (40, 13), (40, 40), (5, 3), (1, 1)])
def test_spread_indices_are_distinct_and_in_range(total: int, count: int) -> None:
    picked = spread_indices(total, count)
    assert len(set(picked)) == count and all(0 <= i < total for i in picked)
    assert list(picked) == sorted(picked)


def _independent_peak(blocks, streamed, rest, act, work, reserve, prefetch) -> int:
    resident = sum(b for i, b in enumerate(blocks) if i not in streamed)
    slots = sorted((blocks[i] for i in streamed), reverse=True)[: prefetch + 1]
    return rest + resident + sum(slots) + act + work + reserve


GRID_BLOCKS = {
    "1.3B-like": [170 * 2**20] * 30,
    "14B-like": [700 * 2**20] * 40,
    "uneven": [(i % 7 + 1) * 50 * 2**20 for i in range(23)],
    "single": [3 * GiB],
}


@pytest.mark.parametrize("name", sorted(GRID_BLOCKS))
def test_planner_never_exceeds_its_budget_over_a_grid(name: str) -> None:
    blocks = GRID_BLOCKS[name]
    for budget_gib, act_gib, prefetch in itertools.product((1, 2, 4, 8, 12, 16, 24, 80), (0, 0.5, 3), (0, 1, 2)):
        budget, act = int(budget_gib * GiB), int(act_gib * GiB)
        args = dict(rest_bytes=300 * 2**20, activation_bytes=act, budget_bytes=budget, prefetch=prefetch,
                    workspace_bytes=64 * 2**20, reserve_bytes=256 * 2**20)
        all_streamed = _independent_peak(blocks, set(range(len(blocks))), 300 * 2**20, act, 64 * 2**20,
                                         256 * 2**20, prefetch)
        if all_streamed > budget:
            with pytest.raises(MemoryPlanError):
                plan_memory(blocks, **args)
            continue
        plan = plan_memory(blocks, **args)
        peak = _independent_peak(blocks, set(plan.streamed), 300 * 2**20, act, 64 * 2**20, 256 * 2**20, prefetch)
        assert plan.predicted_peak_bytes == peak <= budget
        assert sorted(plan.resident + plan.streamed) == list(range(len(blocks)))
        if plan.streamed:  # the fewest streamed blocks: one fewer would not fit
            fewer = spread_indices(len(blocks), len(plan.streamed) - 1)
            assert _independent_peak(blocks, set(fewer), 300 * 2**20, act, 64 * 2**20, 256 * 2**20,
                                     prefetch) > budget


def test_nothing_fits_error_names_budget_need_and_fixes() -> None:
    with pytest.raises(MemoryPlanError) as info:
        plan_memory([GiB] * 10, rest_bytes=GiB, activation_bytes=6 * GiB, budget_bytes=8 * GiB)
    text = str(info.value)
    assert "8.00 GiB" in text and "9.50 GiB" in text and "all 10 blocks streamed" in text
    assert "fp8" in text and "resolution" in text


@pytest.mark.parametrize("bad", [dict(budget_bytes=0), dict(prefetch=-1), dict(min_streamed=-2)])
def test_bad_plan_inputs_are_refused_up_front(bad: dict) -> None:
    args = dict(rest_bytes=0, activation_bytes=0, budget_bytes=GiB) | bad
    with pytest.raises(InputError):
        plan_memory([1000] * 3, **args)


def test_sizes_from_meta_match_real_parameters_and_honour_storage_dtype() -> None:
    real = tiny()
    with torch.device("meta"):
        meta = TinyDiT()
    sizes, meta_sizes = measure_model(real), measure_model(meta)
    assert sizes == meta_sizes
    total = sum(t.numel() * t.element_size() for t in [*real.parameters(), *real.buffers()])
    assert sum(sizes.block_bytes) + sizes.rest_bytes == total

    fp8 = measure_model(meta, torch.float8_e4m3fn)
    block = real.blocks[0]
    matrices = [p for n, p in block.named_parameters() if p.dim() >= 2 and "modulation" not in n]
    others = [p for n, p in block.named_parameters() if p.dim() < 2 or "modulation" in n]
    expected = (sum(p.numel() + 4 for p in matrices) + sum(p.numel() * 4 for p in others)
                + block.gain.numel() * 4)
    assert fp8.block_bytes[0] == expected
    assert fp8.largest_layer_params == 16 * 64  # time_embedding.2, outside the blocks


def test_model_without_block_hint_is_refused() -> None:
    with pytest.raises(InputError, match="_offload_blocks"):
        measure_model(nn.Sequential(nn.Linear(2, 2)))


def test_plan_for_model_streams_only_when_the_budget_demands() -> None:
    model = tiny()
    sizes = measure_model(model)
    roomy = plan_for_model(model, 10 * 2**20, 0, config=OffloadConfig(reserve_bytes=0))
    assert roomy.streamed == ()
    tight_budget = sizes.rest_bytes + 3 * sizes.block_bytes[0]
    tight = plan_for_model(model, tight_budget, 0, config=OffloadConfig(reserve_bytes=0, prefetch=1))
    assert len(tight.resident) == 1 and len(tight.streamed) == 5 and tight.predicted_peak_bytes <= tight_budget
    forced = plan_for_model(model, 10 * 2**20, 0, config=OffloadConfig(reserve_bytes=0, min_streamed=2))
    assert len(forced.streamed) == 2


# -- block swap --------------------------------------------------------------------------------------

SWAP_CASES = [(streamed, prefetch) for streamed in (0, 1, 3, 6) for prefetch in (0, 1, 2)]


@pytest.mark.parametrize("streamed,prefetch", SWAP_CASES)
def test_swap_is_bit_identical_and_never_exceeds_the_plan(streamed: int, prefetch: int) -> None:
    model = tiny()
    x, t = inputs()
    with torch.no_grad():
        reference = model(x, t)
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, prefetch=prefetch,
                       reserve_bytes=0, min_streamed=streamed)
    transfer = CountingTransfer()
    with torch.no_grad(), BlockSwap(model, plan, transfer):
        seen = watch_blocks(model, transfer, plan)
        outputs = [model(x, t) for _ in range(3)]  # several calls: prefetch wraps into the next one
    for out in outputs:
        assert torch.equal(out, reference)
    assert len(seen) == 3 * 6
    weight_budget = plan.resident_bytes + plan.slot_bytes
    for on_device, streamed_on_device, live in seen:
        assert on_device <= len(plan.resident) + plan.slots
        assert streamed_on_device <= plan.slots
        assert live <= weight_budget
    assert transfer.peak_bytes <= weight_budget
    if streamed:
        assert max(s for _, s, _ in seen) >= 1  # streamed blocks really did visit the device


def test_detach_points_everything_home_and_frees_the_device() -> None:
    model = tiny()
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, min_streamed=4)
    transfer = CountingTransfer()
    x, t = inputs()
    with torch.no_grad():
        reference = model(x, t)
        with BlockSwap(model, plan, transfer):
            model(x, t)
            assert transfer.live_bytes() > 0
    gc.collect()
    assert transfer.live == {}
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == before
    with torch.no_grad():
        assert torch.equal(model(x, t), reference)


def test_blocks_called_out_of_order_still_keep_to_the_slots() -> None:
    model = tiny()
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, prefetch=1,
                       min_streamed=6)
    transfer = CountingTransfer()
    h = torch.randn(1, 5, 16)
    e = torch.randn(1, 4, 16)
    with torch.no_grad():
        expected = [block(h, e) for block in model.blocks]
        with BlockSwap(model, plan, transfer):
            seen = watch_blocks(model, transfer, plan)
            got = {i: model.blocks[i](h, e) for i in (5, 2, 0, 3, 1, 4)}
    assert all(torch.equal(got[i], expected[i]) for i in range(6))
    assert all(s <= plan.slots for _, s, _ in seen)


def test_cpu_offload_moves_nothing_and_pins_nothing() -> None:
    model = tiny()
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, min_streamed=3)
    swap = offload(model, plan, torch.device("cpu"))
    assert swap.transfer is None and swap._hooks == []
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == before
    assert not any(p.is_pinned() for p in model.parameters())
    swap.detach()


def test_policy_answers_for_cpu_without_touching_cuda() -> None:
    cpu = torch.device("cpu")
    assert build_transfer(cpu) is None and build_transfer(torch.device("meta")) is None
    assert not policy.has_copy_streams(cpu) and not policy.can_pin_memory(cpu)
    assert not policy.has_copy_streams(torch.device("mps"))
    assert isinstance(build_transfer(torch.device("mps")), InlineTransfer)
    assert policy.free_memory_bytes(cpu) > 0
    assert policy.dtype_bytes(torch.float8_e4m3fn) == 1 and policy.dtype_bytes(torch.bfloat16) == 2


def test_a_model_already_on_another_device_is_refused() -> None:
    with torch.device("meta"):
        model = TinyDiT()
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0)
    with pytest.raises(InputError, match="host memory"):
        BlockSwap(model, plan, CountingTransfer()).attach()


# -- out-of-memory recovery ------------------------------------------------------------------------

def _swap_for(model: TinyDiT, streamed: int = 0):
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, prefetch=1,
                       min_streamed=streamed)
    return BlockSwap(model, plan, CountingTransfer()).attach()


def test_oom_replans_with_more_streaming_and_retries_once() -> None:
    model = tiny(depth=8)
    x, t = inputs()
    with torch.no_grad():
        reference = model(x, t)
    swap = _swap_for(model)
    calls = []

    def step():
        calls.append(len(swap.plan.streamed))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(x, t)

    with torch.no_grad():
        out = run_with_recovery(step, swap)
    assert calls == [0, 2]  # a quarter of 8 blocks more
    assert torch.equal(out, reference)
    swap.detach()


def test_second_oom_becomes_an_actionable_memory_plan_error() -> None:
    swap = _swap_for(tiny())

    def step():
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(MemoryPlanError, match="out of memory again") as info:
        run_with_recovery(step, swap)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    swap.detach()


def test_other_errors_pass_through_without_replanning() -> None:
    swap = _swap_for(tiny())
    plan = swap.plan

    def step():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_with_recovery(step, swap)
    assert swap.plan is plan
    swap.detach()


def test_more_streaming_shrinks_until_nothing_is_left() -> None:
    plan = plan_memory([100] * 10, rest_bytes=10, activation_bytes=0, budget_bytes=10_000, prefetch=2,
                       reserve_bytes=0)
    peaks = [plan.predicted_peak_bytes]
    with pytest.raises(MemoryPlanError, match="all 10 blocks streamed and no prefetch"):
        for _ in range(20):
            plan = more_streaming(plan)
            peaks.append(plan.predicted_peak_bytes)
    assert peaks == sorted(peaks, reverse=True) and peaks[-1] < peaks[0]
    assert len(plan.streamed) == 10 and plan.prefetch == 0


# -- on a GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stream_swap_matches_resident_and_keeps_to_the_plan() -> None:
    device = torch.device("cuda")
    model = tiny(depth=8)
    x, t = inputs()
    with torch.no_grad():
        reference = model.to(device)(x.to(device), t.to(device)).cpu()
        model.cpu()
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, prefetch=2,
                       min_streamed=5)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), offload(model, plan, device):
        assert all(p.is_pinned() for i in plan.streamed for p in model.blocks[i].parameters())
        outs = [model(x.to(device), t.to(device)).cpu() for _ in range(3)]
    assert all(torch.equal(o, reference) for o in outs)
    assert torch.cuda.memory_allocated() == base


# -- VAE tiles -------------------------------------------------------------------------------------

def test_vae_tile_plan_prefers_whole_frames_and_fits_its_budget() -> None:
    from directanimator_core.offload.plan import plan_vae_tiles

    weights = 250 * 2**20
    whole = plan_vae_tiles(80 * GiB, 480, 832, weight_bytes=weights)
    assert whole.tile is None and whole.predicted_peak_bytes <= 80 * GiB
    for budget_gib in (1.5, 2, 3, 4, 6, 8, 12):
        plan = plan_vae_tiles(int(budget_gib * GiB), 480, 832, weight_bytes=weights)
        assert plan.predicted_peak_bytes <= budget_gib * GiB
        if plan.tile is not None:
            assert plan.tile[0] % 64 == 0 or plan.tile[0] == 480
            assert plan.overlap * 4 <= max(plan.tile)
    chunked = plan_vae_tiles(80 * GiB, 480, 832, weight_bytes=weights, max_chunk_frames=4)
    assert chunked.chunk_frames == 4
    with pytest.raises(MemoryPlanError, match="VAE tile"):
        plan_vae_tiles(int(0.8 * GiB), 480, 832, weight_bytes=weights)


def test_offload_model_on_cpu_keeps_everything_resident_and_can_store_fp8() -> None:
    from directanimator_core.offload.blockswap import offload_model
    from directanimator_core.models.layers import CastLinear

    model = tiny()
    x, t = inputs()
    swap = offload_model(model, 0, config=OffloadConfig(storage_dtype=torch.float8_e4m3fn, min_streamed=2),
                         device=torch.device("cpu"))
    assert swap.transfer is None and swap.plan.streamed == ()  # the host is the device: nothing streams
    assert isinstance(model.blocks[0].q, CastLinear) and model.blocks[0].q.weight.dtype == torch.float8_e4m3fn
    assert model.blocks[0].modulation.dtype == torch.float32
    with torch.no_grad():
        assert model(x, t).shape == (2, 12, 8)
    swap.detach()


def test_oom_inside_a_streamed_block_leaves_nothing_behind() -> None:
    model = tiny(depth=8)
    x, t = inputs()
    with torch.no_grad():
        reference = model(x, t)
    sizes = measure_model(model)
    plan = plan_memory(sizes.block_bytes, sizes.rest_bytes, 0, 10 * 2**20, reserve_bytes=0, prefetch=2,
                       min_streamed=4)
    transfer = CountingTransfer()
    swap = BlockSwap(model, plan, transfer).attach()
    victim = plan.streamed[1]
    raised = []

    def fail_once(module, args):
        if not raised:
            raised.append(victim)
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    model.blocks[victim].register_forward_pre_hook(fail_once)  # runs after the swap brought it in
    with torch.no_grad():
        out = run_with_recovery(lambda: model(x, t), swap)
    assert raised == [victim] and torch.equal(out, reference)
    assert len(swap.plan.streamed) == 6
    swap.detach()
    gc.collect()
    assert transfer.live == {}


def test_fp8_storage_on_mps_is_refused_before_any_work() -> None:
    from directanimator_core.offload import blockswap

    model = tiny()
    with pytest.raises(InputError, match="cannot live on mps"):
        blockswap._check_dtypes_fit(model, OffloadConfig(storage_dtype=torch.float8_e4m3fn), torch.device("mps"))
    blockswap._check_dtypes_fit(model, OffloadConfig(), torch.device("mps"))
    blockswap._check_dtypes_fit(model, OffloadConfig(storage_dtype=torch.float8_e4m3fn), torch.device("cuda"))


def test_with_recovery_wraps_a_model_so_each_call_survives_one_oom() -> None:
    from directanimator_core.offload.recover import with_recovery

    model = tiny(depth=8)
    x, t = inputs()
    with torch.no_grad():
        reference = model(x, t)
    swap = _swap_for(model)
    failures = iter([True, False, True, False])

    def flaky(*args):
        if next(failures):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return model(*args)

    velocity = with_recovery(flaky, swap)
    with torch.no_grad():
        assert torch.equal(velocity(x, t), reference)
        assert torch.equal(velocity(x, t), reference)
    assert len(swap.plan.streamed) == 4  # two re-plans, two blocks more each
    swap.detach()
