"""``python -m directanimator_core animate``: a reference image + a driving video (or a cue folder) + a model
-> an mp4, on the engine the sampler node runs (windowed.py: cue latents per window, the reference in
every window, windows blended in latent space at every step).

    1. paths and option values (``check_args``), with nothing heavy imported yet: a bad one is refused in
       one line that names it (exit 2)
    2. the sampler settings, then the files: model and VAE (default: the bundled ones), reference image,
       the driving video and its mask video or the cue folder
    3. the cues (``extract``'s own code when a driving video is given), the VAE, the DiT, the VAE again
    4. the mp4 is written under a temporary name beside ``--out`` and renamed to it at the end, so an
       interrupted run (Ctrl-C, SIGTERM) leaves no partial file and the previous output as it was; a
       killed run's temporary file is removed by the next run that writes there

Progress goes to the terminal (stderr): cue frames, sampling steps, encode and decode.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Optional

from ..cues.cli import check_file
from ..errors import InputError
from ..processes import sigterm_as_interrupt

CUE_FILES = ("pose.mp4", "face.mp4", "location.mp4")
MIN_STEPS, MAX_STEPS = 1, 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", required=True, help="reference image of the person to animate (PNG/JPEG)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--driving", help="driving video file (any format OpenCV reads)")
    source.add_argument("--cues", help="cue folder written by `extract` (pose.mp4, face.mp4, location.mp4)")
    parser.add_argument("--driving-mask", help="mask video of the driver (white = person), from any segmenter; "
                                               "default: the built-in segmenter")
    parser.add_argument("--reference-mask", help="mask image of the person in the reference (white = person)")
    parser.add_argument("--out", required=True, help="the mp4 to write")
    parser.add_argument("--model", help="DirectAnimator model file (default: the bundled one)")
    parser.add_argument("--adapter", help="DirectAnimator adapter file when --model is a base Wan checkpoint")
    parser.add_argument("--vae", help="Wan 2.1 VAE file (default: the bundled one)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--solver", default=None, help="ODE solver (default: the bundled model's recipe, else "
                                                        "unipc_wan); see sampling/solvers.py")
    parser.add_argument("--scheduler", default="linear_shifted", help="linear_shifted or simple (ComfyUI's)")
    parser.add_argument("--shift", type=float, default=None, help="schedule shift (default: the bundled model's "
                                                                  "recipe, else 5)")
    parser.add_argument("--cue-cfg", type=float, default=None, help="cue guidance, 1 = off (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--max-frames", type=int, help="use only the first N driving frames")
    parser.add_argument("--window-frames", type=int, default=81, help="frames per window for long clips (4n + 1)")
    parser.add_argument("--window-overlap", type=int, default=16, help="frames neighbouring windows share (4k)")
    parser.add_argument("--width", type=int, default=0, help="output width; 0 = the reference's")
    parser.add_argument("--height", type=int, default=0, help="output height; 0 = the reference's")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the driving clip's)")


# -- 1. paths and values, before anything heavy is imported ----------------------------------------
def check_args(args: argparse.Namespace) -> None:
    """Refuse bad paths and option values with an InputError that names the option and what to give."""
    check_file("--reference", args.reference, "a PNG or JPEG image")
    if args.driving is not None:
        check_file("--driving", args.driving, "a video file")
    else:
        _check_cue_folder(args.cues)
        for option, value in (("--driving-mask", args.driving_mask), ("--reference-mask", args.reference_mask)):
            if value is not None:
                raise InputError(f"{option} is given with --cues; the cue folder's cues are already cut and aligned: "
                                 f"leave {option} out, or give --driving instead of --cues")
    for option, path, kind in (("--driving-mask", args.driving_mask, "a mask video (white = person)"),
                               ("--reference-mask", args.reference_mask, "a mask image (white = person)"),
                               ("--model", args.model, "a DirectAnimator model file (.safetensors)"),
                               ("--adapter", args.adapter, "a DirectAnimator adapter file (.safetensors)"),
                               ("--vae", args.vae, "a Wan 2.1 VAE file (.safetensors)")):
        if path is not None:
            check_file(option, path, kind)
    if args.adapter is not None and args.model is None:
        raise InputError("--adapter is given without --model; give the base Wan checkpoint it adapts with --model")
    if args.model is not None and args.vae is None:
        raise InputError("--model is given without --vae; give the Wan 2.1 VAE file it was made for with --vae")
    _check_out(args.out)
    _check_range("--steps", args.steps, MIN_STEPS, MAX_STEPS, "a step count, e.g. 20")
    _check_range("--seed", args.seed, 0, 2**64 - 1, "a seed from 0 to 2**64 - 1")
    _check_range("--max-frames", args.max_frames, 1, None, "how many driving frames to use, or leave it out")
    _check_range("--width", args.width, 0, None, "a width in pixels, or 0 for the reference's")
    _check_range("--height", args.height, 0, None, "a height in pixels, or 0 for the reference's")
    if bool(args.width) != bool(args.height):
        raise InputError(f"--width {args.width} and --height {args.height}: give both, or neither for the "
                         "reference's size")
    for option, value in (("--shift", args.shift), ("--cue-cfg", args.cue_cfg), ("--fps", args.fps)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{option} {value} must be a positive number; give one or leave it out for the default")


def _check_cue_folder(folder: str) -> None:
    if not folder or not os.path.isdir(folder):
        raise InputError(f"--cues {folder} is not a folder; give the folder `python -m directanimator_core extract "
                         "--out` wrote")
    missing = [name for name in CUE_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise InputError(f"--cues {folder} holds no {', '.join(missing)}; give a folder written by `python -m "
                         "directanimator_core extract`")


def _check_out(out: str) -> None:
    if not out:
        raise InputError("--out is empty; give the path of the mp4 to write")
    path = Path(out)
    if path.suffix.lower() != ".mp4":
        raise InputError(f"--out {out} does not end in .mp4; give the path of an .mp4 file to write")
    if path.is_dir():
        raise InputError(f"--out {out} is a folder; give the path of an .mp4 file to write")
    above = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not above.is_dir():
        raise InputError(f"--out {out}: {above} is a file, so no folder can be made there; give another path")
    if not os.access(above, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {above} is not writable; give a path you can write to")


def _check_range(option: str, value: Optional[int], least: int, most: Optional[int], advice: str) -> None:
    if value is None:
        return
    if value < least or (most is not None and value > most):
        bounds = f"at least {least}" if most is None else f"from {least} to {most}"
        raise InputError(f"{option} {value} is out of range ({bounds}); give {advice}")


# -- the run ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    check_args(args)
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from .single_pass import decode_frames
    from .windowed import WindowConfig, encode_windows, sample_windows, usable_frames
    from .loaded_model import load_animator, place
    from ..cues.frames import read_image

    start = time.time()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    # 2. settings, then files
    model_path, vae_path, recipe = _model_files(args)
    config = _sampler_config(args, recipe)
    windows = WindowConfig(frames=args.window_frames, overlap=args.window_overlap)
    animator = load_animator(model_path, None if args.adapter is None else Path(args.adapter))
    vae = _load_vae(vae_path)
    reference = read_image(args.reference)
    size = (args.height, args.width) if args.width else None
    # 3. cues, VAE, DiT, VAE
    triplet, fps = _triplet(args, reference, recipe)
    picture = _picture(reference)
    frames = usable_frames(triplet.num_frames)
    _say(f"cues: {triplet.num_frames} frames ({frames} used) at {triplet.pose.shape[2]}x{triplet.pose.shape[1]}")
    encode = lambda video: vae.encode(video)  # noqa: E731 - (1, 3, F, H, W) [-1, 1] -> raw latents
    with torch.no_grad():
        inputs = encode_windows(picture, triplet, animator.config, encode, windows, _cue_size(args, triplet, size))
        _say(f"encoded: {inputs.plan.describe()}")
        with place(animator, min(windows.frames, frames), *inputs.size) as swap:
            latents = sample_windows(animator.model, inputs, config, device=animator.device, swap=swap,
                                     callback=_step_printer())
        video = decode_frames(vae, latents)
    # 4. write under a temporary name, rename at the end
    out = Path(args.out)
    _write_mp4(out, _to_uint8(video), args.fps or fps)
    _say(f"wrote {out}: {frames} frames at {inputs.size[1]}x{inputs.size[0]}, {time.time() - start:.1f} s")
    return 0


def _model_files(args: argparse.Namespace):
    """(model path, VAE path, recipe or None): the bundled files and their recipe unless --model / --vae."""
    from ..default_model import MODEL_FILE, RECORD_FILE, VAE_FILE
    from ..default_model.recipe import DEFAULT, Recipe

    recipe = None
    if args.model is None:
        recipe = DEFAULT
        if RECORD_FILE.is_file():
            recipe = Recipe(**json.loads(RECORD_FILE.read_text())["recipe"])
        for path in (MODEL_FILE, VAE_FILE):
            if not path.is_file():
                raise InputError(f"the bundled model file {path} is missing; give --model and --vae, or restore "
                                 "directanimator_core/default_model/weights/")
    return Path(args.model or MODEL_FILE), Path(args.vae or VAE_FILE), recipe


def _sampler_config(args: argparse.Namespace, recipe):
    """The sampler settings: the options, else the bundled model's recipe, else the library's defaults."""
    from ..sampling import SamplerConfig

    base = recipe.sampler(args.steps, seed=args.seed) if recipe is not None else SamplerConfig(
        steps=args.steps, cfg_text=1.0, seed=args.seed)
    return SamplerConfig(steps=args.steps, cfg_text=1.0, cfg_cues=args.cue_cfg or base.cfg_cues,
                         shift=args.shift or base.shift, solver=args.solver or base.solver, seed=args.seed,
                         scheduler=args.scheduler)


def _load_vae(path: Path):
    from ..models.checkpoints.vae import load_wan_vae

    return load_wan_vae(path)[0]


def _cue_config(recipe):
    from ..cues.config import CueConfig

    if recipe is None:
        return CueConfig()
    from ..default_model.world import cue_config

    return cue_config(recipe)  # the cue settings the bundled model was trained on


def _triplet(args: argparse.Namespace, reference, recipe):
    """The cue triplet and the driving clip's frame rate: cut from --driving, or read from --cues."""
    if args.cues is not None:
        return read_cue_folder(Path(args.cues), args.max_frames)
    from ..cues import segment
    from ..cues.frames import VideoSource
    from ..cues.reference import find_reference
    from ..cues.triplet import build_triplet
    from ..errors import CueError

    source = VideoSource(args.driving, args.max_frames)
    masks = None
    if args.driving_mask is not None:
        masks = _read_mask_video(args.driving_mask, source.num_frames, (source.height, source.width))
    reference_mask = None
    if args.reference_mask is not None:
        reference_mask = _read_mask_image(args.reference_mask)
    config = _cue_config(recipe)
    try:  # the reference first, so its refusal names the command line's fix
        find_reference(reference, reference_mask, config)
    except CueError:
        raise CueError(f"--reference {args.reference}: no person was found in it (no face, no standing figure); "
                       "give --reference-mask with the person in white") from None
    try:
        triplet = build_triplet(source, config, reference=reference, reference_mask=reference_mask,
                                masks=masks, progress=_frame_printer("cues"))
    except segment.NoPersonError as error:
        raise CueError(f"--driving {args.driving}: {error.finding}; give --driving-mask with the driver in white, "
                       "or a clip that shows the driver") from None
    return triplet, float(source.fps)


