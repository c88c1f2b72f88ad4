"""Offload figures for Wan 1.3B, 5B and 14B at 832×480×81: placement, predicted peak, bytes over the bus.

    python bench/bench_offload.py [--budgets 8 12 16 24 80] [--real 1.3B|5B|14B] [--real-budget 12]
    python -m directanimator_core bench offload [same options]

Planning runs on the meta device: the models are built with the real Wan parameter names and shapes
and no weights are allocated. On a CUDA machine the bench also runs real model calls, fully resident
and streamed under a budget, and prints the step-time ratio and the measured peak next to the plan's.

The models are the backbone itself (models/wan_dit.py) built from its presets (models/registry.py):
bf16 weights as ComfyUI's bf16 checkpoints store them; fp8 as store_low_bit() converts them (Linear
weights outside the model's ``_keep_in_fp32_modules``).
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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.errors import MemoryPlanError  # noqa: E402
from directanimator_core.offload import policy  # noqa: E402
from directanimator_core.offload.blockswap import offload  # noqa: E402
from directanimator_core.offload.lowbit import store_low_bit  # noqa: E402
from directanimator_core.models.config import CueFusionConfig  # noqa: E402
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT  # noqa: E402
from directanimator_core.models.registry import get_preset  # noqa: E402
from directanimator_core.models.wan_dit import WanDiT, build_backbone  # noqa: E402
from directanimator_core.offload.plan import (  # noqa: E402
    GiB, estimate_activation_bytes, keep_fp32_names, latent_tokens, measure_model, plan_memory)

FRAMES, HEIGHT, WIDTH = 81, 480, 832
BUDGETS_GIB = (8, 12, 16, 24, 80)
RESERVE = 512 * 2**20
# Model calls per sampling step: sampling/denoiser.py runs guidance as batch-1 calls one after the other
# (text CFG: 2; text and cue CFG: 3), so activations are those of one call and the bus carries the
# streamed blocks once per call.
PASSES_PER_STEP = 2
PCIE_BYTES_PER_S = 25e9  # what a PCIe 4.0 x16 link sustains host -> device from pinned memory


@dataclass(frozen=True)
class Case:
    preset: str  # models/registry.py
    vae_stride: tuple[int, int, int]
    cues: bool = False  # with the CueFusion adapter: the model DirectAnimator runs


CASES = {  # Wan 2.1 T2V 1.3B / 14B, Wan 2.2 TI2V 5B (48-channel VAE, 16x in space), DirectAnimator on 14B I2V
    "1.3B": Case("wan2.1-t2v-1.3b", (4, 8, 8)),
    "5B": Case("wan2.2-ti2v-5b", (4, 16, 16)),
    "14B": Case("wan2.1-t2v-14b", (4, 8, 8)),
    "14B-I2V+CueFusion": Case("wan2.1-i2v-14b", (4, 8, 8), cues=True),
}
DEFAULT_MODELS = ("1.3B", "5B", "14B", "14B-I2V+CueFusion")


def meta_model(name: str) -> nn.Module:
    """The model on the meta device with bf16 weights, as ComfyUI's bf16 checkpoints store them."""
    case = CASES[name]
    backbone = build_backbone(get_preset(case.preset), torch.device("meta"))
    if not case.cues:
        return backbone.to(torch.bfloat16)
    with torch.device("meta"):
        adapter = CueFusion(backbone.config, CueFusionConfig())
    return CueFusionDiT(backbone, adapter).to(torch.bfloat16)


# -- the planning table ----------------------------------------------------------------------------

def activation_bytes(name: str) -> tuple[int, int]:
    config = get_preset(CASES[name].preset)
    tokens = latent_tokens(FRAMES, HEIGHT, WIDTH, CASES[name].vae_stride, config.patch_size)
    carried = 2 if CASES[name].cues else 0  # CueFusion's pose and face streams
    return tokens, estimate_activation_bytes(tokens, config.dim, config.ffn_dim, batch=1, dtype=torch.bfloat16,
                                             carried_fp32=carried)


