"""Every shipped workflow loads in the real ComfyUI frontend, in headless Chromium, with no missing
node type and no node in error. A screenshot per workflow lands in test-artifacts/workflows/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.comfyui import ComfyServer
from harness.pack import workflow_files
from harness.paths import ARTIFACTS, REPO

pytestmark = [pytest.mark.comfy, pytest.mark.browser]

SCRIPT = REPO / "tests" / "browser" / "load_workflows.mjs"


def load_in_browser(server: ComfyServer, files: list[Path], shots: Path) -> dict:
    if shutil.which("node") is None or not Path("/usr/bin/chromium").exists():
        pytest.fail("the browser tests need node and Debian's chromium: run scripts/test.sh, which installs them")
    if not (SCRIPT.parent / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is missing: run scripts/test.sh (npm ci in tests/browser)")
    shots.mkdir(parents=True, exist_ok=True)
    server.post("/api/settings/Comfy.TutorialCompleted", True)  # or a templates dialog covers the page
    result = subprocess.run(
        ["node", str(SCRIPT), server.url, str(shots), *map(str, files)],
        cwd=SCRIPT.parent, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_there_are_workflows() -> None:
    assert workflow_files(), "workflows/ ships no workflow"


def test_every_workflow_loads_in_the_frontend(comfy_server: ComfyServer) -> None:
    report = load_in_browser(comfy_server, workflow_files(), ARTIFACTS / "workflows")
    for path in workflow_files():
        entry = report[str(path)]
        assert entry["missing"] == [], f"{path.name}: unknown node types {entry['missing']}"
        assert entry["errors"] == [], f"{path.name}: nodes with errors {entry['errors']}"
        assert entry["promptError"] is None, f"{path.name}: {entry['promptError']}"
        assert Path(entry["screenshot"]).stat().st_size > 10_000


def test_browser_check_reports_a_missing_node(comfy_server: ComfyServer, tmp_path: Path) -> None:
    """The check above must be able to fail: an unknown node type is reported."""
    workflow = {
        "last_node_id": 1, "last_link_id": 0, "links": [], "groups": [], "config": {}, "extra": {},
        "version": 0.4,
        "nodes": [{"id": 1, "type": "DirectAnimatorNoSuchNode", "pos": [100, 100], "size": [300, 100],
                   "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                   "widgets_values": []}],
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(workflow))
    report = load_in_browser(comfy_server, [path], tmp_path / "shots")
    assert report[str(path)]["missing"] == ["DirectAnimatorNoSuchNode"]
