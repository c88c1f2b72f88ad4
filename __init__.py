"""ComfyUI-DirectAnimator: ComfyUI loads this file from ``custom_nodes/``.

Only imports here; the node list and the model-folder registration live in ``nodes/``. The pack uses
the V3 API alone (``comfy_entrypoint``): it must not also export NODE_CLASS_MAPPINGS, or ComfyUI
would never call the entrypoint.
"""

from .nodes import DirectAnimatorExtension, comfy_entrypoint

__all__ = ["DirectAnimatorExtension", "comfy_entrypoint"]
