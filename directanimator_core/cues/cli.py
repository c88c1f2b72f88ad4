"""``python -m directanimator_core extract``: the cue triplet of a video file, written as videos.

Writes ``pose.mp4``, ``face.mp4``, ``location.mp4``, ``preview.mp4`` and ``report.json`` into
``--out``. The video is read twice (analysis, rendering), streamed in chunks, so memory does not
grow with the clip's length beyond a few bytes of boxes and a compressed mask per frame.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2

from .config import CueConfig, FaceConfig, LocationConfig, PoseConfig, SegmentConfig
from .frames import VideoSource, read_image
from .reference import find_reference
from .triplet import alignment_for, analyse, render, render_preview, summary

log = logging.getLogger(__name__)

OUTPUTS = ("pose", "face", "location", "preview")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driving", required=True, help="driving video file (any format OpenCV reads)")
    parser.add_argument("--reference", help="reference image; the cues are aligned to it and rendered at its size")
    parser.add_argument("--reference-mask", help="mask image of the person in the reference (white = person)")
    parser.add_argument("--out", required=True, help="folder for the cue videos and report.json")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames")
    parser.add_argument("--person-index", type=int, default=0, help="whom to follow: 0 = largest person, 1 = next...")
    parser.add_argument("--cutoff", type=float, default=PoseConfig.cutoff, help="pose low-pass sigma, cycles/pixel")
    parser.add_argument("--greyscale", action="store_true", help="greyscale pose cue")
    parser.add_argument("--softness", type=float, default=LocationConfig.softness, help="mask edge blur, pixels")
    parser.add_argument("--grid", type=int, default=LocationConfig.grid, help="body mask grid cell, pixels (0 = off)")
    parser.add_argument("--face-size", type=int, help="face cue side in pixels (default: the pose cue's size)")
    parser.add_argument("--segmenter-onnx", help="optional ONNX person segmenter run by cv2.dnn")
    parser.add_argument("--face-onnx", help="optional YuNet face detector .onnx")
    parser.add_argument("--chunk-frames", type=int, default=CueConfig.chunk_frames, help="frames processed at once")


def config_from(args: argparse.Namespace) -> CueConfig:
    size = (args.face_size, args.face_size) if args.face_size else None
    return CueConfig(
        segment=SegmentConfig(person_index=args.person_index, onnx_path=args.segmenter_onnx),
        pose=PoseConfig(cutoff=args.cutoff, greyscale=args.greyscale),
        face=FaceConfig(size=size, onnx_path=args.face_onnx),
        location=LocationConfig(softness=args.softness, grid=args.grid),
        chunk_frames=args.chunk_frames,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    source = VideoSource(args.driving, args.max_frames)
    reference = None
    if args.reference:
        mask = cv2.imread(args.reference_mask, cv2.IMREAD_GRAYSCALE) if args.reference_mask else None
        reference = find_reference(read_image(args.reference), mask, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    track = analyse(source, config, progress=_log_progress)
    alignment = alignment_for(track, reference)
    writers: dict[str, cv2.VideoWriter] = {}
    try:
        for chunk in render(source, track, alignment, config, progress=_log_progress):
            for name, video in zip(OUTPUTS, (chunk.pose, chunk.face, chunk.location, chunk.preview())):
                if name not in writers:
                    writers[name] = _writer(out / f"{name}.mp4", source.fps, video.shape)
                for frame in video:
                    writers[name].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        for writer in writers.values():
            writer.release()
    report = summary(track.person, track.face_found, track.quality, alignment)
    report["outputs"] = {name: f"{name}.mp4" for name in OUTPUTS}
    report["quality"] = [round(float(q), 3) for q in track.quality]
    (out / "report.json").write_text(json.dumps(report, indent=1))
    log.info("wrote %s: %d frames, %d with a person, %d with a face", out, report["frames"],
             report["frames_with_person"], report["frames_with_face"])
    return 0


def _writer(path: Path, fps: float, shape: tuple[int, ...]) -> cv2.VideoWriter:
    height, width = shape[1:3]
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))


def _log_progress(done: int, total: int) -> None:
    if done % 100 == 0 or done == total:
        log.info("%d/%d", done, total)
