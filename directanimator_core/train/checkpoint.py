"""Training checkpoints that cannot be lost, and the exported adapter / LoRA / model files.

One checkpoint is one safetensors file, written under a temporary name and renamed (cache.write_atomic),
so the newest complete checkpoint always survives a crash mid-write. Nothing is pickled:
    model.<name>            trained parameters (full tensors, gathered from FSDP shards)
    optim.<name>.<key>      AdamW state per parameter (exp_avg, exp_avg_sq, step)
    ema.<name>              the EMA of the trained parameters (when run.ema > 0)
    rng.<rank>.torch / .cuda / .numpy   each process's generator states
metadata ``state``: JSON with the config, the step, samples consumed, optimizer param groups, the
python and numpy generator scalars. The learning-rate schedule is a pure function of the step, so
restoring the step restores the scheduler. Metadata ``checksum``: sha256 over every tensor (as a cache
entry's, cache.checksum) and the ``state`` text.

Integrity: a checkpoint is read back and verified right after it is written (a failure stops the run
before anything is pruned); resume verifies it again and skips one that fails, moving it aside
(``.damaged``, removed at the next start) with one log line, to the newest checkpoint that passes;
pruning never deletes the checkpoint just written and verified. A checkpoint of format ``/1`` (written
before checksums) still resumes, unverified, and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..errors import CheckpointError
from .cache import checksum, move_aside, write_atomic
from .config import TrainConfig, config_from_json
from .distributed import Processes, gather_objects

log = logging.getLogger(__name__)

FORMAT = "directanimator.train-state/2"  # with a checksum
UNCHECKED_FORMAT = "directanimator.train-state/1"  # before checksums: resumable, unverified
NAME = re.compile(r"^step_(\d{8})\.safetensors$")
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step_{step:08d}.safetensors"


def checkpoints(out: str | Path) -> list[Path]:
    """Every checkpoint file in ``out/checkpoints``, oldest step first."""
    folder = Path(out) / "checkpoints"
    return sorted(p for p in folder.glob("step_*.safetensors") if NAME.match(p.name)) if folder.is_dir() else []


def latest_checkpoint(out: str | Path) -> Optional[Path]:
    """The checkpoint with the highest step in ``out/checkpoints``, or None (whether it verifies or not)."""
    found = checkpoints(out)
    return found[-1] if found else None


def state_checksum(tensors: Mapping[str, torch.Tensor], state: str) -> str:
    """sha256 over the tensors (cache.checksum) and the ``state`` metadata text."""
    return hashlib.sha256(f"{checksum(tensors)}|{state}".encode()).hexdigest()


# -- random generators ---------------------------------------------------------------------------------
def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's generators: tensors (torch, cuda, numpy key) and JSON scalars (python, numpy rest)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {"python": [version, list(internal), gauss_next], "numpy": [kind, pos, has_gauss, gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    kind, pos, has_gauss, gauss = scalars["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = scalars["python"]
    random.setstate((version, tuple(internal), gauss_next))


# -- EMA -----------------------------------------------------------------------------------------------
def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a (possibly FSDP-sharded DTensor) one, on the CPU."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu()


def like_parameter(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``full`` laid out like ``param``: the local shard of an FSDP DTensor, else a copy on its device."""
    if hasattr(param, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(param.dtype), param.device_mesh, param.placements)
    return full.to(device=param.device, dtype=param.dtype)


