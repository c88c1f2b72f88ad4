"""The prepared-clip cache: cue triplets and VAE latents computed once per clip, one safetensors file each.

An entry holds (C = 16 latent channels, T latent frames, h w = the latent grid, M = 4 mask channels):
    latent      (C, T, h, w)     the clip (the denoising target), normalised Wan latents
    pose, face  (C, T, h, w)     the pose and face cue videos' latents
    blank_pose  (C, T, h, w)     latent of an empty (neutral grey) pose cue: what a dropped frame becomes
    pose_mask, face_mask (M, T, h, w)  location masks packed onto the latent grid (cue_embed.pack_mask)
    figure      (M, T, h, w)     the clip's own person mask (hard, before the location cue's softening),
                                 packed the same way: where run.figure_weight weighs the loss
    pose_quality (T,)            worst segmentation quality of the pixel frames behind each latent frame
    image       (K, 4 + C, T, h, w)  Wan image-to-video ``y`` for K reference candidates (optional)
    context     (L, D_text), clip_fea (257, 1280)  the clip's text states (optional)
Metadata: ``format``, ``fingerprint`` (JSON of what the entry was made from: clip file identity,
sizes, cue settings, VAE identity) and ``checksum`` (sha256 of every tensor). An entry whose
fingerprint differs from what the run asks for is rebuilt by ``prepare``; one whose checksum fails
is moved aside by training (and rebuilt by the next ``prepare``, or found by ``prepare(verify=True)``);
neither is ever trained on.

Files are written to a temporary name and renamed (os.replace), so a crash never leaves a half
entry under the real name; ``prepare`` skips entries that are complete and current, so it resumes.
A write that a kill interrupts leaves its scratch folder behind (scratch_path); the next
``prepare`` (and the next start of a training run, for its own folders) removes such leftovers and
the ``.damaged`` files, and nothing else (remove_interrupted_writes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..cues.config import CueConfig
from ..cues.frames import ArraySource
from ..cues.triplet import alignment_for, analyse, concatenate, render
from ..errors import InputError
from ..processes import alive as _alive
from ..models.cue_embed import pack_uint8_mask
from ..models.vae import WanVAE, normalize_latents
from .config import DataConfig

log = logging.getLogger(__name__)

FORMAT = "directanimator.train-cache/1"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TEXT_SUFFIX = ".text.safetensors"
POSE_BACKGROUND = 128  # the pose cue's neutral grey (cues/config.py PoseConfig.background)
DAMAGED = ".damaged"  # suffix of an entry (or checkpoint) moved aside because its bytes are bad

# What an interrupted write leaves (remove_interrupted_writes): write_atomic's scratch folder, named
# after the file, the host and the writing process, which also holds safetensors' own temporary file;
# before scratch folders, a temporary file named after the file and the process; and safetensors'
# own temporary file beside its target (Rust tempfile's ".tmp" + 6 characters).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
SCRATCH = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")
OLD_TEMP = re.compile(r"^\.(?P<name>.+\.safetensors)\.(?P<pid>\d+)\.tmp$")
SAFETENSORS_TEMP = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")
QUIET_S = 60  # a beside-the-target temporary file untouched this long has no writer any more


# -- the clip folder -------------------------------------------------------------------------------
def list_clips(folder: str | Path) -> dict[str, Path]:
    """Clip name -> path for every video file and every folder of frames in ``folder``, sorted by name.

    Args:
        folder: the clip folder (data.clips).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"clip folder {folder} does not exist: set data.clips to a folder of videos")
    clips = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            clips[path.stem] = path
        elif path.is_dir() and _frame_files(path):
            clips[path.name] = path
    if not clips:
        raise InputError(f"clip folder {folder} holds no video ({', '.join(VIDEO_SUFFIXES)}) and no folder of "
                         "frames: add clips")
    return clips


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_clip(path: Path, frames: int, height: int, width: int) -> np.ndarray:
    """The first ``frames`` frames, centre-cropped to the aspect and resized: (F, H, W, 3) uint8 RGB.

    Args:
        path: video file or folder of frames.
        frames: frames to read (the clip must have at least that many).
        height: output height.
        width: output width.
    """
    raw = _read_frames(path, frames)
    if len(raw) < frames:
        raise InputError(f"clip {path.name} has {len(raw)} frames; data.frames={frames} needs at least that many: "
                         "lower data.frames or drop the clip")
    return np.stack([_crop_resize(frame, height, width) for frame in raw])


