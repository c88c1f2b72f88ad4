"""What the pack promises, read from its own files: the README's node list, the workflows."""

from __future__ import annotations

import re
from pathlib import Path

from .paths import REPO

NODE_ROW = re.compile(r"^\|\s*`(DirectAnimator\w+)`\s*\|")


def documented_nodes() -> list[str]:
    """Node ids in the README's node table (rows that start with | `DirectAnimator...` |)."""
    text = (REPO / "README.md").read_text()
    return [m.group(1) for line in text.splitlines() if (m := NODE_ROW.match(line))]


def workflow_files() -> list[Path]:
    return sorted((REPO / "workflows").glob("*.json"))
