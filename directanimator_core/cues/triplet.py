"""The Driving Cue Triplet (DirectAnimator §3): pose, face and location cues from a driving video.

Two passes over the frames, each streamed in chunks so memory stays bounded on long videos:
1. ``analyse``: follow one person, cut their mask (kept PNG-compressed), find their face; only
   boxes, flags and compressed masks are kept per frame.
2. ``render``: smooth the face boxes over time, align driver to reference, and render the cues
   chunk by chunk (uint8 throughout; only one chunk is ever float).
``build_triplet`` collects the chunks into one ``CueTriplet`` for callers that hold a short clip.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from typing import AbstractSet, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from ..errors import CueError, InputError
from . import align, checks, face, lanes, location, lowpass, segment, tracking
from .boxes import Box, mask_box
from .config import AlignConfig, CueConfig
from .frames import (ArraySource, FrameSource, ScaledSource, analysis_scale, check_frames, check_masks, chunk_size,
                     stack_frames)
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
    masks: tuple[bytes, ...]  # PNG of each person mask: (H, W) uint8, or at the analysis size (see mask)
    suspect_switch: Optional[np.ndarray] = None  # (F,) bool, likely on someone else (checks.suspect_switches)
    mostly_background: Optional[np.ndarray] = None  # (F,) bool (checks.mostly_background)
    reacquired: int = 0  # times the tracker found the person again after losing them (tracking.py)

    @property
    def num_frames(self) -> int:
        return len(self.person)

    def mask(self, index: int) -> np.ndarray:
        """Frame ``index``'s person mask (H, W) uint8 0/255, at the frames' full size (a mask cut at the
        analysis size is brought back to it, smoothly: linear, then thresholded)."""
        mask = cv2.imdecode(np.frombuffer(self.masks[index], np.uint8), cv2.IMREAD_GRAYSCALE)
        if mask.shape == (self.height, self.width):
            return mask
        full = cv2.resize(mask, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return cv2.threshold(full, 127, 255, cv2.THRESH_BINARY)[1]


LOW_QUALITY = 0.1  # the most a flagged frame's quality may be (FrameFlags)
FLAG_WORDS = {"blank": "blank (nobody found)", "off_canvas": "off the canvas (the aligned driver left the "
              "reference's picture; try align in-place or face-in-place)", "suspect_switch": "on a possibly "
              "switched person", "mostly_background": "mostly background"}


@dataclass(frozen=True)
class FrameFlags:
    """Per-frame reasons not to trust a cue, each (F,) bool; a flagged frame's quality is at most LOW_QUALITY.

    blank: nobody was found (the cue holds no driver). off_canvas: the driver was found, but the aligned
    body box lies mostly outside the canvas or no driver pixel lands on it. suspect_switch: the box
    jumped or the look changed (another person), or another person fit the track about as well (a close
    call: tracking.CLOSE_CALL). mostly_background: the mask is larger than a person, or (built-in segmenter)
    the camera moves (checks.motion_everywhere) and no face confirms that the cut-out is a person.
    """

    blank: np.ndarray
    off_canvas: np.ndarray
    suspect_switch: np.ndarray
    mostly_background: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.blank | self.off_canvas | self.suspect_switch | self.mostly_background

    def counts(self) -> dict[str, int]:
        return {f"frames_{name}": int(getattr(self, name).sum()) for name in FLAG_WORDS}

    def frames(self) -> dict[str, list[int]]:
        """The flagged frames' indices, by flag."""
        return {name: np.nonzero(getattr(self, name))[0].tolist() for name in FLAG_WORDS}

    def warning(self) -> Optional[str]:
        """One line that says which frames not to trust, or None when no frame is flagged."""
        parts = [f"{int(getattr(self, name).sum())} {words}" for name, words in FLAG_WORDS.items()
                 if getattr(self, name).any()]
        if not parts:
            return None
        return (f"cues: of {len(self.blank)} frames, " + "; ".join(parts) +
                f"; their quality is at most {LOW_QUALITY}")

    @staticmethod
    def concatenate(flags: Sequence["FrameFlags"]) -> "FrameFlags":
        return FrameFlags(*(np.concatenate([getattr(f, name) for f in flags]) for name in FLAG_WORDS))


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
    flags: Optional[FrameFlags] = None  # why frames are not to be trusted (None: not judged)

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
        return summary(self.person, self.face_found, self.quality, self.alignment, self.flags)


