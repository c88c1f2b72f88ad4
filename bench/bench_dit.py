"""Wan DiT figures on this machine: our forward against ComfyUI's WanModel, and the RAM an fp8 load takes.

    python bench/bench_dit.py [--dim 1536 --ffn 8960 --heads 12 --layers 2] [--frames 3 --height 32 --width 48]
                              [--text-tokens 512] [--repeats 3] [--load-preset wan2.1-t2v-1.3b | --no-load]
                              [--no-forward]

1. Forward time (best of --repeats, runs alternated) of our WanDiT and of ComfyUI's ``comfy/ldm/wan/model.py``
   WanModel on the same configuration and random weights (every weight random, the head too), fp32 on the
   CPU, as a ratio ours / ComfyUI's, and the largest absolute difference of their outputs. ComfyUI comes
   from $COMFYUI_PATH (imported in this process with ``--cpu``).
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


def compare_forward(args: argparse.Namespace) -> None:
    config = BackboneConfig(dim=args.dim, ffn_dim=args.ffn, num_layers=args.layers, num_heads=args.heads)
    ours = random_backbone(config)
    WanModel, ops = import_comfy_wan(Path(os.environ["COMFYUI_PATH"]))
    theirs = WanModel(model_type="t2v", patch_size=config.patch_size, in_dim=config.in_dim, dim=config.dim,
                      ffn_dim=config.ffn_dim, freq_dim=config.freq_dim, text_dim=config.text_dim,
                      out_dim=config.out_dim, num_heads=config.num_heads, num_layers=config.num_layers,
                      eps=config.eps, operations=ops)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((1, 16, args.frames, args.height, args.width), generator=g)
    t = torch.tensor([500.0])
    context = torch.randn((1, args.text_tokens, config.text_dim), generator=g)
    with torch.no_grad():
        out_ours = ours(x, t, context, Conditioning())
        out_theirs = theirs(x, t, context)
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            ours_s.append(best_time(lambda: ours(x, t, context, Conditioning()), 1))
            theirs_s.append(best_time(lambda: theirs(x, t, context), 1))
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    print(f"config: dim {config.dim}, ffn {config.ffn_dim}, {config.num_heads} heads, {config.num_layers} blocks; "
          f"latent 16x{args.frames}x{args.height}x{args.width} ({tokens} tokens), text {args.text_tokens} tokens; "
          f"fp32, CPU, {torch.get_num_threads()} threads")
    print(f"forward, best of {args.repeats}: ours {min(ours_s):.3f} s, ComfyUI WanModel {min(theirs_s):.3f} s, "
          f"ratio ours/ComfyUI {min(ours_s) / min(theirs_s):.3f}")
    diff = (out_ours - out_theirs).abs().max().item()
    print(f"largest |ours - ComfyUI|: {diff:.3e} (output max |v| {out_theirs.abs().max().item():.3f})")


MAKE_FP8 = """
# Streams a ComfyUI scaled-fp8 file tensor by tensor (safetensors: 8-byte header length, JSON header,
# raw bytes), so a 14B-shaped file never sits in memory. Values are random bytes below fp8's NaN codes.
import json, struct, sys, torch
sys.path.insert(0, sys.argv[3])
from directanimator_core.models.checkpoint import from_native
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
from directanimator_core.models.checkpoint import load_backbone
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