def read_cue_folder(folder: Path, max_frames: Optional[int] = None):
    """A CueTriplet from extract's videos (pose, face, location = body mask in red, face mask in green),
    and the clip's frame rate. Per-frame flags are read off the masks; the alignment is the report's."""
    import numpy as np

    from ..cues.align import Alignment
    from ..cues.triplet import CueTriplet

    videos = {name: _read_video(folder / name, max_frames) for name in CUE_FILES}
    (pose, fps), (face, _), (location, _) = (videos[name] for name in CUE_FILES)
    count = min(len(pose), len(face), len(location))
    if count == 0:
        raise InputError(f"--cues {folder}: the cue videos hold no readable frame; run extract again")
    if pose.shape[1:3] != location.shape[1:3]:
        raise InputError(f"--cues {folder}: pose.mp4 is {pose.shape[2]}x{pose.shape[1]} but location.mp4 is "
                         f"{location.shape[2]}x{location.shape[1]}; run extract again into an empty folder")
    pose, face, location = pose[:count], face[:count], location[:count]
    body, face_mask = np.ascontiguousarray(location[..., 0]), np.ascontiguousarray(location[..., 1])
    alignment = Alignment(scale=1.0, tx=0.0, ty=0.0, size=tuple(pose.shape[1:3]))
    triplet = CueTriplet(pose=pose, face=face, body_mask=body, face_mask=face_mask,
                         person=body.reshape(count, -1).max(1) > 127, face_found=face.reshape(count, -1).max(1) > 0,
                         quality=np.ones(count, np.float32), alignment=alignment)
    return triplet, fps


