"""Every node's execute, fuzzed within its declared input types inside ComfyUI's Python (harness/fuzz_nodes.py).

A call may succeed or refuse with the pack's own one-line error; a raw exception, a multi-line message or
a dead process (the OOM killer included) is a failure. The fuzz runs in a subprocess bounded in examples
and time, started and stopped by its own PID.
"""

from __future__ import annotations

import json

import pytest

from harness.comfyui import comfyui_dir
from harness.in_comfyui import prepare_base, run_script
from harness.pack import documented_nodes

pytestmark = [pytest.mark.comfy, pytest.mark.slow]
EXAMPLES = 60  # per node (about a minute in all)
LIMIT_S = 900


def test_no_node_input_within_its_declared_types_raises_a_raw_error(tmp_path) -> None:
    prepare_base(tmp_path)
    report = tmp_path / "fuzz.json"
    run_script("fuzz_nodes.py", [str(comfyui_dir()), str(tmp_path), str(EXAMPLES), str(report)], tmp_path, LIMIT_S)
    results = json.loads(report.read_text())
    nodes = {k: v for k, v in results.items() if not k.startswith("_")}
    # the adapter loader's one input is a combo of the adapter files: a run or two covers it
    assert sorted(nodes) == sorted(documented_nodes()) and all(v["examples"] >= 10 for k, v in nodes.items() if k != "DirectAnimatorAdapterLoader") \
        and nodes["DirectAnimatorAdapterLoader"]["examples"] >= 1, results
    findings = {node: v["findings"] for node, v in nodes.items() if v["findings"]}
    assert not findings, json.dumps(findings, indent=1)
    assert results["_admission"].startswith("InputError: a window of 5 frames at 4096x4096 needs about"), results
    # the fuzz reaches past the checks: every node also ran to completion on some inputs
    assert all(v["returned"] > 0 for v in nodes.values()), results