# -- save / load ---------------------------------------------------------------------------------------
def save_checkpoint(out: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    ema: Optional[dict[str, torch.Tensor]], step: int, samples: int, config: TrainConfig,
                    processes: Processes) -> Optional[Path]:
    """Write the training state after ``step`` optimizer steps; rank 0 writes, every rank must call.

    Args:
        out: the run folder.
        model: the trained (possibly wrapped) module.
        optimizer: its optimizer.
        ema: name -> EMA tensor of the trained parameters, or None.
        step: optimizer steps done.
        samples: global samples consumed (the data position).
        config: the run's config.
        processes: from distributed.setup().

    Returns:
        the checkpoint path on rank 0, None elsewhere.
    """
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    model_state = get_model_state_dict(model, options=FULL)
    optim_state = get_optimizer_state_dict(model, optimizer, options=FULL)
    ema_full = {name: full_tensor(t) for name, t in ema.items()} if ema else {}
    rngs = gather_objects(_rng_for_gather(), processes)
    if not processes.main:
        return None
    tensors = {f"model.{k}": v for k, v in model_state.items() if _canonical(k) in _canonical_set(trained)}
    for name, state in optim_state["state"].items():
        tensors |= {f"optim.{name}.{key}": torch.as_tensor(value) for key, value in state.items()}
    tensors |= {f"ema.{k}": v for k, v in ema_full.items()}
    scalars = []
    for rank, (rng_tensors, rng_scalars) in enumerate(rngs):
        tensors |= {f"rng.{rank}.{k}": torch.tensor(v, dtype=torch.int64 if k == "numpy" else torch.uint8)
                    for k, v in rng_tensors.items()}
        scalars.append(rng_scalars)
    state = {"config": json.loads(config.to_json()), "step": step, "samples": samples,
             "param_groups": optim_state["param_groups"], "rng": scalars, "world_size": processes.world_size}
    path, text = checkpoint_path(out, step), json.dumps(state, default=_jsonable)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(tensors, path, {"format": FORMAT, "state": text, "checksum": state_checksum(tensors, text)})
    written = inspect_checkpoint(path, load=False)
    if written.problem:
        raise CheckpointError(f"checkpoint {path} fails its check right after it was written ({written.problem}): "
                              "the disk or memory of this machine is failing; fix that and run again, which resumes "
                              "from the newest good checkpoint")
    _prune(Path(out), config.run.keep_checkpoints, path)
    log.info("checkpoint %s", path)
    return path


def _rng_for_gather() -> tuple[dict[str, list], dict[str, Any]]:
    tensors, scalars = rng_state()
    return {k: v.tolist() for k, v in tensors.items()}, scalars


def _canonical(name: str) -> str:
    """Parameter names as the distributed state-dict API reports them (no DDP / FSDP wrapper prefixes)."""
    return name.removeprefix("module.").replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def _canonical_set(names) -> set[str]:
    return {_canonical(n) for n in names}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _prune(out: Path, keep: int, verified: Path) -> None:
    """Delete all but the ``keep`` newest checkpoints (0 keeps all), never ``verified``, the one just
    written and read back: newer files that fail their check must not push it out."""
    found = checkpoints(out)
    kept = set(found[-keep:]) | {verified} if keep > 0 else set(found)
    for old in found:
        if old not in kept:
            old.unlink(missing_ok=True)


@dataclass(frozen=True)
class CheckpointCheck:
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    verified: bool  # its checksum matched (False for a /1 checkpoint, written before checksums)
    problem: str  # why it cannot be resumed ("" when it can)
    damaged: bool  # the problem is in its bytes (not a read error of the moment, nor another kind of file)


