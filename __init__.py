"""ComfyUI-DirectAnimator: ComfyUI loads this file from ``custom_nodes/``.

The pack uses the V3 API alone (``comfy_entrypoint``): it must not also export NODE_CLASS_MAPPINGS,
or ComfyUI would never call the entrypoint. ``nodes/`` (which imports ComfyUI) is imported only when
ComfyUI calls the entrypoint, so this file also imports cleanly outside ComfyUI (pytest, tools).
"""


async def comfy_entrypoint():
    """The pack's ComfyExtension; registers models/directanimator with ComfyUI's folder_paths."""
    from .nodes import comfy_entrypoint as entrypoint

    return await entrypoint()
