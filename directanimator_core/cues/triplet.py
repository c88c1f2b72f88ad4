"""The Driving Cue Triplet (DirectAnimator §3): pose, face and location cues from a driving video.

Two passes over the frames, each streamed in chunks so memory stays bounded on long videos:
1. ``analyse``: follow one person, cut their mask (kept PNG-compressed), find their face; only
   boxes, flags and compressed masks are kept per frame.
2. ``render``: smooth the face boxes over time, align driver to reference, and render the cues
   chunk by chunk (uint8 throughout; only one chunk is ever float).
``build_triplet`` collects the chunks into one ``CueTriplet`` for callers that hold a short clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from ..errors import CueError, InputError
from . import align, face, location, lowpass, segment
from .boxes import Box, mask_box
from .config import CueConfig
from .frames import ArraySource, FrameSource, check_frames, check_masks, stack_frames
from .reference import ReferenceBoxes, find_reference

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (frames done, frames in all), over both passes
StopCheck = Callable[[], bool]


class CueStopped(CueError):
    """The caller asked to stop (ComfyUI's interrupt, Ctrl-C)."""


@dataclass(frozen=True)
class DriverTrack:
    """What the analysis pass keeps per frame: boxes, flags, PNG-compressed person masks."""

    height: int
    width: int
    body_boxes: np.ndarray  # (F, 4) tight boxes of the person masks (driver pixels)
    person: np.ndarray  # (F,) bool, the followed person was found
    quality: np.ndarray  # (F,) float32 segmentation quality 0..1
    face_boxes: np.ndarray  # (F, 4) smoothed face boxes
    face_found: np.ndarray  # (F,) bool
    masks: tuple[bytes, ...]  # PNG of each (H, W) uint8 person mask

    @property
    def num_frames(self) -> int:
        return len(self.person)

    def mask(self, index: int) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(self.masks[index], np.uint8), cv2.IMREAD_GRAYSCALE)


@dataclass(frozen=True)
class CueTriplet:
    """The three cues of a driving clip, aligned to the reference (F frames).

    pose: (F, H, W, 3) uint8, the low-passed driver on neutral grey.
    face: (F, h, w, 3) uint8, the driver's face centred and zoomed; black where ``face_found`` is False.
    body_mask, face_mask: (F, H, W) uint8 0..255 soft masks: the location cue.
    """

    pose: np.ndarray
    face: np.ndarray
    body_mask: np.ndarray
    face_mask: np.ndarray
    person: np.ndarray  # (F,) bool
    face_found: np.ndarray  # (F,) bool
    quality: np.ndarray  # (F,) float32
    alignment: align.Alignment

    @property
    def num_frames(self) -> int:
        return len(self.pose)

    @property
    def location(self) -> np.ndarray:
        """The location cue as one video (F, H, W, 3) uint8: body mask in red, face mask in green."""
        return np.stack([self.body_mask, self.face_mask, np.zeros_like(self.body_mask)], axis=-1)

    def preview(self, height: int = 256) -> np.ndarray:
        """Side by side: pose | face | location, each scaled to ``height`` rows (F, height, W', 3) uint8."""
        return render_preview(self.pose, self.face, self.location, height)

    def report(self) -> dict:
        return summary(self.person, self.face_found, self.quality, self.alignment)