def inspect_checkpoint(path: Path, load: bool = True) -> CheckpointCheck:
    """Read a checkpoint and check it: complete safetensors file, this trainer's format, checksum.

    Args:
        path: the checkpoint file.
        load: keep the tensors (False: only check, one tensor in memory at a time; ``tensors`` is empty).
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            kind, text = metadata.get("format"), metadata.get("state", "")
            if kind not in (FORMAT, UNCHECKED_FORMAT):
                return CheckpointCheck({}, {}, False, f"format {kind!r}, not {FORMAT!r}: not a checkpoint of this "
                                       "trainer", False)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if load else _Tensors(handle)
            verified = kind == FORMAT
            if verified and metadata.get("checksum") != state_checksum(tensors, text):
                return CheckpointCheck({}, {}, False, "checksum mismatch: its bytes changed after it was written",
                                       True)
    except (SafetensorError, ValueError) as error:
        return CheckpointCheck({}, {}, False, f"not a complete safetensors file ({error})", True)
    except OSError as error:
        return CheckpointCheck({}, {}, False, f"unreadable ({error})", False)
    try:
        state = json.loads(text)
    except json.JSONDecodeError as error:
        return CheckpointCheck({}, {}, False, f"its state is not JSON ({error})", True)
    return CheckpointCheck(tensors if load else {}, state, verified, "", False)


class _Tensors(Mapping):
    """A safetensors file's tensors read one at a time (what checksum() needs, without holding them all)."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.handle.get_tensor(name)

    def __iter__(self):
        return iter(self.handle.keys())

    def __len__(self) -> int:
        return len(self.handle.keys())


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's tensors and its JSON state, checksum verified; anything else raises CheckpointError.

    Args:
        path: the checkpoint file.
    """
    check = inspect_checkpoint(path)
    if check.problem:
        raise CheckpointError(f"training checkpoint {path} fails its check ({check.problem}): use an older "
                              "checkpoint of the run (training resumes from the newest good one by itself)")
    return check.tensors, check.state


def check_resumable(state: dict[str, Any], config: TrainConfig, path: Path, processes: Processes) -> None:
    """Refuse to resume a run whose settings changed (only run.steps, checkpoint cadence and logging may)."""
    saved = config_from_json(json.dumps(state["config"]))
    free = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "device")
    same = {f: getattr(config.run, f) for f in free}
    if json.loads(_with_run(saved, same).to_json()) != json.loads(config.to_json()):
        raise CheckpointError(f"{path} was written by a run with other settings: resume with the same config (only "
                              f"run.{', run.'.join(free)} may change) or use a new run.out folder")
    if state["world_size"] != processes.world_size:
        log.warning("resuming a %d-process run on %d processes: same samples, same weights up to reduction order",
                    state["world_size"], processes.world_size)


def _with_run(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    from .config import with_overrides

    return with_overrides(config, run=values)


def resume(out: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
           ema: Optional[dict[str, torch.Tensor]], config: TrainConfig,
           processes: Processes) -> tuple[Optional[Path], int, int]:
    """Restore the newest checkpoint of ``out`` that passes its check; every rank calls.

    Rank 0 picks it: a newer one that fails is skipped with one warning naming the file and why, and
    moved aside when its bytes are bad (``.damaged``); a /1 checkpoint (before checksums) resumes
    unverified, with a warning. When checkpoints exist but none passes, CheckpointError: starting
    afresh silently would throw the run away.

    Args:
        out: the run folder.
        model: the trained module, built and wrapped as when the checkpoints were written.
        optimizer: its optimizer.
        ema: the EMA dict to fill in place, or None.
        config: the run's config (must match the checkpoint's).
        processes: from distributed.setup().

    Returns:
        (checkpoint or None, step, samples consumed); (None, 0, 0) for a fresh run.
    """
    chosen, check, refusal = None, None, None
    if processes.main:
        try:
            chosen, check = _newest_good(Path(out))
        except CheckpointError as error:
            refusal = str(error)  # raised on every rank, not only here
    chosen, refusal = gather_objects((None if chosen is None else str(chosen), refusal), processes)[0]
    if refusal:
        raise CheckpointError(refusal)
    if chosen is None:
        return None, 0, 0
    chosen = Path(chosen)
    if check is None:
        check = inspect_checkpoint(chosen)
        if check.problem:
            raise CheckpointError(f"checkpoint {chosen} passed its check on rank 0 but not on rank {processes.rank} "
                                  f"({check.problem}): check this machine's disk and memory, then run again")
    step, samples = _restore(check, chosen, model, optimizer, ema, config, processes)
    return chosen, step, samples


def _newest_good(out: Path) -> tuple[Optional[Path], Optional[CheckpointCheck]]:
    """The newest checkpoint that passes its check and that check; bad ones newer than it set aside."""
    skipped = []
    for path in reversed(checkpoints(out)):
        check = inspect_checkpoint(path)
        if not check.problem:
            break
        skipped.append((path, check))
    else:
        if skipped:
            path, check = skipped[0]
            raise CheckpointError(f"no checkpoint in {path.parent} can be resumed (the newest, {path.name}: "
                                  f"{check.problem}): put back a good copy, or move them away to start the run afresh")
        return None, None
    for bad, bad_check in skipped:
        aside = f"; moved to {move_aside(bad).name}" if bad_check.damaged else ""
        log.warning("skipped checkpoint %s: %s%s; resuming from %s", bad, bad_check.problem, aside, path.name)
    if not check.verified:
        log.warning("checkpoint %s was written before checkpoints carried a checksum: resuming from it unverified",
                    path)
    return path, check


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    ema: Optional[dict[str, torch.Tensor]], config: TrainConfig, processes: Processes) -> tuple[int, int]:
    """Restore model, optimizer, EMA and generators from ``path``; returns (step, samples consumed).

    Args:
        path: the checkpoint (it must pass its check: read_checkpoint).
        model: the trained module, built and wrapped as when the checkpoint was written.
        optimizer: its optimizer.
        ema: the EMA dict to fill in place, or None.
        config: the run's config (must match the checkpoint's).
        processes: from distributed.setup().
    """
    tensors, state = read_checkpoint(path)
    return _restore(CheckpointCheck(tensors, state, True, "", False), path, model, optimizer, ema, config, processes)


def _restore(check: CheckpointCheck, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             ema: Optional[dict[str, torch.Tensor]], config: TrainConfig, processes: Processes) -> tuple[int, int]:
    tensors, state = check.tensors, check.state
    check_resumable(state, config, path, processes)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True, strict=False))
    optim_state = {"state": {}, "param_groups": state["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            name, part = key[len("optim."):].rsplit(".", 1)
            optim_state["state"].setdefault(name, {})[part] = value
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
    if ema:
        params = {_canonical(n): p for n, p in model.named_parameters()}
        for name, tensor in ema.items():
            tensor.copy_(like_parameter(tensors[f"ema.{name}"], params[name]))
    rank = processes.rank if processes.rank < state["world_size"] else 0
    own = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.{rank}.")}
    set_rng_state(own, state["rng"][rank])
    return int(state["step"]), int(state["samples"])


# -- the exported weights ------------------------------------------------------------------------------
def export_weights(out: str | Path, model: nn.Module, trainee: nn.Module, ema: Optional[dict[str, torch.Tensor]],
                   processes: Processes) -> list[Path]:
    """Write the trained weights where the loaders read them (EMA weights when kept); every rank calls.

    ``adapter.safetensors`` always (models/adapter_checkpoint.py format, loads with load_adapter /
    load_model), ``lora.safetensors`` when LoRA was trained (lora.py format, ComfyUI's LoRA keys), and
    ``model.safetensors`` (backbone with any LoRA folded in + adapter: the merged format load_model
    reads, what the loader node takes) when LoRA or everything was trained.

    Args:
        out: the run folder.
        model: the trained module as wrapped for training.
        trainee: the same module unwrapped (same2x.Trainee).
        ema: canonical name -> EMA tensor, or None.
        processes: from distributed.setup().
    """
    from ..models.checkpoints.adapter import ADAPTER_PREFIX, adapter_metadata

    state = get_model_state_dict(model, options=FULL)
    if ema:
        state |= {name: full_tensor(t) for name, t in ema.items()}
    if not processes.main:
        return []
    out, paths = Path(out), []
    adapter = {ADAPTER_PREFIX + k[len("net.adapter."):]: v.float() for k, v in state.items()
               if k.startswith("net.adapter.")}
    metadata = adapter_metadata(trainee.net.adapter)
    paths.append(write_atomic(adapter, out / "adapter.safetensors", metadata))
    lora_trained = trainee.lora is not None and any(p.requires_grad for p in trainee.lora.parameters())
    if lora_trained:
        paths.append(write_atomic(_lora_file(trainee.lora, state), out / "lora.safetensors",
                                  trainee.lora.file_metadata()))
    if lora_trained or all(p.requires_grad for p in trainee.net.backbone.parameters()):
        backbone = {k[len("net.backbone."):]: v for k, v in state.items() if k.startswith("net.backbone.")}
        if trainee.lora is not None:
            _fold_lora(backbone, trainee.lora, state)
        paths.append(write_atomic(backbone | adapter, out / "model.safetensors", metadata))
    return paths


def _lora_file(lora, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LoRA file's tensors (lora.py format) from the gathered state dict."""
    tensors = {}
    for name in lora.named_pairs():
        key = name.replace(".", "__")
        tensors[f"diffusion_model.{name}.lora_A.weight"] = state[f"lora.pairs.{key}.lora_A"].float()
        tensors[f"diffusion_model.{name}.lora_B.weight"] = state[f"lora.pairs.{key}.lora_B"].float()
        tensors[f"diffusion_model.{name}.alpha"] = torch.tensor(float(lora.alpha))
    return tensors


def _fold_lora(backbone: dict[str, torch.Tensor], lora, state: dict[str, torch.Tensor]) -> None:
    """W += (alpha / rank)·B A for every LoRA pair, in place in the backbone's state dict."""
    for name, pair in lora.named_pairs().items():
        key = name.replace(".", "__")
        a, b = state[f"lora.pairs.{key}.lora_A"].float(), state[f"lora.pairs.{key}.lora_B"].float()
        weight = backbone[f"{name}.weight"]
        backbone[f"{name}.weight"] = (weight.float() + (b @ a) * pair.scale).to(weight.dtype)
