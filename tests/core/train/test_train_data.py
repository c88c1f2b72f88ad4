"""The clip cache and the samples: resumable preparation, damaged or stale entries rebuilt (never
trained on), no half-written file, quality-driven pose dropout, sample order independent of processes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from directanimator_core.cues.config import CueConfig
from directanimator_core.errors import InputError
from directanimator_core.train import cache as cache_module
from directanimator_core.train.cache import (
    check_entry, entry_path, list_clips, prepare_cache, read_clip, read_entry, read_text, write_atomic)
from directanimator_core.train.config import from_dict, load_config
from directanimator_core.train.data import ClipDataset, SampleStream, read_manifest
from directanimator_core.train.loop import clip_fingerprints, vae_identity

CPU = torch.device("cpu")


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data, past the header
    path.write_bytes(bytes(data))


def test_prepare_skips_finished_clips_and_rebuilds_damaged_or_stale_ones(config_for, cache_copy, tmp_path) -> None:
    config = config_for(tmp_path / "run", cache_copy)
    report = prepare_cache(config.data, _forbidden, vae_identity(config), CueConfig(), verify=True)
    assert report.skipped == ("ann", "ben") and not report.built and not report.rebuilt
    fingerprints = clip_fingerprints(config, CueConfig())
    ben = entry_path(config.data, "ben")

    # a flipped bit: the header check passes, the checksum does not; a full check rebuilds it
    _flip_a_byte(ben)
    assert check_entry(ben, fingerprints["ben"], verify=False).ok
    assert check_entry(ben, fingerprints["ben"]).reason == "checksum mismatch (damaged)"
    report = prepare_cache(config.data, lambda: _tiny_vae(config), vae_identity(config), CueConfig(), verify=True)
    assert report.rebuilt == ("ben",) and report.skipped == ("ann",) and not report.built
    assert check_entry(ben, fingerprints["ben"]).ok

    # found while training instead: refused, moved aside, rebuilt by the next (header-only) preparation
    _flip_a_byte(ben)
    with pytest.raises(InputError, match="damaged; it was moved"):
        read_entry(ben, fingerprints["ben"])
    assert not ben.exists() and ben.with_name("ben.safetensors.damaged").is_file()
    report = prepare_cache(config.data, lambda: _tiny_vae(config), vae_identity(config), CueConfig())
    assert report.built == ("ben",) and report.skipped == ("ann",)
    assert check_entry(ben, fingerprints["ben"]).ok
    assert not list(Path(config.data.cache).glob(".*tmp"))

    # a truncated file fails even the header check
    ann = entry_path(config.data, "ann")
    ann.write_bytes(ann.read_bytes()[:-64])
    assert check_entry(ann, fingerprints["ann"], verify=False).reason.startswith("unreadable")

    other = replace(config.data, reference_frames=2)  # another setting: every entry is stale
    stale = clip_fingerprints(replace(config, data=other), CueConfig())
    assert check_entry(ben, stale["ben"], verify=False).reason.startswith("made from another")
    with pytest.raises(InputError, match="other settings"):
        read_entry(ben, stale["ben"])


def _forbidden():
    raise AssertionError("the VAE must not load when every entry is done")


def test_a_crash_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cache" / "ann.safetensors"
    write_atomic({"x": torch.ones(3)}, path, {"format": "old"})

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic({"x": torch.zeros(3)}, path, {"format": "new"})
    assert [p.name for p in path.parent.iterdir()] == ["ann.safetensors"]
    assert torch.equal(load_file(path)["x"], torch.ones(3))


def _tiny_vae(config):
    from directanimator_core.models.checkpoints.vae import load_wan_vae

    return load_wan_vae(config.data.vae)[0]


def test_entry_holds_the_documented_tensors(config_for, prepared_cache, tmp_path) -> None:
    config = config_for(tmp_path / "run", prepared_cache)
    entry = read_entry(entry_path(config.data, "ann"))
    assert entry["latent"].shape == entry["pose"].shape == entry["face"].shape == (16, 2, 8, 8)
    assert entry["pose_mask"].shape == entry["face_mask"].shape == (4, 2, 8, 8)
    assert entry["image"].shape == (1, 20, 2, 8, 8) and entry["image"][0, :4, 0].eq(1).all()
    assert entry["pose_quality"].shape == (2,)


def test_pose_dropout_blanks_only_poor_frames(config_for, prepared_cache, tmp_path) -> None:
    config = config_for(tmp_path / "run", prepared_cache, data={"pose_dropout": 1.0, "dropout_quality": 0.5})
    dataset = ClipDataset(config.data, clip_fingerprints(config, CueConfig()), 16)
    entry = dict(dataset.read("ann"), pose_quality=torch.tensor([0.9, 0.1]))
    pose = dataset.drop_pose(entry, torch.Generator().manual_seed(0))
    assert torch.equal(pose[:, 0], entry["pose"][:, 0]) and torch.equal(pose[:, 1], entry["blank_pose"][:, 1])
    never = ClipDataset(replace(config.data, pose_dropout=0.0), dataset.fingerprints, 16)
    assert torch.equal(never.drop_pose(entry, torch.Generator().manual_seed(0)), entry["pose"])


def test_two_processes_see_the_global_batch_of_one(config_for, prepared_cache, tmp_path) -> None:
    config = config_for(tmp_path / "run", prepared_cache)
    dataset = ClipDataset(config.data, clip_fingerprints(config, CueConfig()), 16)
    one = SampleStream(dataset, 0, 4).batch(3, CPU)
    halves = [SampleStream(dataset, 0, 4, rank, 2).batch(3, CPU) for rank in (0, 1)]
    assert one.seeds == halves[0].seeds + halves[1].seeds
    assert torch.equal(one.latent, torch.cat([h.latent for h in halves]))
    assert torch.equal(one.cues.pose, torch.cat([h.cues.pose for h in halves]))


def test_manifest_refuses_a_clip_paired_with_itself(tmp_path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"target": "a", "driving": "a"}]))
    with pytest.raises(InputError, match="itself"):
        read_manifest(path)
    path.write_text(json.dumps([{"target": "a"}]))
    with pytest.raises(InputError, match="driving"):
        read_manifest(path)


def test_config_files_round_trip_and_refuse_unknown_fields(tmp_path) -> None:
    config = from_dict({"run": {"steps": 7, "ema": 0.99}, "model": {"lora_targets": ["ffn.0"]}})
    assert config.run.steps == 7 and config.model.lora_targets == ("ffn.0",)
    (tmp_path / "c.json").write_text(config.to_json())
    assert load_config(tmp_path / "c.json") == config
    (tmp_path / "c.toml").write_text('[run]\nsteps = 7\nema = 0.99\n[model]\nlora_targets = ["ffn.0"]\n')
    assert load_config(tmp_path / "c.toml") == config
    with pytest.raises(InputError, match="unknown fields \\['stpes'\\]"):
        from_dict({"run": {"stpes": 7}})
    with pytest.raises(InputError, match="4n \\+ 1"):
        from_dict({"data": {"frames": 16}})
    with pytest.raises(InputError, match="cross_manifest"):
        from_dict({"same2x": {"stage": 2}})


def test_video_files_are_read_cropped_and_resized(tmp_path) -> None:
    frames = np.zeros((6, 48, 96, 3), np.uint8)
    frames[:, :, 24:72] = 200  # a bright centre square: what the centre crop keeps
    writer = cv2.VideoWriter(str(tmp_path / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 8, (96, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()
    assert list_clips(tmp_path) == {"walk": tmp_path / "walk.avi"}
    clip = read_clip(tmp_path / "walk.avi", 5, 32, 32)
    assert clip.shape == (5, 32, 32, 3) and clip.min() > 150  # cropped to the square, scaled down
    with pytest.raises(InputError, match="has 6 frames"):
        read_clip(tmp_path / "walk.avi", 9, 32, 32)


def test_text_states_are_read_beside_the_clip(tmp_path) -> None:
    (tmp_path / "ann").mkdir()
    with pytest.raises(InputError, match="ann.text.safetensors"):
        read_text(tmp_path / "ann")
    save_file({"context": torch.ones(3, 16), "other": torch.zeros(1)}, str(tmp_path / "ann.text.safetensors"))
    assert read_text(tmp_path / "ann").keys() == {"context"}