def _read_frames(path: Path, frames: int) -> list[np.ndarray]:
    if path.is_dir():
        return [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for p in _frame_files(path)[:frames]]
    capture, out = cv2.VideoCapture(str(path)), []
    while len(out) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return out


def _crop_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    crop_h, crop_w = round(height / scale), round(width / scale)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return cv2.resize(frame[top:top + crop_h, left:left + crop_w], (width, height), interpolation=cv2.INTER_AREA)


def _beside(clip: Path, suffix: str) -> Path:
    """The file next to a clip with the clip's name and ``suffix`` (walk.mp4 -> walk.txt)."""
    return clip.parent / ((clip.name if clip.is_dir() else clip.stem) + suffix)


def file_identity(path: Path) -> str:
    """Size and a hash of the first and last MiB of a file (or of a frame folder's listing): enough to
    notice a replaced clip without reading a whole video."""
    if path.is_dir():
        return hashlib.sha256(json.dumps([(p.name, p.stat().st_size) for p in _frame_files(path)]).encode()).hexdigest()
    size, digest = path.stat().st_size, hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(size - (1 << 20), 0))
        digest.update(handle.read(1 << 20))
    return f"{size}:{digest.hexdigest()}"


# -- fingerprints and checksums --------------------------------------------------------------------
def fingerprint(clip: Path, config: DataConfig, cue_config: CueConfig, vae_identity: str) -> str:
    """JSON of everything an entry is computed from; an entry with another fingerprint is stale.

    Args:
        clip: the clip file or folder.
        config: data settings (frame count, size, reference candidates, text).
        cue_config: cue settings.
        vae_identity: file_identity of the VAE.
    """
    text = _beside(clip, TEXT_SUFFIX)
    return json.dumps({
        "clip": file_identity(clip), "frames": config.frames, "size": [config.height, config.width],
        "reference_frames": config.reference_frames, "text": config.text,
        "text_file": file_identity(text) if config.text == "embeddings" and text.is_file() else None,
        "cues": json.dumps(asdict(cue_config), sort_keys=True, default=str), "vae": vae_identity,
    }, sort_keys=True)


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the bytes, without a copy
    return digest.hexdigest()


def write_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write a safetensors file in a scratch folder beside ``path``, flush it to disk, then rename it into place.

    Args:
        tensors: the file's tensors.
        path: the final name; it either keeps its old content or gets the whole new file.
        metadata: string metadata.
    """
    with scratch_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


@contextmanager
def scratch_path(path: Path) -> Iterator[Path]:
    """A name to write ``path``'s new content under; when the block ends, that file is flushed to disk
    and renamed onto ``path`` (on an error, ``path`` keeps its old content).

    The name lies in a scratch folder beside ``path``, ``.<name>.<host>.<pid>.tmp``, which also
    catches safetensors' own temporary file: a kill mid-write leaves one folder that names its
    writer, and remove_interrupted_writes deletes it at the next start once that process is gone.

    Args:
        path: the final name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        tmp = scratch / path.name
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _fsync_dir(path.parent)


