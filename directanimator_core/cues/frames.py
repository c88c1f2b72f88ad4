"""Driving frames as a re-readable stream of uint8 RGB chunks, so long videos never sit in memory.

A source is read several times (background sample, analysis, rendering); each read yields chunks
``(n, H, W, 3)`` uint8 RGB. ``ArraySource`` wraps frames already in memory, ``VideoSource`` reads a
file with ``cv2.VideoCapture`` chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Protocol, Sequence

import cv2
import numpy as np

from ..errors import InputError


class FrameSource(Protocol):
    num_frames: int
    height: int
    width: int

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Yield the frames in order as (n, H, W, 3) uint8 RGB arrays of at most ``size`` frames."""
        ...


def check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate a frame batch (F, H, W, 3) uint8 and return it; one-line errors for what is wrong."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise InputError(f"{name} has shape {shape}; expected (frames, height, width, 3) RGB")
    if frames.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (0 frames); connect a video with at least one frame")
    if frames.dtype != np.uint8:
        raise InputError(f"{name} has dtype {frames.dtype}; expected uint8 (convert 0..1 floats with *255)")
    if min(frames.shape[1:3]) < 16:
        raise InputError(f"{name} are {frames.shape[2]}x{frames.shape[1]} pixels; need at least 16x16")
    return frames


def stack_frames(frames: Sequence[np.ndarray], name: str = "frames") -> np.ndarray:
    """Stack a list of (H, W, 3) frames, naming the first one whose size differs from frame 0."""
    if len(frames) == 0:
        raise InputError(f"{name} is an empty batch (0 frames); connect a video with at least one frame")
    first = frames[0].shape
    for index, frame in enumerate(frames):
        if frame.shape != first:
            raise InputError(f"{name}[{index}] is {frame.shape}, frame 0 is {first}; all frames must have one "
                             "size (resize them first)")
    return check_frames(np.stack(frames), name)


def check_masks(masks: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Validate person masks (F, H, W) against the frames; returns them as uint8 0/255."""
    if masks.ndim != 3:
        raise InputError(f"mask has shape {masks.shape}; expected (frames, height, width)")
    if masks.shape[0] != num_frames or masks.shape[1:] != (height, width):
        raise InputError(f"mask is {masks.shape[0]} x {masks.shape[2]}x{masks.shape[1]} but the video is "
                         f"{num_frames} x {width}x{height}; give one mask per frame at the frames' size")
    if masks.dtype == np.uint8:
        return np.where(masks > 127, 255, 0).astype(np.uint8)
    return np.where(masks > 0.5, 255, 0).astype(np.uint8)


@dataclass(frozen=True)
class ArraySource:
    """Frames already in memory, (F, H, W, 3) uint8 RGB."""

    frames: np.ndarray

    def __post_init__(self) -> None:
        check_frames(self.frames)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.num_frames, size):
            yield self.frames[start:start + size]


@dataclass(frozen=True)
class VideoSource:
    """A video file read with ``cv2.VideoCapture``, streamed; ``max_frames`` trims it."""

    path: str
    max_frames: Optional[int] = None

    def __post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise InputError(f"driving video {self.path} does not exist; give the path of a video file")
        capture = cv2.VideoCapture(self.path)
        ok, frame = capture.read()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        if not ok:
            raise InputError(f"driving video {self.path} has no readable frame; convert it to mp4/avi first")
        count = count if count > 0 else 1
        if self.max_frames is not None:
            count = min(count, self.max_frames)
        object.__setattr__(self, "_info", (count, frame.shape[0], frame.shape[1], fps or 25.0))

    @property
    def num_frames(self) -> int:
        return self._info[0]

    @property
    def height(self) -> int:
        return self._info[1]

    @property
    def width(self) -> int:
        return self._info[2]

    @property
    def fps(self) -> float:
        return self._info[3]

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(self.path)
        try:
            batch: list[np.ndarray] = []
            for index in range(self.num_frames):
                ok, frame = capture.read()
                if not ok:
                    break  # the container's frame count overstated the stream; the report says how many
                if frame.shape[:2] != (self.height, self.width):
                    raise InputError(f"frame {index} of {self.path} is {frame.shape[1]}x{frame.shape[0]}, frame 0 "
                                     f"is {self.width}x{self.height}; re-encode the video at one size")
                batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                if len(batch) == size:
                    yield np.stack(batch)
                    batch = []
            if batch:
                yield np.stack(batch)
        finally:
            capture.release()


CHUNK_PIXELS = 16 * 1024 * 1024  # pixels of a chunk of full-size frames; larger frames come in fewer a chunk


def chunk_size(frames: int, height: int, width: int) -> int:
    """``frames`` a chunk, fewer for frames so large that a chunk would pass CHUNK_PIXELS (at least one)."""
    return max(1, min(frames, CHUNK_PIXELS // max(height * width, 1)))


def analysis_scale(height: int, width: int, side: int) -> float:
    """The factor frames are analysed at: 1 up to a long side of ``side`` pixels, smaller above."""
    return min(1.0, side / max(height, width))


class ScaledSource:
    """Another source's frames resized by ``scale`` (INTER_AREA), chunk by chunk: what the analysis of a
    large clip reads, so no background sample or kept frame is ever at the full size."""

    def __init__(self, source: FrameSource, scale: float) -> None:
        self.source, self.num_frames = source, source.num_frames
        self.height = max(16, round(source.height * scale))
        self.width = max(16, round(source.width * scale))

    @property
    def factors(self) -> np.ndarray:
        """(4,) multipliers that take an (x0, y0, x1, y1) box from these frames to the source's."""
        fx, fy = self.source.width / self.width, self.source.height / self.height
        return np.array([fx, fy, fx, fy])

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        for frames in self.source.chunks(chunk_size(size, self.source.height, self.source.width)):
            yield np.stack([cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
                            for frame in frames])


def read_image(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"reference image {path} cannot be read; give a PNG or JPEG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
