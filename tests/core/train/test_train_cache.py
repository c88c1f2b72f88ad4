"""The cache's own hygiene: the next start removes exactly what interrupted writes left (a dead writer's
scratch folder, the old writer's temporary files, safetensors' own, entries set aside as damaged) and
nothing else; ``train --prepare-only`` verifies every entry and rebuilds a damaged one before it says
"cache ready"; an entry that does not read back after it was written is an error."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save, save_file

from directanimator_core.cli import main
from directanimator_core.cues.config import CueConfig
from directanimator_core.errors import InputError
from directanimator_core.train import cache as cache_module
from directanimator_core.train.cache import HOST, check_entry, entry_path, prepare_cache, remove_interrupted_writes
from directanimator_core.train.loop import clip_fingerprints, vae_identity

HALF = save({"x": torch.arange(64.0)}, {"format": "partial"})[:100]  # the start of a safetensors file


def _finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)  # reaped: no process has this id any more
    return process.pid


def _file(path: Path, data: bytes = HALF, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        os.utime(path, (time.time() - age_s,) * 2)
    return path


def test_only_the_writers_own_leftovers_are_removed(tmp_path) -> None:
    dead = _finished_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder = tmp_path / "cache"
        save_file({"x": torch.ones(2)}, str(_file(folder / "ann.safetensors")))
        gone = [
            _file(folder / f".ann.safetensors.{HOST}.{dead}.tmp" / "ann.safetensors").parent,  # a killed write
            _file(folder / f".ben.safetensors.{HOST}.{dead}.tmp" / ".tmpAb12Cd").parent,  # killed inside safetensors
            _file(folder / f".ben.safetensors.{dead}.tmp"),  # the writer before scratch folders
            _file(folder / ".tmpQw3Er5", age_s=3600),  # safetensors' own, beside its target (the writer before)
            _file(folder / ".tmpZx9Yt1", b"", age_s=3600),  # ... killed before its first byte
            _file(folder / "cara.safetensors.damaged", b"bad bytes"),  # set aside by a training read
        ]
        _file(folder / f".ann.safetensors.{HOST}.{dead}.tmp" / ".tmpPo0Iu9")
        kept = [
            folder / "ann.safetensors",
            _file(folder / f".ben.safetensors.{HOST}.{live.pid}.tmp" / "ben.safetensors").parent,  # writing now
            _file(folder / f".dan.safetensors.{HOST}.{os.getpid()}.tmp" / "dan.safetensors").parent,  # this process
            _file(folder / f".ann.safetensors.otherhost.{dead}.tmp" / "ann.safetensors").parent,  # another machine's
            _file(folder / f".ben.safetensors.{live.pid}.tmp"),
            _file(folder / ".tmpFr3sh1"),  # ... written a moment ago: perhaps by a writer still running
            _file(folder / ".tmpnotes1", b"not a safetensors file", age_s=3600),
            _file(folder / ".tmpAbCdEf.txt"),
            _file(folder / "notes.tmp"),
            _file(folder / "ann.damaged"),
            _file(folder / "ann.safetensors.damaged.txt"),
            _file(folder / "sub" / ".tmpAb12Cd").parent,  # only the folder itself is cleaned
            _file(folder / ".tmpDi5Rx7" / "x").parent,  # a folder, not safetensors' file
        ]
        stranger = _file(folder / f".eve.safetensors.{HOST}.{dead}.tmp" / "eve.safetensors").parent
        _file(stranger / "mine.txt", b"someone else's")

        removed = remove_interrupted_writes(folder)

        assert sorted(removed) == sorted(gone) and not any(p.exists() for p in gone)
        assert all(p.exists() for p in kept)
        assert sorted(p.name for p in stranger.iterdir()) == ["mine.txt"]  # its writer's file went, not the rest
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in kept + [stranger])
        assert remove_interrupted_writes(tmp_path / "nowhere") == []
    finally:
        live.kill()
        live.wait(timeout=60)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100:-84] = bytes(b ^ 0xFF for b in data[-100:-84])  # inside the tensor data, past the header
    path.write_bytes(bytes(data))


def test_prepare_only_verifies_every_entry_and_rebuilds_a_damaged_one(config_for, prepared_cache, cache_copy,
                                                                      tmp_path, capsys, caplog) -> None:
    config = config_for(tmp_path / "run", cache_copy)
    (tmp_path / "c.json").write_text(config.to_json())
    ben = entry_path(config.data, "ben")
    _flip(ben)
    fingerprint = clip_fingerprints(config, CueConfig())["ben"]
    assert check_entry(ben, fingerprint, verify=False).ok  # the header alone does not show it
    _file(cache_copy / f".ann.safetensors.{HOST}.{_finished_pid()}.tmp" / "ann.safetensors")
    caplog.set_level(logging.INFO, logger="directanimator_core.train.cache")

    assert main(["train", str(tmp_path / "c.json"), "--prepare-only"]) == 0

    assert f"cache ready: 2 clips in {cache_copy}, every entry verified" in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"cache entry {ben} is checksum mismatch (damaged): rebuilding it"]
    assert check_entry(ben, fingerprint).ok
    assert sorted(p.name for p in cache_copy.iterdir()) == ["ann.safetensors", "ben.safetensors"]
    rebuilt, original = load_file(ben), load_file(prepared_cache / "ben.safetensors")
    assert rebuilt.keys() == original.keys() and all(torch.equal(rebuilt[k], original[k]) for k in rebuilt)


def test_an_entry_that_does_not_read_back_is_an_error(config_for, cache_copy, tmp_path, monkeypatch) -> None:
    config = config_for(tmp_path / "run", cache_copy)
    entry_path(config.data, "ann").unlink()
    real = cache_module.save_file

    def bad_disk(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        _flip(Path(filename))

    monkeypatch.setattr(cache_module, "save_file", bad_disk)
    from directanimator_core.models.checkpoints.vae import load_wan_vae

    with pytest.raises(InputError, match=r"cache entry .*ann.safetensors fails its check right after it was written "
                                         r"\(checksum mismatch \(damaged\)\): the disk holding .* fix that"):
        prepare_cache(config.data, lambda: load_wan_vae(config.data.vae)[0], vae_identity(config), CueConfig())
