"""The ComfyUI side of the pack: thin V3 adapters over ``directanimator_core``.

Every node module listed in ``NODE_MODULES`` is required: if one fails to import, the error
propagates and ComfyUI marks the pack IMPORT FAILED rather than silently showing fewer nodes.
"""

from __future__ import annotations

import importlib
import os

import folder_paths
from comfy_api.latest import ComfyExtension, io

MODEL_FOLDER = "directanimator"  # models/directanimator: adapters, merged models, optional detectors

# Modules of this package that define NODES: list[type[io.ComfyNode]].
NODE_MODULES: tuple[str, ...] = ("cues", "load", "sample", "decode", "native", "native_sampling")


def register_model_folder() -> None:
    """Make ``models/directanimator`` a ComfyUI model folder (also honoured in extra_model_paths.yaml)."""
    path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    folder_paths.add_model_folder_path(MODEL_FOLDER, path, is_default=True)
    extensions = folder_paths.folder_names_and_paths[MODEL_FOLDER][1]
    if isinstance(extensions, set):
        extensions.update({".safetensors", ".onnx", ".tflite"})


def node_list() -> list[type[io.ComfyNode]]:
    nodes: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        nodes.extend(importlib.import_module(f".{name}", __name__).NODES)
    return nodes


class DirectAnimatorExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()


async def comfy_entrypoint() -> DirectAnimatorExtension:
    return DirectAnimatorExtension()


register_model_folder()
