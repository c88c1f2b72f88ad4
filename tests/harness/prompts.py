"""A UI-format workflow (what the frontend saves) as an API prompt (what POST /prompt takes), as the frontend's
graphToPrompt makes it: widgets by the node's widget order, links as [node, slot], Note nodes left out, and
bypassed nodes (mode 4) left out with each of their outputs wired to their input of the same type.
"""

from __future__ import annotations

from typing import Optional

WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}
BYPASSED = 4  # LiteGraph node mode


def widget_names(spec: dict) -> list:
    """Widget names in widgets_values order; None for the frontend's extra values: seed control after the seed,
    the upload button last (LoadImageMask stores [image, channel, "image"])."""
    names, uploads = [], []
    for section in ("required", "optional"):
        for name, s in spec.get(section, {}).items():
            if isinstance(s[0], list) or s[0] in WIDGET_TYPES:
                options = s[1] if len(s) > 1 else {}
                names.append(name)
                if options.get("control_after_generate"):
                    names.append(None)
                if any(key.endswith("_upload") and value for key, value in options.items()):
                    uploads.append(None)
    return names + uploads


def api_prompt(workflow: dict, info: dict, values: Optional[dict] = None, files: Optional[dict] = None,
               drop: frozenset = frozenset()) -> dict:
    """The workflow as an API prompt.

    Args:
        workflow: the UI-format JSON.
        info: /object_info of the server that will run it.
        values: widget overrides per node type, {type: {widget: value}}.
        files: file-name replacements for string widgets (the test's media in place of the workflow's names).
        drop: node types left out with the links from them (e.g. multi-GB text encoders in a small test).
    """
    values, files = values or {}, files or {}
    links = {link[0]: link for link in workflow["links"]}
    nodes = {n["id"]: n for n in workflow["nodes"]}
    dropped = {i for i, n in nodes.items() if n["type"] in drop or n["type"] == "Note"}

    def source(link_id: Optional[int]) -> Optional[list]:
        """[node, slot] feeding a link, through bypassed nodes; None when it comes from a dropped node."""
        link = links.get(link_id)
        while link is not None and nodes[link[1]].get("mode") == BYPASSED:
            node, kind = nodes[link[1]], link[5]
            link = next((links.get(s.get("link")) for s in node["inputs"] if s["type"] == kind), None)
        if link is None or link[1] in dropped:
            return None
        return [str(link[1]), link[2]]

    prompt = {}
    for node_id, node in nodes.items():
        if node_id in dropped or node.get("mode") == BYPASSED:
            continue
        spec = info[node["type"]]["input"]
        names = widget_names(spec)
        # a workflow saved before an optional widget was added lacks its value: the server takes the default
        missing = [name for name in names[len(node["widgets_values"]):] if name is not None]
        assert len(names) >= len(node["widgets_values"]) and all(n in spec.get("optional", {}) for n in missing), \
            (node["type"], names, node["widgets_values"])
        inputs = {name: files.get(value, value) if isinstance(value, str) else value
                  for name, value in zip(names, node["widgets_values"]) if name}
        inputs.update(values.get(node["type"], {}))
        for socket in node["inputs"]:
            feed = source(socket.get("link"))
            if feed is not None:
                inputs[socket["name"]] = feed
        prompt[str(node_id)] = {"class_type": node["type"], "inputs": inputs}
    return prompt
