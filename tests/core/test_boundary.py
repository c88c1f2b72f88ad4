"""House rules of the core: it never imports ComfyUI, and importing it does no work."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from harness.paths import REPO

CORE = REPO / "directanimator_core"
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes",
                 "node_helpers", "server", "execution", "latent_preview"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_comfyui() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_roots(path) & COMFY_MODULES)
        for path in CORE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_boundary_scan_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import folder_paths\nfrom comfy.utils import ProgressBar\n")
    assert _imported_roots(sample) & COMFY_MODULES == {"folder_paths", "comfy"}


IMPORT_ALL = """
import importlib, pkgutil, sys
import directanimator_core
for module in pkgutil.walk_packages(directanimator_core.__path__, "directanimator_core."):
    if module.name != "directanimator_core.__main__":
        importlib.import_module(module.name)
import torch
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {comfy})
print("comfy:", loaded)
print("cuda initialised:", torch.cuda.is_initialized())
"""


def test_every_core_module_imports_without_comfyui_and_without_work() -> None:
    script = IMPORT_ALL.replace("{comfy}", repr(COMFY_MODULES))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "comfy: []" in result.stdout
    assert "cuda initialised: False" in result.stdout
