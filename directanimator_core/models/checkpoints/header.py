"""A safetensors file checked from its first bytes and its header alone, never a tensor.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, then a
JSON header (one entry per tensor: dtype, shape, byte offsets; ``__metadata__`` strings), then the data.
``read_header`` refuses, in one line naming the file, what is not such a file or is damaged: empty or
short files, pickles (zip or legacy torch.save: never unpickled), GGUF, a header length past the file,
a header that is not JSON, entries whose bytes disagree with dtype and shape, truncated or overlapping
tensors. Every loader of the pack (backbone.py, vae.py, adapter.py, the nodes'
pre-check) starts here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ...errors import CheckpointError

ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
FLOAT_DTYPES = ("F64", "F32", "BF16", "F16", "F8_E4M3", "F8_E5M2")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
NEVER_UNPICKLED = ("pickles are never loaded (unpickling can run code): convert it to safetensors, or download "
                   "the model's .safetensors release")
DOWNLOAD_AGAIN = "download or copy it again"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header: its dtype name (``"BF16"``), shape and byte span in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A safetensors file's header, checked: every tensor's entry, and the metadata."""

    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]

    def read_bytes(self, key: str, limit: int = 1 << 16) -> bytes:
        """The raw bytes of one small tensor (a ``.comfy_quant`` descriptor), read without safetensors.

        Args:
            key: the tensor's name.
            limit: most bytes read (a descriptor is a few dozen).
        """
        entry = self.tensors[key]
        with open(self.path, "rb") as handle:
            handle.seek(entry.start)
            return handle.read(min(entry.end - entry.start, limit))


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines too) collapsed, for a library's message inside ours.

    Args:
        text: any message.
    """
    return " ".join(str(text).split())


def _unreadable(name: str, why: str, fix: str = DOWNLOAD_AGAIN) -> CheckpointError:
    return CheckpointError(f"{name} is not a readable safetensors file: {why}: {fix}")


def _refuse_other_format(name: str, head: bytes, size: int) -> None:
    """Files that are plainly not safetensors, told apart by their first bytes."""
    if size == 0:
        raise CheckpointError(f"{name} is empty (0 bytes), not a safetensors model: the download or copy did not "
                              f"finish; {DOWNLOAD_AGAIN}")
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{name} is a zip archive (how torch.save writes .pt / .pth / .ckpt / .bin files, a "
                              f"pickle inside), not a readable safetensors file; {NEVER_UNPICKLED}")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{name} is a Python pickle (the legacy torch.save format), not a readable safetensors "
                              f"file; {NEVER_UNPICKLED}")
    if head.startswith(b"GGUF"):
        raise CheckpointError(f"{name} is a GGUF file, not a readable safetensors file: this loader reads "
                              "safetensors only; pick the model's .safetensors release")
    if size < 8:
        raise _unreadable(name, f"it is only {size} bytes long, shorter than a safetensors header")


def _entry(name: str, key: str, value: object, data_start: int) -> TensorEntry:
    """One header entry, checked for form and for its byte count against dtype and shape."""
    if not isinstance(value, dict) or not isinstance(value.get("dtype"), str) \
            or not isinstance(value.get("shape"), list) or not isinstance(value.get("data_offsets"), list) \
            or len(value["data_offsets"]) != 2 \
            or not all(isinstance(n, int) and n >= 0 for n in value["shape"] + value["data_offsets"]):
        raise _unreadable(name, f"the header entry of tensor {key!r} is malformed (it needs dtype, shape and two "
                                "data_offsets)", "the file is damaged; " + DOWNLOAD_AGAIN)
    begin, end = value["data_offsets"]
    shape, dtype = tuple(value["shape"]), value["dtype"]
    if dtype in ITEM_BYTES and end - begin != math.prod(shape) * ITEM_BYTES[dtype]:
        raise _unreadable(name, f"tensor {key!r} is {dtype} {list(shape)} ({math.prod(shape) * ITEM_BYTES[dtype]:,} "
                                f"bytes) but its data_offsets span {end - begin:,} bytes",
                          "the file is damaged; " + DOWNLOAD_AGAIN)
    return TensorEntry(dtype, shape, data_start + begin, data_start + end)


def read_header(path: Union[str, Path]) -> SafetensorsHeader:
    """The checked header of a safetensors file; one-line CheckpointError naming the file for anything else.

    Reads the first 8 bytes and the header only, never a tensor: refuses empty or short files, pickles
    (zip or legacy torch.save: never unpickled), GGUF, a header length past the file or safetensors'
    limit, a header that is not a JSON table of tensors, entries whose byte span disagrees with their
    dtype and shape, and tensors past the end of the file (truncated) or overlapping.

    Args:
        path: the file.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            _refuse_other_format(name, head, size)
            length = int.from_bytes(head, "little")
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise _unreadable(name, f"its first 8 bytes announce a {length:,}-byte header but the file has "
                                        f"{size:,} bytes (truncated, damaged or another format; pickled files are "
                                        "never loaded)", DOWNLOAD_AGAIN + ", or convert it to safetensors")
            raw = handle.read(length)
    except OSError as error:
        raise CheckpointError(f"{name} cannot be read ({one_line(error.strerror or error)}): check that the file "
                              "exists and may be read") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _unreadable(name, f"its header is not JSON ({one_line(getattr(error, 'msg', None) or error)})",
                          "the file is damaged or another format; " + DOWNLOAD_AGAIN + ", or convert it to "
                          "safetensors") from None
    if not isinstance(header, dict):
        raise _unreadable(name, "its header is JSON but not a table of tensors",
                          "the file is damaged; " + DOWNLOAD_AGAIN)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _unreadable(name, "its __metadata__ is not a table of strings", "the file is damaged; " + DOWNLOAD_AGAIN)
    data_start, data_bytes = 8 + length, size - 8 - length
    tensors = {key: _entry(name, key, value, data_start) for key, value in header.items()}
    position = data_start
    for key, entry in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if entry.end - data_start > data_bytes:
            raise _unreadable(name, f"tensor {key!r} ends at byte {entry.end - data_start:,} of the data but the "
                                    f"file holds {data_bytes:,} data bytes (truncated)", DOWNLOAD_AGAIN)
        if entry.start < position:
            raise _unreadable(name, f"tensor {key!r} overlaps the tensor before it", "the file is damaged; "
                              + DOWNLOAD_AGAIN)
        position = entry.end
    return SafetensorsHeader(path, tensors, dict(metadata))
