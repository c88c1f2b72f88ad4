"""Fetch the real footage the demo and the tests use into .cache/media (once; atomic writes).

Prints the paths of a driving clip (Debian opencv-doc's vtest.avi, pedestrians) and a reference
image (scikit-image's astronaut, public domain).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.media import MEDIA, astronaut, opencv_doc_file  # noqa: E402


def main() -> None:
    import cv2

    driving = opencv_doc_file("vtest.avi")
    reference = MEDIA / "astronaut.png"
    if not reference.is_file():
        partial = MEDIA / "astronaut.partial.png"
        cv2.imwrite(str(partial), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
        partial.replace(reference)
    print(driving)
    print(reference)


if __name__ == "__main__":
    main()
