"""Where the test caches live: inside the repo, git-ignored, shared by every test run."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DIRECTANIMATOR_TEST_CACHE", REPO / ".cache"))
ARTIFACTS = REPO / "test-artifacts"  # screenshots and other outputs worth looking at
