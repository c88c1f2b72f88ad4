"""Wan DiT figures on this machine: our forward against ComfyUI's WanModel, and the RAM an fp8 load takes.

    python bench/bench_dit.py [--dim 1536 --ffn 8960 --heads 12 --layers 2] [--frames 3 --height 32 --width 48]
                              [--text-tokens 512] [--repeats 3] [--dtypes fp32,bf16,bf16-file] [--load-preset wan2.1-t2v-1.3b | --no-load]
                              [--no-forward]

1. Forward time (best of --repeats, runs alternated) of our WanDiT and of ComfyUI's ``comfy/ldm/wan/model.py``
   WanModel on the same configuration and random weights (every weight random, the head too), on the CPU,
   in each of --dtypes (MODES), as a ratio ours / ComfyUI's, and the largest absolute difference of their
   outputs. fp32: both in fp32. bf16: the weights stored in bf16 and both forced to compute in bf16 (ours
   keeps Wan's fp32 islands: embeddings, modulation, head, residual stream, norms; ComfyUI runs all but its
   patch embedding in bf16, on the ops it picks for a bf16 model). bf16-file: a bf16 checkpoint as each
   runs it on a CPU by default (ours: bf16 weights, fp32 matmuls; ComfyUI: weights converted to fp32 at
   load). For the 16-bit rows, each output's relative distance from the fp32 output (the accuracy each pays
   for the speed) and the weights' memory. ComfyUI comes from $COMFYUI_PATH (imported
   in this process with ``--cpu``).
2. Peak host RAM of ``load_backbone`` on a synthetic checkpoint with the real key names and shapes of
   --load-preset, stored as ComfyUI scaled fp8, relative to the file's size (run in a fresh subprocess so
   its peak RSS is its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from directanimator_core.models.checkpoints.backbone import convert_for_load  # noqa: E402
from directanimator_core.models.conditioning import Conditioning  # noqa: E402
from directanimator_core.models.config import BackboneConfig  # noqa: E402
from directanimator_core.models.wan_dit import build_backbone, init_weights  # noqa: E402


def import_comfy_wan(comfy_dir: Path):
    sys.path.insert(0, str(comfy_dir))
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    sys.argv = argv
    return WanModel, comfy.ops.disable_weight_init


def random_backbone(config: BackboneConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    model = init_weights(build_backbone(config), torch.Generator().manual_seed(0))
    with torch.no_grad():  # Wan zero-inits the head: randomise it so the outputs mean something
        model.head.head.weight.normal_(0, model.config.dim ** -0.5)
        for name, param in model.named_parameters():
            if name.endswith(("norm3.weight", "norm_q.weight", "norm_k.weight")):
                param.normal_(1, 0.1)
    return model.eval().requires_grad_(False)


def best_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


# name -> (dtype the weights are stored in, dtype ours computes in, dtype ComfyUI holds and computes in)
MODES = {
    "fp32": (torch.float32, torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16, torch.bfloat16),  # both forced to compute in bf16
    # a bf16 file as each runs it on a CPU by default: ours keeps the bf16 weights and computes in fp32
    # (offload/policy.matmul_dtype); ComfyUI converts the weights to fp32 at load (should_use_bf16 is False)
    "bf16-file": (torch.bfloat16, torch.float32, torch.float32),
}


def ours_in(reference: torch.nn.Module, storage: torch.dtype, compute: torch.dtype) -> torch.nn.Module:
    """Our backbone with ``reference``'s weights stored as the loader stores a checkpoint of ``storage``."""
    if storage == torch.float32:
        return reference
    model = build_backbone(reference.config, torch.device("meta"))
    stored = {k: v.to(storage) for k, v in reference.state_dict().items()}  # what a file of ``storage`` holds
    model.load_state_dict(convert_for_load(model, stored, storage, torch.device("cpu")), assign=True)
    model.compute_dtype = compute
    return model.eval().requires_grad_(False)


