"""Shared fixtures: seeded CPU generators, real media, and one real ComfyUI server per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.comfyui import PACK_NAME, ComfyServer
from harness.paths import REPO


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ComfyUI 0.3.75 (or $COMFYUI_PATH) with this pack in custom_nodes, on 127.0.0.1."""
    base = tmp_path_factory.mktemp("comfy-base")
    server = ComfyServer(base=base, packs={PACK_NAME: REPO})
    server.start()
    try:
        yield server
    finally:
        server.stop()