def _read_video(path: Path, max_frames: Optional[int]):
    """(F, H, W, 3) uint8 RGB and the frame rate of a whole (short) video."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(path))
    fps, frames = capture.get(cv2.CAP_PROP_FPS) or 25.0, []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise InputError(f"{path} has no readable frame; give a video OpenCV can read (mp4, avi)")
    return np.stack(frames), float(fps)


def _read_mask_video(path: str, frames: int, size: tuple[int, int]):
    import numpy as np

    video, _ = _read_video(Path(path), frames)
    if len(video) < frames or video.shape[1:3] != size:
        raise InputError(f"--driving-mask {path} is {len(video)} frames at {video.shape[2]}x{video.shape[1]}; the "
                         f"driving clip is {frames} frames at {size[1]}x{size[0]}: give its mask video")
    return (video.max(axis=-1) > 127).astype(np.uint8) * 255


def _read_mask_image(path: str):
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"--reference-mask {path} cannot be read as an image; give a PNG or JPEG mask")
    return mask


def _cue_size(args: argparse.Namespace, triplet, size: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """The output size; with a cue folder made for another size, a CLI answer rather than the node's."""
    if size is None and args.cues is not None:
        import cv2

        ref = cv2.imread(args.reference, cv2.IMREAD_COLOR).shape[:2]
        cue = tuple(triplet.pose.shape[1:3])
        if ref != cue:
            raise InputError(f"--cues {args.cues} are {cue[1]}x{cue[0]} but --reference is {ref[1]}x{ref[0]}: run "
                             "extract with --reference on this image, or give --width and --height")
    return size