def comfy_in(reference: torch.nn.Module, storage: torch.dtype, dtype: torch.dtype) -> torch.nn.Module:
    """ComfyUI's WanModel with ``reference``'s weights rounded to ``storage``, held in ``dtype``, on the ops
    ComfyUI picks when the weight dtype is the compute dtype (comfy.ops.pick_operations:
    disable_weight_init); its patch embedding is fp32."""
    WanModel, ops = import_comfy_wan(Path(os.environ["COMFYUI_PATH"]))
    c = reference.config
    theirs = WanModel(model_type="t2v", patch_size=c.patch_size, in_dim=c.in_dim, dim=c.dim, ffn_dim=c.ffn_dim,
                      freq_dim=c.freq_dim, text_dim=c.text_dim, out_dim=c.out_dim, num_heads=c.num_heads,
                      num_layers=c.num_layers, eps=c.eps, dtype=dtype, operations=ops)
    theirs.load_state_dict({k: v.to(storage) for k, v in reference.state_dict().items()}, strict=True)
    return theirs.eval().requires_grad_(False)


def weight_mib(model: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def compare_forward(args: argparse.Namespace) -> None:
    config = BackboneConfig(dim=args.dim, ffn_dim=args.ffn, num_layers=args.layers, num_heads=args.heads)
    reference = random_backbone(config)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((1, 16, args.frames, args.height, args.width), generator=g)
    t = torch.tensor([500.0])
    context = torch.randn((1, args.text_tokens, config.text_dim), generator=g)
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    print(f"config: dim {config.dim}, ffn {config.ffn_dim}, {config.num_heads} heads, {config.num_layers} blocks; "
          f"latent 16x{args.frames}x{args.height}x{args.width} ({tokens} tokens), text {args.text_tokens} tokens; "
          f"CPU, {torch.get_num_threads()} threads")
    with torch.no_grad():
        exact = reference(x, t, context, Conditioning())
        for name in args.dtypes.split(","):
            storage, compute, comfy_dtype = MODES[name]
            ours, theirs = ours_in(reference, storage, compute), comfy_in(reference, storage, comfy_dtype)
            xo, co = x.to(compute), context.to(compute)
            xc, cc = x.to(comfy_dtype), context.to(comfy_dtype)
            out_ours = ours(xo, t, co, Conditioning()).float()
            out_theirs = theirs(xc, t, cc).float()
            ours_s, theirs_s = [], []
            for _ in range(args.repeats):  # alternate, so both see the same machine load
                ours_s.append(best_time(lambda: ours(xo, t, co, Conditioning()), 1))
                theirs_s.append(best_time(lambda: theirs(xc, t, cc), 1))
            print(f"{name} forward, best of {args.repeats}: ours {min(ours_s):.3f} s, ComfyUI WanModel "
                  f"{min(theirs_s):.3f} s, ratio ours/ComfyUI {min(ours_s) / min(theirs_s):.3f}")
            diff = (out_ours - out_theirs).abs().max().item()
            print(f"{name} largest |ours - ComfyUI|: {diff:.3e} (output max |v| {out_theirs.abs().max().item():.3f})")
            if storage != torch.float32:
                print(f"{name} relative distance from the fp32 output: ours {relative(out_ours, exact):.2e}, "
                      f"ComfyUI {relative(out_theirs, exact):.2e}; weights ours {weight_mib(ours):.0f} MiB, "
                      f"ComfyUI {weight_mib(theirs):.0f} MiB")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


MAKE_FP8 = """
# Streams a ComfyUI scaled-fp8 file tensor by tensor (safetensors: 8-byte header length, JSON header,
# raw bytes), so a 14B-shaped file never sits in memory. Values are random bytes below fp8's NaN codes.
import json, struct, sys, torch
sys.path.insert(0, sys.argv[3])
from directanimator_core.models.checkpoints.backbone import from_native
from directanimator_core.models.layers import CastLinear
from directanimator_core.models.registry import get_preset
from directanimator_core.models.wan_dit import build_backbone
meta = build_backbone(get_preset(sys.argv[1]), torch.device("meta"))
linears = {n + ".weight" for n, m in meta.named_modules() if isinstance(m, CastLinear)}
plan = []  # (key, dtype name, shape, maker)
for key, param in meta.state_dict().items():
    if key in linears:
        plan.append((key, "F8_E4M3", param.shape, lambda s: torch.randint(0, 0x7E, s, dtype=torch.uint8)))
        plan.append((key[:-len("weight")] + "scale_weight", "F32", (), lambda s: torch.full((1,), 1e-3).view(torch.uint8)))
    else:
        plan.append((key, "BF16", param.shape, lambda s: (torch.randn(s) * 0.02).bfloat16().view(torch.uint8)))
plan.append(("scaled_fp8", "F8_E4M3", (0,), lambda s: torch.empty(0, dtype=torch.uint8)))
names = from_native({k: None for k, *_ in plan}, "comfyui")
width = {"F8_E4M3": 1, "BF16": 2, "F32": 4}
header, offset = {}, 0
for (key, dtype, shape, _), name in zip(plan, names):
    size = width[dtype] * (int(torch.tensor(shape).prod()) if len(shape) else 1)
    header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
    offset += size
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[2], "wb") as out:
    out.write(struct.pack("<Q", len(text)))
    out.write(text)
    for key, dtype, shape, make in plan:
        out.write(make(tuple(shape)).numpy().tobytes())
"""

LOAD = """
import json, sys, torch
sys.path.insert(0, sys.argv[2])
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from directanimator_core.models.checkpoints.backbone import load_backbone
base = peak_mib()
model, report = load_backbone(sys.argv[1])
touched = sum(int(p.view(-1)[:: 4096 // p.element_size()].float().sum() != 0) for p in model.parameters())  # fault in every page
print(json.dumps({"base_mib": base, "peak_mib": peak_mib(), "scaled": report.scaled, "layers": report.config.num_layers}))
"""


def available_mib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def measure_load(preset: str) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = Path(tmp) / f"{preset}_fp8_scaled.safetensors"
        subprocess.run([sys.executable, "-c", MAKE_FP8, preset, str(path), str(REPO)], check=True)
        size_mib = path.stat().st_size / 2**20
        if available_mib() < 1.3 * size_mib:
            print(f"load {preset}: skipped, the file is {size_mib:.0f} MiB and only {available_mib():.0f} MiB of RAM "
                  "is available (needs 1.3x)")
            return
        result = subprocess.run([sys.executable, "-c", LOAD, str(path), str(REPO)], check=True,
                                capture_output=True, text=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    added = figures["peak_mib"] - figures["base_mib"]
    print(f"load {preset} (ComfyUI scaled fp8, {figures['scaled']} scaled layers): file {size_mib:.0f} MiB, "
          f"peak RSS added by the load {added:.0f} MiB = {added / size_mib:.2f}x the file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--ffn", type=int, default=8960)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3, help="latent frames")
    parser.add_argument("--height", type=int, default=32, help="latent height")
    parser.add_argument("--width", type=int, default=48, help="latent width")
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="fp32,bf16,bf16-file", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--load-preset", default="wan2.1-t2v-1.3b", help="registry preset for the load measurement")
    parser.add_argument("--no-load", action="store_true", help="skip the load measurement")
    parser.add_argument("--no-forward", action="store_true", help="skip the comparison with ComfyUI")
    args = parser.parse_args()
    if not args.no_forward:
        if not os.environ.get("COMFYUI_PATH"):
            print("bench_dit compares against ComfyUI: set COMFYUI_PATH to a ComfyUI checkout", file=sys.stderr)
            return 2
        compare_forward(args)
    if not args.no_load:
        measure_load(args.load_preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