def remove_interrupted_writes(folder: str | Path) -> list[Path]:
    """Delete what interrupted writes left directly in ``folder``, and nothing else; returns what went.

    That is: scratch folders (scratch_path) of a process of this host that no longer runs (a live
    writer's, or another host's, are left alone), the temporary files of the writer before them
    (same rule), safetensors' own temporary files beside their target (``.tmpXXXXXX`` holding the start
    of a safetensors file, or too little to tell, untouched for QUIET_S seconds), and files moved aside
    as damaged (``*.safetensors.damaged``). Call it when a run or a cache preparation starts: a killed
    writer's leftovers otherwise stay forever.

    Args:
        folder: a cache folder, a run folder or its checkpoints folder (missing: nothing to do).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, size = [], 0
    for path in sorted(folder.iterdir()):
        if not _is_leftover(path):
            continue
        bytes_ = _size(path)
        if _remove(path):
            removed.append(path)
            size += bytes_
    if removed:
        log.info("removed %d leftover(s) of interrupted writes (%.1f MB) from %s: %s", len(removed), size / 1e6,
                 folder, ", ".join(p.name for p in removed))
    return removed


def _is_leftover(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.is_dir():
        match = SCRATCH.match(path.name)
        return bool(match) and match["host"] == HOST and not _alive(int(match["pid"]))
    if not path.is_file():
        return False
    if path.name.endswith(".safetensors" + DAMAGED):
        return True
    if match := OLD_TEMP.match(path.name):
        return not _alive(int(match["pid"]))
    # no writer named in it: only once nothing has written to it for a while (a writer that does not use
    # scratch folders, such as this module before them, may be writing it now)
    return (bool(SAFETENSORS_TEMP.match(path.name)) and time.time() - path.stat().st_mtime > QUIET_S
            and _starts_like_safetensors(path))


def _starts_like_safetensors(path: Path) -> bool:
    """An 8-byte header length followed by the header's opening brace, or a start too short to tell."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) < 9 or (head[8:] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000)


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> bool:
    """Remove a leftover file, or a scratch folder with only its writer's files in it; False if gone or kept."""
    try:
        if not path.is_dir():
            path.unlink()
            return True
        name = SCRATCH.match(path.name)["name"]
        for inner in path.iterdir():
            ours = inner.name == name or SAFETENSORS_TEMP.match(inner.name)
            if ours and inner.is_file() and not inner.is_symlink():
                inner.unlink()
        path.rmdir()  # refuses if anything else is in there: then it stays
        return True
    except FileNotFoundError:
        return False  # another process removed it first
    except OSError as error:
        log.warning("left %s in place: %s", path, error)
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- one entry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EntryStatus:
    ok: bool
    reason: str  # why not, for the log