def plan_row(sizes, act: int, budget: int, workspace: int):
    return plan_memory(sizes.block_bytes, sizes.rest_bytes, act, budget, prefetch=1, workspace_bytes=workspace,
                       reserve_bytes=RESERVE, passes_per_step=PASSES_PER_STEP)


def print_table(names: Sequence[str], budgets_gib: Sequence[float]) -> None:
    print(f"Wan at {WIDTH}x{HEIGHT}x{FRAMES} frames, bf16 compute, {PASSES_PER_STEP} batch-1 model calls per step "
          f"(text CFG; cue CFG adds a third), "
          f"prefetch 1, reserve {RESERVE / GiB:.2f} GiB; sizes from the meta device (no weights); "
          f"copy s/call = streamed bytes of one model call at {PCIE_BYTES_PER_S / 1e9:g} GB/s (PCIe 4.0 x16), "
          f"the time the compute of a call must hide")
    for name in names:
        model = meta_model(name)
        tokens, act = activation_bytes(name)
        for label, storage in (("bf16", None), ("fp8", torch.float8_e4m3fn)):
            sizes = measure_model(model, storage)
            workspace = sizes.largest_layer_params * 2 if storage is not None else 0
            print(f"\nWan {name} {label}: {len(sizes.block_bytes)} blocks × {sizes.block_bytes[0] / GiB:.3f} GiB, "
                  f"rest {sizes.rest_bytes / GiB:.2f} GiB, {tokens} tokens, activations {act / GiB:.2f} GiB")
            print(f"  {'budget':>7} {'resident':>9} {'streamed':>9} {'blocks r/s':>11} {'peak':>7} {'bus/step':>9} "
                  f"{'copy s/call':>11}")
            for budget in budgets_gib:
                try:
                    p = plan_row(sizes, act, int(budget * GiB), workspace)
                except MemoryPlanError as error:
                    print(f"  {budget:>5g} G  does not fit: {str(error).split(':')[0]}")
                    continue
                print(f"  {budget:>5g} G {p.resident_bytes / GiB:>8.2f}G {p.streamed_bytes / GiB:>8.2f}G "
                      f"{len(p.resident):>5}/{len(p.streamed):<5} {p.predicted_peak_bytes / GiB:>6.2f}G "
                      f"{p.pcie_bytes_per_step / GiB:>8.2f}G {p.streamed_bytes / PCIE_BYTES_PER_S:>11.2f}")


# -- a real step on CUDA ---------------------------------------------------------------------------

def host_model(name: str, storage: Optional[torch.dtype]) -> WanDiT:
    """Random bf16 weights in host memory, part by part (a 14B model never exists whole in bf16 when
    stored in fp8): Linear weights N(0, 0.02), norms 1, biases 0, modulation N(0, 1/dim)."""
    model = meta_model(name)
    model.compute_dtype = torch.bfloat16
    parts = [*model.blocks, *(m for n, m in model.named_children() if n != "blocks" and m is not None)]
    for part in parts:
        part.to_empty(device="cpu")
        with torch.no_grad():
            for pname, p in part.named_parameters():
                if pname.endswith("modulation"):
                    p.normal_(0, model.config.dim ** -0.5)
                elif p.dim() >= 2:
                    p.normal_(0, 0.02)
                else:
                    p.fill_(1.0 if pname.endswith("weight") else 0.0)
        if storage is not None:
            store_low_bit(part, storage, keep=keep_fp32_names(model))
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
    model, config = host_model(name, storage), get_preset(CASES[name].preset)
    tokens, act = activation_bytes(name)
    stride = CASES[name].vae_stride
    t, h, w = (FRAMES - 1) // stride[0] + 1, HEIGHT // stride[1], WIDTH // stride[2]
    inputs = (torch.randn(1, config.out_dim, t, h, w, device=device), torch.tensor([500.0], device=device),
              torch.randn(1, 512, config.text_dim, dtype=torch.bfloat16, device=device))
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
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(CASES))
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS_GIB), help="GiB")
    parser.add_argument("--real", choices=[n for n, c in CASES.items() if not c.cues], default="14B",
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
