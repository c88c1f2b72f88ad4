"""The pack inside a real ComfyUI: it imports, every documented node is served, nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.comfyui import PACK_NAME, ComfyServer, copy_pack, pack_problems
from harness.pack import documented_nodes

pytestmark = pytest.mark.comfy


def test_pack_imports_and_serves_every_documented_node(comfy_server: ComfyServer) -> None:
    assert pack_problems(comfy_server, PACK_NAME, documented_nodes()) == []


def test_every_served_node_is_documented(comfy_server: ComfyServer) -> None:
    served = sorted(name for name in comfy_server.object_info() if name.startswith("DirectAnimator"))
    assert served == sorted(documented_nodes())


def test_nodes_describe_themselves(comfy_server: ComfyServer) -> None:
    """Artists read the description and the tooltip of every input; both must exist."""
    info = comfy_server.object_info()
    for name in documented_nodes():
        node = info[name]
        assert node["category"].startswith("DirectAnimator/"), name
        assert node["description"].strip(), f"{name} has no description"
        for section in ("required", "optional"):
            for input_name, spec in node["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_model_folder_is_registered(comfy_server: ComfyServer) -> None:
    folder = comfy_server.base / "models" / "directanimator"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe_adapter.safetensors").write_bytes(b"")
    assert "directanimator" in comfy_server.get("/models")
    assert "probe_adapter.safetensors" in comfy_server.get("/models/directanimator")


def _break_first_node_module(pack: Path) -> Path:
    """Insert an import of a module that does not exist at the top of a node module."""
    modules = re.search(r"NODE_MODULES[^=]*=\s*\(([^)]*)\)", (pack / "nodes" / "__init__.py").read_text())
    names = re.findall(r"['\"](\w+)['\"]", modules.group(1)) if modules else []
    target = pack / "nodes" / (f"{names[0]}.py" if names else "__init__.py")
    target.write_text("import directanimator_module_that_does_not_exist  # broken on purpose\n" + target.read_text())
    return target


def test_harness_catches_a_broken_node_module(tmp_path: Path) -> None:
    """The check above must be able to fail: a pack with a broken import is reported."""
    broken = copy_pack(tmp_path / "pack")
    _break_first_node_module(broken)
    with ComfyServer(base=tmp_path / "base", packs={PACK_NAME: broken}) as server:
        problems = pack_problems(server, PACK_NAME, documented_nodes())
    assert any("IMPORT FAILED" in line for line in problems), problems


def test_workflows_are_listed_as_templates(comfy_server: ComfyServer) -> None:
    from harness.pack import workflow_files

    templates = comfy_server.get("/workflow_templates").get(PACK_NAME, [])
    assert sorted(templates) == sorted(path.stem for path in workflow_files())