def check_entry(path: Path, expected_fingerprint: str, verify: bool = True) -> EntryStatus:
    """Is the entry at ``path`` complete, current and undamaged?

    Args:
        path: the entry file.
        expected_fingerprint: fingerprint() of what the run asks for.
        verify: also recompute the checksum (reads the whole file).
    """
    if not path.is_file():
        return EntryStatus(False, "missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                return EntryStatus(False, f"format {metadata.get('format')!r}, not {FORMAT!r}")
            if metadata.get("fingerprint") != expected_fingerprint:
                return EntryStatus(False, "made from another clip, size, cue setting or VAE")
            if verify and checksum({k: handle.get_tensor(k) for k in handle.keys()}) != metadata.get("checksum"):
                return EntryStatus(False, "checksum mismatch (damaged)")
    except (SafetensorError, OSError, ValueError) as error:
        return EntryStatus(False, f"unreadable ({error})")
    return EntryStatus(True, "")


def read_entry(path: Path, expected_fingerprint: Optional[str] = None) -> dict[str, torch.Tensor]:
    """Every tensor of an entry, checksum verified. A damaged entry is moved aside (``.damaged``) so the
    next preparation step rebuilds it, and InputError is raised: it is never trained on.

    Args:
        path: the entry file.
        expected_fingerprint: when given, the entry must have been made from exactly this.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        damaged = metadata.get("format") != FORMAT or checksum(tensors) != metadata.get("checksum")
    except (SafetensorError, OSError, ValueError):
        damaged = True
    if damaged:
        aside = move_aside(path)
        raise InputError(f"cache entry {path} is damaged; it was moved to {aside.name}: run the training "
                         "again, its preparation step rebuilds the entry")
    if expected_fingerprint is not None and metadata.get("fingerprint") != expected_fingerprint:
        raise InputError(f"cache entry {path} was made with other settings or from another clip file: run the "
                         "preparation step again (train CONFIG --prepare-only); it rebuilds such entries")
    return tensors


def move_aside(path: Path) -> Path:
    """Rename a file whose bytes are bad to ``<name>.damaged`` (removed at the next start); returns the new name."""
    aside = path.with_name(path.name + DAMAGED)
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        pass  # another process reading the same file moved it first
    return aside


def encode_video(vae: WanVAE, frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> normalised latent (C, T, H/8, W/8) fp32."""
    param = next(vae.parameters())
    video = torch.from_numpy(frames).to(device=param.device, dtype=torch.float32)
    video = video.permute(3, 0, 1, 2)[None] / 127.5 - 1  # (1, 3, F, H, W) in [-1, 1]
    with torch.no_grad():
        return normalize_latents(vae.encode(video).float())[0].cpu()


def blank_pose_latent(vae: WanVAE, frames: int, height: int, width: int) -> torch.Tensor:
    """Latent (C, T, h, w) of an empty pose cue (all neutral grey): what a dropped pose frame becomes."""
    return encode_video(vae, np.full((frames, height, width, 3), POSE_BACKGROUND, np.uint8))


def latent_quality(quality: np.ndarray) -> torch.Tensor:
    """Per pixel frame (F,) -> per latent frame (T,): the worst of the frames each latent frame covers
    (frame 0 alone, then groups of 4, as the causal VAE packs them)."""
    groups = [quality[:1]] + [quality[i:i + 4] for i in range(1, len(quality), 4)]
    return torch.tensor([float(g.min()) for g in groups], dtype=torch.float32)


def reference_indices(frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices, the first being frame 0 (Wan I2V's given frame)."""
    return [int(round(i)) for i in np.linspace(0, frames - 1, count)] if count > 1 else [0] * count


def image_condition(vae: WanVAE, frames: np.ndarray, index: int) -> torch.Tensor:
    """Wan's image-to-video ``y`` (4 + C, T, h, w) with frame ``index`` as the given first frame:
    mask channels 1 on the first latent frame, then the latent of [reference, grey, grey, ...]."""
    video = np.full_like(frames, POSE_BACKGROUND)
    video[0] = frames[index]
    latent = encode_video(vae, video)  # (C, T, h, w)
    mask = torch.zeros(4, *latent.shape[1:])
    mask[:, 0] = 1
    return torch.cat([mask, latent])


def build_entry(clip: Path, config: DataConfig, vae: WanVAE, cue_config: CueConfig,
                blank_pose: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Cue triplet and latents of one clip (module docstring lists the tensors).

    Args:
        clip: the clip file or folder.
        config: data settings.
        vae: the frozen VAE (any device; results come back on the CPU).
        cue_config: cue settings.
        blank_pose: blank_pose_latent() for this size when already computed (it is the same for every clip).
    """
    frames = read_clip(clip, config.frames, config.height, config.width)
    track = analyse(ArraySource(frames), cue_config)
    triplet = concatenate(render(ArraySource(frames), track, alignment_for(track, None), cue_config), track.num_frames)
    person = np.stack([track.mask(i) for i in range(track.num_frames)])  # (F, H, W) uint8, the segmentation
    packed = torch.cat([pack_uint8_mask(m) for m in (triplet.body_mask, triplet.face_mask, person)])  # (3, M, T, h, w)
    tensors = {
        "latent": encode_video(vae, frames),
        "pose": encode_video(vae, triplet.pose),
        "face": encode_video(vae, _resize_all(triplet.face, config.height, config.width)),
        "blank_pose": blank_pose if blank_pose is not None else blank_pose_latent(vae, *frames.shape[:3]),
        "pose_mask": packed[0].contiguous(), "face_mask": packed[1].contiguous(), "figure": packed[2].contiguous(),
        "pose_quality": latent_quality(triplet.quality),
    }
    if config.reference_frames:
        tensors["image"] = torch.stack([image_condition(vae, frames, i)
                                        for i in reference_indices(config.frames, config.reference_frames)])
    if config.text == "embeddings":
        tensors |= read_text(clip)
    return tensors


def _resize_all(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def read_text(clip: Path) -> dict[str, torch.Tensor]:
    """The clip's precomputed text states: ``context`` (L, D_text) and optionally ``clip_fea``."""
    path = _beside(clip, TEXT_SUFFIX)
    if not path.is_file():
        raise InputError(f"data.text='embeddings' but clip {clip.name} has no {path.name}: write its text states "
                         "(key 'context', (L, D_text)) there, or set data.text='none'")
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        tensors = {k: handle.get_tensor(k).float() for k in handle.keys() if k in ("context", "clip_fea")}
    if "context" not in tensors:
        raise InputError(f"{path.name} has no 'context' tensor: save the text encoder's states (L, D_text) as 'context'")
    return tensors


# -- the preparation step --------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareReport:
    built: tuple[str, ...]  # clips built for the first time
    rebuilt: tuple[str, ...]  # clips whose entry was stale or damaged
    skipped: tuple[str, ...]  # clips whose entry was complete and current


def entry_path(config: DataConfig, name: str) -> Path:
    return Path(config.cache) / f"{name}.safetensors"


def prepare_cache(config: DataConfig, load_vae: Callable[[], WanVAE], vae_identity: str,
                  cue_config: CueConfig = CueConfig(), names: Optional[Sequence[str]] = None,
                  rank: int = 0, world_size: int = 1, verify: bool = True) -> PrepareReport:
    """Build the cache entry of every clip that lacks a complete, current, undamaged one; skip the others.

    Safe to interrupt and run again: entries appear whole or not at all, and what a killed run left
    in the cache folder is removed first (remove_interrupted_writes). With several processes each
    checks and builds every ``world_size``-th clip from ``rank``. Every entry's checksum is recomputed
    (the whole cache is read once, each process its share) and every entry written is read back and
    checked, so a prepared cache has no damaged entry; ``verify=False`` judges entries by their header
    alone (format, fingerprint, size), and training still verifies every entry as it reads it.

    Args:
        config: data settings.
        load_vae: called once, only if some entry must be built.
        vae_identity: file_identity of the VAE (part of each entry's fingerprint).
        cue_config: cue settings.
        names: clips to prepare (default: every clip in the folder).
        rank: this process's index.
        world_size: processes sharing the work.
        verify: recompute every entry's checksum (False: header check only).
    """
    clips = list_clips(config.clips)
    missing = sorted(set(names or ()) - set(clips))
    if missing:
        raise InputError(f"clips {missing} are not in {config.clips}: fix data.cross_manifest or add the clips")
    remove_interrupted_writes(config.cache)
    built, rebuilt, skipped, vae, blank = [], [], [], None, None
    for i, name in enumerate(sorted(names or clips)):
        if i % world_size != rank:
            continue
        path = entry_path(config, name)
        expected = fingerprint(clips[name], config, cue_config, vae_identity)
        status = check_entry(path, expected, verify)
        if status.ok:
            skipped.append(name)
            continue
        if vae is None:
            vae = load_vae()
            blank = blank_pose_latent(vae, config.frames, config.height, config.width)
        damaged = status.reason.startswith(("checksum", "unreadable"))
        log.log(logging.WARNING if damaged else logging.INFO, "cache entry %s is %s: rebuilding it", path,
                status.reason)
        tensors = build_entry(clips[name], config, vae, cue_config, blank)
        metadata = {"format": FORMAT, "fingerprint": expected, "checksum": checksum(tensors),
                    "caption": _caption(clips[name])}
        write_atomic(tensors, path, metadata)
        written = check_entry(path, expected, verify=True)
        if not written.ok:
            raise InputError(f"cache entry {path} fails its check right after it was written ({written.reason}): "
                             f"the disk holding {config.cache} is failing or full; fix that and prepare again")
        (built if status.reason == "missing" else rebuilt).append(name)
    return PrepareReport(tuple(built), tuple(rebuilt), tuple(skipped))


def _caption(clip: Path) -> str:
    path = _beside(clip, ".txt")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
