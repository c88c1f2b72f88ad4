"""Trainer figures: time per optimizer step and peak memory, per thing trained (adapter / LoRA / full),
gradient checkpointing on and off, stage 1 against stage 2 (the frozen teacher's extra forward).

    python bench/bench_train.py [--dim 512 --layers 8 --frames 9 --size 128 --steps 3 --device cpu --threads 1]

Each case runs in a fresh process so its peak memory is its own: on CUDA torch's peak allocation, on
the CPU the process's peak resident set (weights + activations + optimizer state + the interpreter).
The model is a Wan-shaped DiT with a CueFusion adapter at the given width and depth, random weights.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.models.conditioning import CueLatents  # noqa: E402
from directanimator_core.models.config import BackboneConfig  # noqa: E402
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT  # noqa: E402
from directanimator_core.models.wan_dit import build_backbone, init_weights  # noqa: E402
from directanimator_core.offload import policy  # noqa: E402
from directanimator_core.train.config import DataConfig, ModelConfig, RunConfig, Same2XConfig, TrainConfig  # noqa: E402
from directanimator_core.train.data import Batch  # noqa: E402
from directanimator_core.train.lora import build_lora  # noqa: E402
from directanimator_core.train.same2x import (  # noqa: E402
    Trainee, checkpoint_blocks, compute_losses, cue_config, trainable_parameters)

CASES = [  # (trained, gradient checkpointing, stage)
    ("adapter", False, 1), ("adapter", True, 1), ("lora", False, 1), ("full", False, 1), ("full", True, 1),
    ("adapter", False, 2),
]


def build(backbone: BackboneConfig, config: TrainConfig, device: torch.device) -> Trainee:
    with torch.device(device):
        net = CueFusionDiT(init_weights(build_backbone(backbone, device)),
                           CueFusion(backbone, cue_config(config.model, config.same2x)).init_weights())
    lora = build_lora(net.blocks, 16, 16.0, config.model.lora_targets) if config.model.train == "lora" else None
    model = Trainee(net, lora).requires_grad_(config.model.train == "full")
    net.adapter.requires_grad_(True)
    if lora is not None:
        lora.requires_grad_(True)
    if config.run.grad_checkpointing:
        checkpoint_blocks(net.blocks)
    return model


def batch(args, device: torch.device) -> Batch:
    t, hw = (args.frames - 1) // 4 + 1, args.size // 8
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device)

    cues = CueLatents(r(1, 16, t, hw, hw), r(1, 16, t, hw, hw), r(1, 4, t, hw, hw).sigmoid(), r(1, 4, t, hw, hw).sigmoid())
    return Batch(r(1, 16, t, hw, hw), r(1, 20, t, hw, hw), r(1, 16, 64), None, cues, cues, (0,))


def run_case(args, trained: str, ckpt: bool, stage: int, queue) -> None:
    device = policy.compute_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = BackboneConfig(dim=args.dim, ffn_dim=4 * args.dim, num_layers=args.layers, num_heads=args.dim // 64,
                              text_dim=64, in_dim=36)
    config = TrainConfig(data=DataConfig(cross_manifest="unused"), model=ModelConfig(train=trained),
                         same2x=Same2XConfig(stage=stage, depth=args.layers // 2),
                         run=RunConfig(precision="bf16", grad_checkpointing=ckpt))
    torch.manual_seed(0)
    model = build(backbone, config, device)
    teacher = build(backbone, replace(config, run=replace(config.run, grad_checkpointing=False)), device).eval() \
        if stage == 2 else None
    if teacher is not None:
        teacher.requires_grad_(False)
    optimizer = torch.optim.AdamW(trainable_parameters(model).values(), lr=1e-4)
    data = batch(args, device)
    times = []
    for _ in range(args.steps + 1):  # the first step warms up
        start = time.perf_counter()
        losses = compute_losses(model, teacher, data, config, device)
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
        policy.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trainable = sum(p.numel() for p in trainable_parameters(model).values())
    queue.put((min(times[1:]), peak, trainable))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    tokens = ((args.frames - 1) // 4 + 1) * (args.size // 16) ** 2
    print(f"Wan-shaped DiT dim {args.dim} x {args.layers} blocks, {tokens} tokens ({args.frames} frames "
          f"{args.size}x{args.size}), batch 1, bf16 autocast, AdamW; best of {args.steps} steps")
    print(f"{'trained':8} {'grad ckpt':9} {'stage':5} {'trainable':>11} {'s/step':>8} {'peak MiB':>9}")
    context = multiprocessing.get_context("spawn")
    for trained, ckpt, stage in CASES:
        queue = context.Queue()
        process = context.Process(target=run_case, args=(args, trained, ckpt, stage, queue))
        process.start()
        process.join()
        if process.exitcode != 0:
            print(f"{trained:8} {'on' if ckpt else 'off':9} {stage:5} failed (exit {process.exitcode}, see stderr)")
            continue
        seconds, peak, trainable = queue.get()
        print(f"{trained:8} {'on' if ckpt else 'off':9} {stage:5} {trainable:>11,} {seconds:>8.3f} {peak / 2**20:>9.0f}")


if __name__ == "__main__":
    main()