def render_preview(pose: np.ndarray, face_cue: np.ndarray, loc: np.ndarray, height: int) -> np.ndarray:
    panels = []
    for video in (pose, face_cue, loc):
        width = max(1, round(video.shape[2] * height / video.shape[1]))
        panels.append(np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in video]))
    gap = np.full((len(pose), height, 4, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)


def summary(person: np.ndarray, face_found: np.ndarray, quality: np.ndarray, alignment: align.Alignment) -> dict:
    faces = int(face_found.sum())
    return {
        "frames": int(len(person)),
        "frames_with_person": int(person.sum()),
        "frames_with_face": faces,
        "face_cue": "blank: no face was found in any frame" if faces == 0 else "ok",
        "mean_quality": round(float(quality.mean()), 4) if len(quality) else 0.0,
        "alignment": alignment.as_dict(),
    }


class FrameRow(NamedTuple):
    """What the analysis keeps of one frame."""

    box: Optional[Box]  # the person's tight box, or the tracker's guess when not found
    found: bool
    pixels: float  # mask area, for the next frame's steadiness score
    quality: float
    face: Optional[Box]
    mask_png: bytes


# -- pass 1: analysis ------------------------------------------------------------------------------
def analyse(source: FrameSource, config: CueConfig, masks: Optional[np.ndarray] = None,
            progress: Optional[Progress] = None, should_stop: Optional[StopCheck] = None) -> DriverTrack:
    """Follow the driver through the clip: masks, body and face boxes, per-frame flags.

    Args:
        source: the driving frames.
        config: cue settings.
        masks: optional (F, H, W) person masks (uint8 0..255 or float 0..1) from any segmenter;
            without them the built-in segmenter runs.
        progress: called with (frames done, frames in all); the total covers both passes.
        should_stop: polled once per frame; True stops with CueStopped.
    """
    tracker = segment.PersonTracker(config.segment, source.height, source.width)
    background = None
    if masks is not None:
        masks = check_masks(masks, source.num_frames, source.height, source.width)
    else:
        # Frames sampled across the clip give the background and, before any frame is analysed, tell
        # whether anyone is there to follow (a clip without a person fails here, not at its end).
        sample = segment.sample_frames(source, config.segment.background_samples, config.chunk_frames)
        background = segment.background_of(sample, source.num_frames)
        segment.survey(sample, background, tracker, source.num_frames)
    rows: list[FrameRow] = []
    face_box: Optional[Box] = None
    for frames in source.chunks(config.chunk_frames):
        for frame in frames:
            _check_stop(should_stop, len(rows))
            given = None if masks is None else masks[len(rows)]
            row = _analyse_frame(frame, len(rows), given, background, tracker, config, face_box,
                                 rows[-1].pixels if rows else 0.0)
            face_box = row.face if row.face is not None else face_box
            rows.append(row)
            if progress:
                progress(len(rows), 2 * source.num_frames)
    if not rows:
        raise InputError("the driving video gave 0 frames; connect a video with at least one frame")
    if not any(r.found for r in rows):
        raise segment.no_person_error(len(rows), tracker.best_count, config.segment.person_index)
    return _track(rows, source, config)


def _analyse_frame(frame: np.ndarray, index: int, given: Optional[np.ndarray], background: Optional[np.ndarray],
                   tracker: segment.PersonTracker, config: CueConfig, last_face: Optional[Box],
                   last_area: float) -> FrameRow:
    if given is not None:
        mask, box = given, mask_box(given)
        found = box is not None
    else:
        moving = segment.motion_mask(frame, background, config.segment.motion_threshold)
        box, found = tracker.step(frame, moving, index)
        mask = segment.cut_person(frame, box, moving, config.segment) if box is not None else None
        mask = mask if mask is not None else np.zeros(frame.shape[:2], np.uint8)
        tight = mask_box(mask)
        found = found and tight is not None
        box = tight if found else box
        mask = mask if found else np.zeros_like(mask)  # a coasted guess is flagged, not passed off as a cut
    pixels = float(np.count_nonzero(mask))
    score = segment.quality(mask, box, found, last_area)
    face_box = face.find_face(frame, box, config.face, last_face) if found else None
    return FrameRow(box, found, pixels, score, face_box, cv2.imencode(".png", mask)[1].tobytes())


def _track(rows: list[FrameRow], source: FrameSource, config: CueConfig) -> DriverTrack:
    nan_box = np.full(4, np.nan)
    body = np.stack([r.box if r.box is not None else nan_box for r in rows])
    face_found = np.array([r.face is not None for r in rows])
    faces = np.stack([r.face if r.face is not None else np.zeros(4) for r in rows])
    return DriverTrack(
        height=source.height, width=source.width, body_boxes=body,
        person=np.array([r.found for r in rows]), quality=np.array([r.quality for r in rows], np.float32),
        face_boxes=face.smooth_faces(faces, face_found, config.face.smooth_frames), face_found=face_found,
        masks=tuple(r.mask_png for r in rows),
    )


def _check_stop(should_stop: Optional[StopCheck], done: int) -> None:
    if should_stop is not None and should_stop():
        raise CueStopped(f"stopped on request after {done} frames; run again to extract the cues")


# -- alignment -------------------------------------------------------------------------------------
def alignment_for(track: DriverTrack, reference: Optional[ReferenceBoxes]) -> align.Alignment:
    """Driver-to-reference alignment anchored at the first frame with a person (identity without one)."""
    if reference is None:
        return align.identity(track.height, track.width)
    anchor = int(np.argmax(track.person))
    return align.align_boxes(track.body_boxes[anchor], reference.body, reference.size, anchor)


# -- pass 2: rendering -----------------------------------------------------------------------------
def render(source: FrameSource, track: DriverTrack, alignment: align.Alignment, config: CueConfig,
           progress: Optional[Progress] = None, should_stop: Optional[StopCheck] = None) -> Iterator[CueTriplet]:
    """Render the cues chunk by chunk; each chunk is a CueTriplet of at most ``config.chunk_frames``.

    Args:
        source: the same driving frames that were analysed.
        track: the analysis of those frames.
        alignment: driver-to-canvas map (``alignment_for``).
        config: cue settings.
        progress: called with (frames done, frames in all) over both passes.
        should_stop: polled once per chunk; True stops with CueStopped.
    """
    face_size = config.face.size or alignment.size
    start = 0
    for frames in source.chunks(config.chunk_frames):
        stop = min(start + len(frames), track.num_frames)
        frames = frames[:stop - start]
        if len(frames) == 0:
            break
        _check_stop(should_stop, track.num_frames + start)
        yield _render_chunk(frames, track, slice(start, stop), alignment, config, face_size)
        start = stop
        if progress:
            progress(track.num_frames + start, 2 * track.num_frames)


def _render_chunk(frames: np.ndarray, track: DriverTrack, span: slice, alignment: align.Alignment,
                  config: CueConfig, face_size: tuple[int, int]) -> CueTriplet:
    masks = np.stack([track.mask(i) for i in range(span.start, span.stop)])  # (n, H, W) uint8
    grey = np.uint8(config.pose.background)
    cut = np.where(masks[..., None] > 0, frames, grey)  # the driver on neutral grey
    # Filter after the warp, so the cut-off means the same on every driver: cycles per pixel of
    # a body already scaled to the reference's size.
    pose = align.warp(cut, alignment, fill=config.pose.background)
    pose = lowpass.lowpass(pose, config.pose.cutoff, config.pose.greyscale)
    body = location.soften(align.warp(masks, alignment, fill=0), config.location.softness, config.location.grid)
    face_found = track.face_found[span]
    face_boxes = track.face_boxes[span]
    faces = location.face_masks(face_boxes, face_found, alignment)
    return CueTriplet(
        pose=pose,
        face=face.crop_faces(frames, face_boxes, face_found, config.face, face_size),
        body_mask=body,
        face_mask=location.soften(faces, config.location.softness, 0),
        person=track.person[span], face_found=face_found, quality=track.quality[span], alignment=alignment,
    )


def concatenate(chunks: list[CueTriplet]) -> CueTriplet:
    first = chunks[0]
    return CueTriplet(
        pose=np.concatenate([c.pose for c in chunks]), face=np.concatenate([c.face for c in chunks]),
        body_mask=np.concatenate([c.body_mask for c in chunks]),
        face_mask=np.concatenate([c.face_mask for c in chunks]),
        person=np.concatenate([c.person for c in chunks]), face_found=np.concatenate([c.face_found for c in chunks]),
        quality=np.concatenate([c.quality for c in chunks]), alignment=first.alignment,
    )


def as_source(frames: np.ndarray | Sequence[np.ndarray] | FrameSource) -> FrameSource:
    """Frames as a FrameSource: an array (F, H, W, 3), a list of (H, W, 3) frames, or a source as is."""
    if isinstance(frames, np.ndarray):
        return ArraySource(check_frames(frames))
    if isinstance(frames, (list, tuple)):
        return ArraySource(stack_frames(frames))
    return frames


# -- one call --------------------------------------------------------------------------------------
def build_triplet(frames: np.ndarray | Sequence[np.ndarray] | FrameSource, config: CueConfig = CueConfig(),
                  reference: Optional[np.ndarray] = None, reference_mask: Optional[np.ndarray] = None,
                  masks: Optional[np.ndarray] = None, progress: Optional[Progress] = None,
                  should_stop: Optional[StopCheck] = None) -> CueTriplet:
    """Cut the Driving Cue Triplet from a driving clip, aligned to a reference image when one is given.

    Args:
        frames: (F, H, W, 3) uint8 RGB driving frames, a list of (H, W, 3) frames, or a FrameSource.
        config: cue settings.
        reference: (H', W', 3) uint8 RGB reference image; the cues are aligned to it and rendered at
            its size. None keeps the driver's frame.
        reference_mask: optional (H', W') mask of the person in the reference.
        masks: optional (F, H, W) person masks of the driver from any segmenter.
        progress: called with (frames done, frames in all).
        should_stop: polled as the work goes; True stops with CueStopped.
    """
    source = as_source(frames)
    ref_boxes = None
    if reference is not None:  # a bad reference fails before the driver is analysed
        ref_boxes = find_reference(reference, reference_mask, config)
    track = analyse(source, config, masks, progress, should_stop)
    alignment = alignment_for(track, ref_boxes)
    return concatenate(list(render(source, track, alignment, config, progress, should_stop)))


def with_face_size(config: CueConfig, height: int, width: int) -> CueConfig:
    """``config`` with the face cue rendered at (height, width)."""
    return replace(config, face=replace(config.face, size=(height, width)))


def build_face_cue(frames: np.ndarray | FrameSource, config: CueConfig = CueConfig(),
                   masks: Optional[np.ndarray] = None, progress: Optional[Progress] = None,
                   should_stop: Optional[StopCheck] = None) -> tuple[np.ndarray, np.ndarray]:
    """The face cue alone, without segmenting the driver: faces (F, h, w, 3) uint8 and found (F,) bool.

    Args:
        frames: (F, H, W, 3) uint8 RGB driving frames, or a FrameSource.
        config: cue settings (``config.face.size`` None keeps the frames' size).
        masks: optional (F, H, W) person masks; the face is then looked for in the person's box only.
        progress: called with (frames done, frames in all).
        should_stop: polled once per frame; True stops with CueStopped.
    """
    source = as_source(frames)
    if masks is not None:
        masks = check_masks(masks, source.num_frames, source.height, source.width)
    boxes, last = [], None
    for chunk in source.chunks(config.chunk_frames):
        for frame in chunk:
            _check_stop(should_stop, len(boxes))
            person = None if masks is None else mask_box(masks[len(boxes)])
            found = None if masks is not None and person is None else face.find_face(frame, person, config.face, last)
            last = found if found is not None else last
            boxes.append(found)
            if progress:
                progress(len(boxes), 2 * source.num_frames)
    found = np.array([b is not None for b in boxes])
    smoothed = face.smooth_faces(np.stack([b if b is not None else np.zeros(4) for b in boxes]), found,
                                 config.face.smooth_frames)
    size = config.face.size or (source.height, source.width)
    out, start = [], 0
    for chunk in source.chunks(config.chunk_frames):
        span = slice(start, start + len(chunk))
        out.append(face.crop_faces(chunk, smoothed[span], found[span], config.face, size))
        start += len(chunk)
        if progress:
            progress(source.num_frames + start, 2 * source.num_frames)
    return np.concatenate(out), found
