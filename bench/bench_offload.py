"""Offload figures for Wan 1.3B, 5B and 14B at 832×480×81: placement, predicted peak, bytes over the bus.

    python bench/bench_offload.py [--budgets 8 12 16 24 80] [--real 1.3B|5B|14B] [--real-budget 12]
    python -m directanimator_core bench offload        (once the bench table lists it)

Planning runs on the meta device: the models are built with the real Wan parameter names and shapes
and no weights are allocated. On a CUDA machine the bench also runs real model calls, fully resident
and streamed under a budget, and prints the step-time ratio and the measured peak next to the plan's.

The Wan-shaped stand-in below is used until the backbone's presets (directanimator_core.models.registry)
exist; its blocks carry Wan's exact parameter names and shapes (comfy/ldm/wan/model.py), so the byte
figures are those of the real checkpoints. Its forward is Wan's block without RoPE, for timing only.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.errors import MemoryPlanError  # noqa: E402
from directanimator_core.offload import policy  # noqa: E402
from directanimator_core.offload.blockswap import offload  # noqa: E402
from directanimator_core.offload.lowbit import store_low_bit  # noqa: E402
from directanimator_core.offload.plan import (  # noqa: E402
    GiB, estimate_activation_bytes, latent_tokens, measure_model, plan_memory)

FRAMES, HEIGHT, WIDTH = 81, 480, 832
BUDGETS_GIB = (8, 12, 16, 24, 80)
RESERVE = 512 * 2**20
PASSES_PER_STEP = 2  # CFG as two batch-1 model calls (the low-memory way; batch 2 doubles activations)


@dataclass(frozen=True)
class WanShape:
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    vae_stride: tuple[int, int, int] = (4, 8, 8)
    patch: tuple[int, int, int] = (1, 2, 2)


WAN_SHAPES = {  # Wan 2.1 T2V 1.3B / 14B and Wan 2.2 TI2V 5B (48-channel VAE, 16× in space)
    "1.3B": WanShape(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "5B": WanShape(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48,
                   vae_stride=(4, 16, 16)),
    "14B": WanShape(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
}


# -- a Wan-shaped stand-in (real parameter names and shapes) ---------------------------------------

class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = nn.RMSNorm(dim, eps=1e-6), nn.RMSNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # (B, L, D), (B, Lc, D)
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, N, L, D/N)
        q, k, v = heads(self.norm_q(self.q(x))), heads(self.norm_k(self.k(context))), heads(self.v(context))
        return self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, s: WanShape) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(s.dim, eps=1e-6, elementwise_affine=False)
        self.self_attn = Attention(s.dim, s.num_heads)
        self.norm3 = nn.LayerNorm(s.dim, eps=1e-6)
        self.cross_attn = Attention(s.dim, s.num_heads)
        self.norm2 = nn.LayerNorm(s.dim, eps=1e-6, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(s.dim, s.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(s.ffn_dim, s.dim))
        self.modulation = nn.Parameter(torch.empty(1, 6, s.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        e = (self.modulation.float() + e).unbind(1)  # 6 × (B, D), fp32 as Wan keeps it
        h = (self.norm1(x.float()) * (1 + e[1][:, None]) + e[0][:, None]).to(x.dtype)
        x = (x.float() + self.self_attn(h, h).float() * e[2][:, None]).to(x.dtype)
        x = x + self.cross_attn(self.norm3(x), context)
        h = (self.norm2(x.float()) * (1 + e[4][:, None]) + e[3][:, None]).to(x.dtype)
        return (x.float() + self.ffn(h).float() * e[5][:, None]).to(x.dtype)


class WanShapedDiT(nn.Module):
    _offload_blocks = "blocks"
    _keep_in_fp32_modules = ("modulation", "time_embedding")

    def __init__(self, s: WanShape) -> None:
        super().__init__()
        self.shape = s
        self.patch_embedding = nn.Conv3d(s.in_dim, s.dim, kernel_size=s.patch, stride=s.patch)
        self.text_embedding = nn.Sequential(nn.Linear(s.text_dim, s.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(s.dim, s.dim))
        self.time_embedding = nn.Sequential(nn.Linear(s.freq_dim, s.dim), nn.SiLU(), nn.Linear(s.dim, s.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(s.dim, 6 * s.dim))
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.num_layers))
        self.head = nn.Module()
        self.head.norm = nn.LayerNorm(s.dim, eps=1e-6, elementwise_affine=False)
        self.head.head = nn.Linear(s.dim, s.out_dim * s.patch[0] * s.patch[1] * s.patch[2])
        self.head.modulation = nn.Parameter(torch.empty(1, 2, s.dim))

    def forward(self, latent: torch.Tensor, t_freq: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """latent (B, C, T, H, W), t_freq (B, freq_dim), text (B, 512, text_dim) -> tokens (B, L, out)."""
        x = self.patch_embedding(latent).flatten(2).transpose(1, 2)  # (B, L, D)
        e = self.time_embedding(t_freq.float()).float()  # (B, D)
        e6 = self.time_projection(e.to(x.dtype)).float().unflatten(1, (6, -1))  # (B, 6, D)
        context = self.text_embedding(text)  # (B, 512, D)
        for block in self.blocks:
            x = block(x, e6, context)
        shift, scale = (self.head.modulation.float() + e[:, None]).unbind(1)
        return self.head.head((self.head.norm(x.float()) * (1 + scale[:, None]) + shift[:, None]).to(x.dtype))


def meta_model(name: str) -> nn.Module:
    """bf16 weights; the time embedding and modulation tables in fp32, as Wan computes them."""
    with torch.device("meta"):
        model = WanShapedDiT(WAN_SHAPES[name]).to(torch.bfloat16)
    model.time_embedding.float()
    for name, param in model.named_parameters():
        if name.endswith("modulation"):
            param.data = param.data.float()
    return model


# -- the planning table ----------------------------------------------------------------------------

def activation_bytes(shape: WanShape) -> tuple[int, int]:
    tokens = latent_tokens(FRAMES, HEIGHT, WIDTH, shape.vae_stride, shape.patch)
    return tokens, estimate_activation_bytes(tokens, shape.dim, shape.ffn_dim, batch=1, dtype=torch.bfloat16)


def plan_row(sizes, act: int, budget: int, workspace: int):
    return plan_memory(sizes.block_bytes, sizes.rest_bytes, act, budget, prefetch=1, workspace_bytes=workspace,
                       reserve_bytes=RESERVE, passes_per_step=PASSES_PER_STEP)


def print_table(names: Sequence[str], budgets_gib: Sequence[float]) -> None:
    print(f"Wan at {WIDTH}x{HEIGHT}x{FRAMES} frames, bf16 compute, CFG as {PASSES_PER_STEP} passes per step, "
          f"prefetch 1, reserve {RESERVE / GiB:.2f} GiB; sizes from the meta device (no weights)")
    for name in names:
        model, shape = meta_model(name), WAN_SHAPES[name]
        tokens, act = activation_bytes(shape)
        for label, storage in (("bf16", None), ("fp8", torch.float8_e4m3fn)):
            sizes = measure_model(model, storage)
            workspace = sizes.largest_layer_params * 2 if storage is not None else 0
            print(f"\nWan {name} {label}: {len(sizes.block_bytes)} blocks × {sizes.block_bytes[0] / GiB:.3f} GiB, "
                  f"rest {sizes.rest_bytes / GiB:.2f} GiB, {tokens} tokens, activations {act / GiB:.2f} GiB")
            print(f"  {'budget':>7} {'resident':>9} {'streamed':>9} {'blocks r/s':>11} {'peak':>7} {'bus/step':>9}")
            for budget in budgets_gib:
                try:
                    p = plan_row(sizes, act, int(budget * GiB), workspace)
                except MemoryPlanError as error:
                    print(f"  {budget:>5g} G  does not fit: {str(error).split(':')[0]}")
                    continue
                print(f"  {budget:>5g} G {p.resident_bytes / GiB:>8.2f}G {p.streamed_bytes / GiB:>8.2f}G "
                      f"{len(p.resident):>5}/{len(p.streamed):<5} {p.predicted_peak_bytes / GiB:>6.2f}G "
                      f"{p.pcie_bytes_per_step / GiB:>8.2f}G")


# -- a real step on CUDA ---------------------------------------------------------------------------

def host_model(name: str, storage: Optional[torch.dtype]) -> WanShapedDiT:
    """Random weights in host memory, materialised block by block (a 14B model never exists in bf16)."""
    model = meta_model(name)
    for module in [*model.blocks, *[m for n, m in model.named_children() if n != "blocks"]]:
        module.to_empty(device="cpu")
        for p in module.parameters(recurse=True):
            torch.nn.init.normal_(p.data, std=0.02)
        if storage is not None:
            store_low_bit(module, storage, keep=WanShapedDiT._keep_in_fp32_modules)
    return model.eval()


def time_calls(model: nn.Module, inputs: tuple, device: torch.device, repeats: int) -> tuple[float, int]:
    with torch.no_grad():
        model(*inputs)  # warm-up: kernels chosen, prefetch in its steady state
        policy.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(*inputs)
        policy.synchronize(device)
    return (time.perf_counter() - start) / repeats, torch.cuda.max_memory_allocated(device)


def run_real(name: str, budget_gib: float, fp8: bool, repeats: int) -> None:
    device = policy.compute_device("cuda")
    storage = torch.float8_e4m3fn if fp8 else None
    model, shape = host_model(name, storage), WAN_SHAPES[name]
    tokens, act = activation_bytes(shape)
    t, h, w = (FRAMES - 1) // 4 + 1, HEIGHT // shape.vae_stride[1], WIDTH // shape.vae_stride[2]
    inputs = (torch.randn(1, shape.in_dim, t, h, w, dtype=torch.bfloat16, device=device),
              torch.randn(1, shape.freq_dim, device=device),
              torch.randn(1, 512, shape.text_dim, dtype=torch.bfloat16, device=device))
    sizes = measure_model(model)
    workspace = sizes.largest_layer_params * 2 if fp8 else 0
    free = policy.free_memory_bytes(device)
    print(f"\nreal calls on {torch.cuda.get_device_name(device)}: Wan {name} {'fp8' if fp8 else 'bf16'}, "
          f"{tokens} tokens, {free / GiB:.1f} GiB free")
    figures = {}
    for label, budget in (("resident", free), ("streamed", int(budget_gib * GiB))):
        try:
            plan = plan_row(sizes, act, budget, workspace)
        except MemoryPlanError as error:
            print(f"  {label}: {error}")
            continue
        if label == "resident" and plan.streamed:
            print(f"  resident: does not fit in the {free / GiB:.1f} GiB free on this GPU; no ratio")
            continue
        with offload(model, plan, device):
            base = torch.cuda.memory_allocated(device)
            seconds, peak = time_calls(model, inputs, device, repeats)
        figures[label] = seconds
        print(f"  {label:>8}: {seconds:.3f} s per call, measured peak {peak / GiB:.2f} GiB "
              f"(weights placed {base / GiB:.2f}), predicted {plan.predicted_peak_bytes / GiB:.2f} GiB; "
              f"{plan.describe()}")
    if len(figures) == 2:
        print(f"  streamed / resident step time: {figures['streamed'] / figures['resident']:.3f}")


# -- command line ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(WAN_SHAPES), choices=list(WAN_SHAPES))
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS_GIB), help="GiB")
    parser.add_argument("--real", choices=list(WAN_SHAPES), default="14B",
                        help="model for the real CUDA run (skipped without CUDA)")
    parser.add_argument("--real-budget", type=float, default=12.0, help="GiB budget of the streamed real run")
    parser.add_argument("--real-bf16", action="store_true", help="real run in bf16 storage instead of fp8")
    parser.add_argument("--repeats", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    print_table(args.models, args.budgets)
    if torch.cuda.is_available():
        run_real(args.real, args.real_budget, not args.real_bf16, args.repeats)
    else:
        print("\nno CUDA device: the real streamed-vs-resident step timing is skipped")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
