"""The synthetic world written as the trainer's clip folder: the trainer's own readers accept it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from directanimator_core.errors import InputError
from directanimator_core.synth import cross_id_pair, split_seed
from directanimator_core.synth.export import export_pairs, load_truth
from directanimator_core.train.cache import list_clips, read_clip
from directanimator_core.train.data import read_manifest


def test_exported_folder_reads_back_through_the_trainer(tmp_path: Path) -> None:
    report = export_pairs(tmp_path, "heldout", 2, frames=5, height=64, width=64)
    clips = list_clips(tmp_path)
    assert sorted(clips) == sorted(report.clips) and len(clips) == 4
    pairs = read_manifest(report.manifest)
    assert len(pairs) == 4 and all(t.rsplit("_", 1)[0] == d.rsplit("_", 1)[0] for t, d in pairs)
    pair = cross_id_pair(split_seed("heldout", 0), 5, 64, 64)
    name = f"p{split_seed('heldout', 0)}"
    assert np.array_equal(read_clip(clips[f"{name}_a"], 5, 64, 64), pair.truth.render.frames)  # PNG is lossless
    assert np.array_equal(read_clip(clips[f"{name}_b"], 5, 64, 64), pair.driving.render.frames)
    truth = load_truth(tmp_path / f"{name}_a.truth.npz")
    assert np.array_equal(truth["person"], pair.truth.render.person)
    assert np.array_equal(truth["face"], pair.truth.render.face)
    assert np.array_equal(truth["joints"], pair.truth.render.joints)


def test_export_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pairs=0"):
        export_pairs(tmp_path, "train", 0)
    with pytest.raises(InputError, match="'val'"):
        export_pairs(tmp_path, "val", 1)


def test_training_set_up_gives_valid_stage_configs_and_a_loadable_backbone(tmp_path: Path) -> None:
    from safetensors import safe_open

    from directanimator_core.models.checkpoints.backbone import BACKBONE_METADATA
    from directanimator_core.models.config import BackboneConfig
    from directanimator_core.synth.training import training_configs, write_initial_backbone
    from directanimator_core.train.config import config_from_json

    tiny = BackboneConfig(dim=32, ffn_dim=64, num_layers=3, num_heads=2, text_dim=16, in_dim=36)
    backbone = write_initial_backbone(tmp_path / "init.safetensors", tiny)
    with safe_open(str(backbone), "pt") as handle:
        assert BackboneConfig.from_json(handle.metadata()[BACKBONE_METADATA]) == tiny
        assert handle.get_tensor("head.head.weight").abs().sum() > 0  # gradients flow from step one
    stage1, stage2 = training_configs(tmp_path / "clips", tmp_path / "vae.safetensors", backbone, tmp_path / "runs",
                                      frames=5, size=64, layers=3)
    for config in (stage1, stage2):
        assert config_from_json(config.to_json()) == config
    assert (stage1.same2x.stage, stage2.same2x.stage) == (1, 2)
    assert stage2.model.backbone == str(tmp_path / "runs" / "stage1" / "model.safetensors")
    assert stage2.data.cross_manifest.endswith("cross_manifest.json") and stage1.same2x.depth == 1