def _picture(image):
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1]."""
    import torch

    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def _to_uint8(video):
    """(1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((video[0].permute(1, 2, 3, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def _write_mp4(out: Path, frames, fps: float) -> None:
    """H.264 mp4 (PyAV, plays in browsers and ComfyUI's LoadVideo), written as a hidden file beside ``out``
    and renamed onto it; an error or interrupt removes the temporary file and leaves ``out`` as it was."""
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(out)
    temporary = partial_name(out, os.getpid())
    try:
        with av.open(str(temporary), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)


def partial_name(out: Path, pid: int) -> Path:
    """The hidden file process ``pid`` writes ``out`` as, until it renames it."""
    return out.with_name(f".{out.name}.{pid}.partial.mp4")


def remove_dead_partials(out: Path) -> list[Path]:
    """Remove the temporary files of runs that died writing ``out`` (SIGKILL, power loss); returns them."""
    from ..processes import alive

    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(\d+)\.partial\.mp4$")
    removed = []
    for path in out.parent.iterdir() if out.parent.is_dir() else ():
        match = pattern.match(path.name)
        if match and not alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# -- progress on the terminal ------------------------------------------------------------------------
def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _step_printer():
    def report(info) -> None:
        _say(f"sampling: step {info.step + 1}/{info.total} (sigma {info.sigma:.3f})")

    return report


def _frame_printer(what: str):
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent // 10 != last[0] // 10 or done == total:
            last[0] = percent
            _say(f"{what}: {done}/{total} frames")

    return report