def render_preview(pose: np.ndarray, face_cue: np.ndarray, loc: np.ndarray, height: int) -> np.ndarray:
    panels = []
    for video in (pose, face_cue, loc):
        width = max(1, round(video.shape[2] * height / video.shape[1]))
        panels.append(np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in video]))
    gap = np.full((len(pose), height, 4, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)


def summary(person: np.ndarray, face_found: np.ndarray, quality: np.ndarray, alignment: align.Alignment,
            flags: Optional[FrameFlags] = None) -> dict:
    """The report of a clip's cues: counts, the alignment and, when judged, the flagged frames and a warning."""
    faces = int(face_found.sum())
    report = {
        "frames": int(len(person)),
        "frames_with_person": int(person.sum()),
        "frames_with_face": faces,
        "face_cue": "blank: no face was found in any frame" if faces == 0 else "ok",
        "mean_quality": round(float(quality.mean()), 4) if len(quality) else 0.0,
        "alignment": alignment.as_dict(),
    }
    if flags is not None:
        report.update(flags.counts())
        report["flagged_frames"] = flags.frames()
        report["warning"] = flags.warning()
    return report


class FrameRow(NamedTuple):
    """What the analysis keeps of one frame."""

    box: Optional[Box]  # the person's tight box, or the tracker's guess when not found
    found: bool
    pixels: float  # mask area, for the next frame's steadiness score
    quality: float
    face: Optional[Box]
    mask_png: bytes
    signature: np.ndarray  # colour signature of the masked pixels (checks.signature)
    background: bool  # the mask is mostly background (checks.mostly_background)


# -- pass 1: analysis ------------------------------------------------------------------------------
ROWS_IN_FLIGHT = 3  # frames decided by the tracker and waiting for their cut-out (memory: a few frames)


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
    # Large frames are analysed downscaled (config.analysis_side); the track comes back at full size.
    scale = analysis_scale(source.height, source.width, config.analysis_side)
    work = source if scale == 1.0 else ScaledSource(source, scale)
    tracker = tracking.PersonTracker(config.segment, work.height, work.width, config.face.onnx_path)
    background = None
    if masks is not None:
        masks = check_masks(masks, source.num_frames, source.height, source.width)
    else:
        # Frames sampled across the clip give the background and, before any frame is analysed, tell
        # whether anyone is there to follow (a clip without a person fails here, not at its end).
        sample = segment.sample_frames(work, config.segment.background_samples, config.chunk_frames)
        background = segment.background_of(sample, source.num_frames)  # (h, w, 3) at the working size
        segment.survey(sample, background, tracker, source.num_frames)
    rows: list[FrameRow] = []
    held: list[tuple[np.ndarray, Optional[np.ndarray]]] = []  # (frame, motion) the tracker has not decided on
    last_face: list[Optional[Box]] = [None]  # the last face found, where the next is looked for first

    def add(frame: np.ndarray, given: Optional[np.ndarray], box: Optional[Box], found: bool,
            moving: Optional[np.ndarray]) -> None:
        # Runs on the lane, one frame after another: each row hangs on the one before (its face, its area).
        small = given if given is None or work is source else _resized_mask(given, work.width, work.height)
        row = _analyse_frame(frame, small, box, found, moving, config, last_face[0], rows[-1].pixels if rows else 0.0,
                             rows[-1].face if rows else None, face_first=not rows)
        if small is not given:  # the user's mask is kept as given, at the full size
            row = row._replace(mask_png=cv2.imencode(".png", given)[1].tobytes())
        last_face[0] = row.face if row.face is not None else last_face[0]
        rows.append(row)

    # The tracker decides each frame here while the lane cuts out the frames it has decided.
    seen, reported = 0, 0

    def report() -> None:
        nonlocal reported
        if progress and len(rows) > reported:
            reported = len(rows)
            progress(reported, 2 * source.num_frames)

    with lanes.Lane(ROWS_IN_FLIGHT) as lane:
        for frames in work.chunks(config.chunk_frames):
            for frame in frames:
                _check_stop(should_stop, seen)
                seen += 1
                if masks is not None:
                    lane.submit(add, frame, masks[seen - 1], None, False, None)
                else:
                    held.append((frame, segment.motion_mask(frame, background, config.segment.motion_threshold)))
                    # The tracker holds the first frames while it chooses whom to follow (a bounded look-ahead).
                    for box, found in tracker.push(*held[-1], seen - 1):
                        kept, moving = held.pop(0)
                        lane.submit(add, kept, None, box, found, moving)
                report()
        for box, found in tracker.flush():
            kept, moving = held.pop(0)
            lane.submit(add, kept, None, box, found, moving)
        lane.drain()
    report()
    if not rows:
        raise InputError("the driving video gave 0 frames; connect a video with at least one frame")
    if not any(r.found for r in rows):
        raise segment.no_person_error(len(rows), tracker.best_count, config.segment.person_index)
    track = _track(rows, work, config, tracker.reacquired, tracker.close_calls)
    return track if work is source else _at_full_size(track, work)


def _resized_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 0/255 mask at (height, width), by area (a thin part stays while it covers half a pixel)."""
    return np.where(cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA) > 127, 255, 0).astype(np.uint8)


def _at_full_size(track: DriverTrack, work: ScaledSource) -> DriverTrack:
    """A track of downscaled frames with its boxes at the full size; masks stay as analysed (``mask``
    brings each back to the full size when it is read)."""
    return replace(track, height=work.source.height, width=work.source.width,
                   body_boxes=track.body_boxes * work.factors, face_boxes=track.face_boxes * work.factors)


def _analyse_frame(frame: np.ndarray, given: Optional[np.ndarray], box: Optional[Box], found: bool,
                   moving: Optional[np.ndarray], config: CueConfig, last_face: Optional[Box],
                   last_area: float, seed_face: Optional[Box] = None, face_first: bool = False) -> FrameRow:
    """One frame's row: from the user's mask ``given``, or the person cut out of the tracker's ``box``,
    seeded by ``seed_face`` (the previous frame's face) or, ``face_first`` (the first frame), by this
    frame's face, looked for first."""
    cut_from = None  # the segmenter's own person box, found apart from the mask
    if given is not None:
        mask, box = given, mask_box(given)
        found = box is not None
    else:
        if face_first:
            seed_face = face.find_face(frame, box, config.face, None) if found else None
        mask = segment.cut_person(frame, box, moving, config.segment, seed_face) if found else None
        mask = mask if mask is not None else np.zeros(frame.shape[:2], np.uint8)
        tight = mask_box(mask)
        found = found and tight is not None
        cut_from = box if found else None
        box = tight if found else box
        mask = mask if found else np.zeros_like(mask)  # a coasted guess is flagged, not passed off as a cut
    pixels = float(np.count_nonzero(mask))
    score = segment.quality(mask, box, found, last_area)
    face_box = face.find_face(frame, box, config.face, last_face, previous=seed_face) if found else None
    # a moving camera voids the motion evidence: a person with no face in view may be a textured wall
    background = checks.mostly_background(pixels, float(mask.size), face_box, cut_from) or \
        (cut_from is not None and face_box is None and checks.motion_everywhere(moving))
    return FrameRow(box, found, pixels, score, face_box, cv2.imencode(".png", mask)[1].tobytes(),
                    checks.signature(frame, mask) if found else np.zeros(int(np.prod(checks.BINS)), np.float32),
                    background)


def _track(rows: list[FrameRow], source: FrameSource, config: CueConfig, reacquired: int = 0,
           close_calls: AbstractSet[int] = frozenset()) -> DriverTrack:
    nan_box = np.full(4, np.nan)
    body = np.stack([r.box if r.box is not None else nan_box for r in rows])
    person = np.array([r.found for r in rows])
    face_found = np.array([r.face is not None for r in rows])
    faces = np.stack([r.face if r.face is not None else np.zeros(4) for r in rows])
    switch = checks.suspect_switches(body, person, np.stack([r.signature for r in rows]))
    switch[sorted(close_calls)] = True  # another person fit as well (tracking.CLOSE_CALL); found frames only
    background = np.array([r.background for r in rows]) & person
    quality = np.array([r.quality for r in rows], np.float32)
    quality = np.where(switch | background, np.minimum(quality, LOW_QUALITY), quality).astype(np.float32)
    return DriverTrack(
        height=source.height, width=source.width, body_boxes=body, person=person, quality=quality,
        face_boxes=face.smooth_faces(faces, face_found, config.face.smooth_frames), face_found=face_found,
        masks=tuple(r.mask_png for r in rows), suspect_switch=switch, mostly_background=background,
        reacquired=reacquired,
    )


def _check_stop(should_stop: Optional[StopCheck], done: int) -> None:
    if should_stop is not None and should_stop():
        raise CueStopped(f"stopped on request after {done} frames; run again to extract the cues")


# -- alignment -------------------------------------------------------------------------------------
def alignment_for(track: DriverTrack, reference: Optional[ReferenceBoxes],
                  config: AlignConfig = AlignConfig()) -> align.Alignment:
    """Driver-to-reference alignment in ``config.mode`` (align.py; identity without a reference).

    fixed and in-place are anchored at the first frame with a person; face and face-in-place at the
    first frame with a person and a face (the body widths at the first frame with a person when the
    driver or the reference shows no face). Where the reference has a face and the driver shows one,
    the location cue's face mask is the reference's own face, moved as the driver's aligned face moves.
    """
    if reference is None:
        return align.identity(track.height, track.width)
    anchor = int(np.argmax(track.person))
    faces = np.nonzero(track.person & track.face_found)[0]
    if config.framing == "face" and reference.face is not None and len(faces):
        anchor = int(faces[0])
        alignment = align.align_faces(track.face_boxes[anchor], reference.face, track.body_boxes[anchor],
                                      reference.body, reference.size, anchor)
    elif config.framing == "face":
        alignment = align.align_widths(track.body_boxes[anchor], reference.body, reference.size, anchor,
                                       align.shoulder_width(track.mask(anchor)), reference.shoulders)
    else:
        alignment = align.align_boxes(track.body_boxes[anchor], reference.body, reference.size, anchor)
    if config.in_place:
        alignment = align.keep_in_place(alignment, track.body_boxes, track.person, config.smooth_frames)
    alignment = replace(alignment, mode=config.mode)
    if len(faces):
        alignment = align.with_faces(alignment, reference.face, track.face_boxes[faces[0]], int(faces[0]))
    return alignment


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

    def spans() -> Iterator[tuple[np.ndarray, slice]]:
        start = 0
        for frames in source.chunks(chunk_size(config.chunk_frames, source.height, source.width)):
            stop = min(start + len(frames), track.num_frames)
            if stop <= start:
                return
            _check_stop(should_stop, track.num_frames + start)
            yield frames[:stop - start], slice(start, stop)
            start = stop

    # Two chunks render side by side (lanes.ordered_map); they come back in order.
    done = 0
    for chunk in lanes.ordered_map(lambda item: _render_chunk(*item, track, alignment, config, face_size), spans()):
        yield chunk
        done += chunk.num_frames
        if progress:
            progress(track.num_frames + done, 2 * track.num_frames)


def _render_chunk(frames: np.ndarray, span: slice, track: DriverTrack, alignment: align.Alignment,
                  config: CueConfig, face_size: tuple[int, int]) -> CueTriplet:
    masks = np.stack([track.mask(i) for i in range(span.start, span.stop)])  # (n, H, W) uint8
    grey = np.uint8(config.pose.background)
    cut = np.where(masks[..., None] > 0, frames, grey)  # the driver on neutral grey
    # Filter after the warp, so the cut-off means the same on every driver: cycles per pixel of
    # a body already scaled to the reference's size.
    pose = align.warp(cut, alignment, fill=config.pose.background, start=span.start)
    pose = lowpass.lowpass(pose, config.pose.cutoff, config.pose.greyscale, flat=config.pose.background)
    placed = align.warp(masks, alignment, fill=0, start=span.start)  # (n, H', W') the driver on the canvas
    body = location.soften(placed, config.location.softness, config.location.grid)
    face_found = track.face_found[span]
    face_boxes = track.face_boxes[span]
    faces = location.face_masks(face_boxes, face_found, alignment, span.start)
    flags = frame_flags(track, span, alignment, placed)
    quality = np.where(flags.any, np.minimum(track.quality[span], LOW_QUALITY), track.quality[span])
    return CueTriplet(
        pose=pose,
        face=face.crop_faces(frames, face_boxes, face_found, config.face, face_size),
        body_mask=body,
        face_mask=location.soften(faces, config.location.softness, 0),
        person=track.person[span], face_found=face_found, quality=quality.astype(np.float32), alignment=alignment,
        flags=flags,
    )


OFF_CANVAS_SHARE = 0.5  # an aligned body box with under this share of the anchor frame's on the canvas is off it


def frame_flags(track: DriverTrack, span: slice, alignment: align.Alignment, placed: np.ndarray) -> FrameFlags:
    """The flags of frames ``span``: from the analysis (blank, switch, background) and from where the
    aligned driver lands. Off the canvas: no driver pixel lands on it, or less of the aligned body box
    than OFF_CANVAS_SHARE of the share the anchor frame has on it (a full-body driver framed by the face
    on a portrait has only its upper half on the canvas from the start, as the reference does).

    Args:
        track: the analysis.
        span: the frames of this chunk.
        alignment: the driver-to-canvas map.
        placed: (n, H', W') uint8 the driver's masks warped onto the canvas.
    """
    person = track.person[span]
    anchor = track.body_boxes[alignment.anchor_frame] if alignment.anchor_frame < track.num_frames else None
    framed = 1.0
    if anchor is not None and np.isfinite(anchor).all():
        framed = align.inside_fraction(alignment.apply(anchor, alignment.anchor_frame), alignment.size) or 1.0
    off = np.zeros(len(person), bool)
    for k in np.nonzero(person)[0]:
        box = alignment.apply(track.body_boxes[span.start + k], span.start + k)
        share = align.inside_fraction(box, alignment.size)
        off[k] = share < OFF_CANVAS_SHARE * framed or not placed[k].any()
    no_flags = np.zeros(len(person), bool)
    switch = track.suspect_switch[span] if track.suspect_switch is not None else no_flags
    background = track.mostly_background[span] if track.mostly_background is not None else no_flags
    return FrameFlags(blank=~person, off_canvas=off, suspect_switch=switch & person,
                      mostly_background=background & person)


def concatenate(chunks: Iterable[CueTriplet], num_frames: Optional[int] = None) -> CueTriplet:
    """The chunks as one CueTriplet. Given ``num_frames`` (their frames in all), the chunks may be a stream:
    each is copied into the whole clip's arrays as it comes and let go, so the clip is held once."""
    stream = iter(chunks)
    first = next(stream)
    if num_frames is None:
        listed = [first, *stream]
        stream, num_frames = iter(listed), sum(c.num_frames for c in listed)
    else:
        stream = itertools.chain([first], stream)
    videos = {name: np.empty((num_frames, *getattr(first, name).shape[1:]), np.uint8) for name in _VIDEOS}
    person, face_found, quality, flags = [], [], [], []
    start = 0
    for chunk in stream:
        for name, video in videos.items():
            video[start:start + chunk.num_frames] = getattr(chunk, name)
        start += chunk.num_frames
        person.append(chunk.person), face_found.append(chunk.face_found), quality.append(chunk.quality)
        flags.append(chunk.flags)
    if start != num_frames:
        raise ValueError(f"the chunks hold {start} frames, not {num_frames}")
    return CueTriplet(**videos, person=np.concatenate(person), face_found=np.concatenate(face_found),
                      quality=np.concatenate(quality), alignment=first.alignment,
                      flags=None if first.flags is None else FrameFlags.concatenate(flags))


_VIDEOS = ("pose", "face", "body_mask", "face_mask")  # the CueTriplet fields that are (F, ...) uint8 videos


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
    alignment = alignment_for(track, ref_boxes, config.align)
    return concatenate(render(source, track, alignment, config, progress, should_stop), track.num_frames)


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
    scale = analysis_scale(source.height, source.width, config.analysis_side)
    work = source if scale == 1.0 else ScaledSource(source, scale)  # faces found at the analysis size
    to_work = np.ones(4) if work is source else 1 / work.factors
    boxes, last = [], None
    for chunk in work.chunks(config.chunk_frames):
        for frame in chunk:
            _check_stop(should_stop, len(boxes))
            person = None if masks is None else mask_box(masks[len(boxes)])
            person = person if person is None else person * to_work
            found = None if masks is not None and person is None else face.find_face(frame, person, config.face, last)
            last = found if found is not None else last
            boxes.append(found)
            if progress:
                progress(len(boxes), 2 * source.num_frames)
    found = np.array([b is not None for b in boxes])
    smoothed = face.smooth_faces(np.stack([b if b is not None else np.zeros(4) for b in boxes]), found,
                                 config.face.smooth_frames) / to_work  # (F, 4) at the full size
    size = config.face.size or (source.height, source.width)
    out, start = [], 0
    for chunk in source.chunks(chunk_size(config.chunk_frames, source.height, source.width)):
        span = slice(start, start + len(chunk))
        out.append(face.crop_faces(chunk, smoothed[span], found[span], config.face, size))
        start += len(chunk)
        if progress:
            progress(source.num_frames + start, 2 * source.num_frames)
    return np.concatenate(out), found
