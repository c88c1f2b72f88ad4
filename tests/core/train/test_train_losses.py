"""Losses and the Same2X step: L_S2X is 0 with zero gradient when teacher and student agree, and its
gradient reaches only the student's trainable parameters."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from directanimator_core.errors import InputError
from directanimator_core.models.checkpoints.adapter import save_adapter
from directanimator_core.models.conditioning import CueLatents
from directanimator_core.train.data import ClipDataset, SampleStream
from directanimator_core.train.loop import clip_fingerprints
from directanimator_core.train.losses import flow_matching_loss, same2x_alignment_loss
from directanimator_core.train.same2x import build_student, build_teacher, compute_losses, trainable_parameters

CPU = torch.device("cpu")


def test_alignment_loss_is_zero_with_zero_gradient_at_identical_tokens(generator) -> None:
    teacher = torch.randn(2, 8, 16, generator=generator)
    student = (teacher * 3).clone().requires_grad_(True)  # same directions, other lengths
    loss = same2x_alignment_loss(student, teacher)
    (grad,) = torch.autograd.grad(loss, student)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert grad.abs().max().item() < 1e-7
    assert same2x_alignment_loss(-teacher, teacher).item() == pytest.approx(2.0, abs=1e-6)


def test_flow_matching_loss_is_zero_for_the_true_velocity(generator) -> None:
    x0, noise = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    assert flow_matching_loss(noise - x0, x0, noise).item() == 0.0
    assert flow_matching_loss(torch.zeros_like(x0), x0, noise).item() > 0.5


@pytest.fixture
def stage2(config_for, prepared_cache, tmp_path):
    """Stage-2 config starting from a stage-1 adapter whose gates are open (so cues matter)."""
    config = config_for(tmp_path / "run", prepared_cache, same2x={"stage": 2, "depth": 1, "weight": 0.5})
    student = build_student(config, CPU)
    with torch.no_grad():
        for param in student.net.adapter.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    path = save_adapter(student.net.adapter, tmp_path / "stage1.safetensors")
    config = replace(config, model=replace(config.model, adapter=str(path)))
    stream = SampleStream(ClipDataset(config.data, clip_fingerprints(config, _cues()), 16, _pairs()), 0, 2)
    return config, stream.batch(0, CPU)


def _cues():
    from directanimator_core.cues.config import CueConfig

    return CueConfig()


def _pairs():
    return [("ann", "ben"), ("ben", "ann")]


def test_same2x_loss_is_zero_when_student_sees_the_teachers_inputs(stage2) -> None:
    config, batch = stage2
    student, teacher = build_student(config, CPU), build_teacher(config, CPU)
    same = replace(batch, cross=batch.cues)
    losses = compute_losses(student, teacher, same, config, CPU)
    params = list(trainable_parameters(student).values())
    grads = torch.autograd.grad(losses.same2x, params, allow_unused=True)
    assert losses.same2x.item() == pytest.approx(0.0, abs=1e-6)
    assert max(g.abs().max().item() for g in grads if g is not None) < 1e-6


def test_same2x_gradient_reaches_only_the_students_trainable_parameters(stage2) -> None:
    config, batch = stage2
    student, teacher = build_student(config, CPU), build_teacher(config, CPU)
    losses = compute_losses(student, teacher, batch, config, CPU)
    assert losses.same2x.item() > 1e-6  # other identity's cues -> other block-D tokens
    losses.same2x.backward()
    trained = trainable_parameters(student)
    assert trained and all(name.startswith("net.adapter.") for name in trained)
    assert sum(p.grad.abs().sum().item() for p in trained.values() if p.grad is not None) > 0
    frozen = [p for n, p in student.named_parameters() if n not in trained]
    assert frozen and all(p.grad is None for p in frozen)
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())


def test_cross_cues_differ_from_same_id_cues(stage2) -> None:
    _, batch = stage2
    assert isinstance(batch.cross, CueLatents)
    assert not torch.equal(batch.cross.pose, batch.cues.pose)


def test_an_offloaded_teacher_gives_the_resident_teachers_loss(stage2) -> None:
    config, batch = stage2
    student = build_student(config, CPU)
    resident = compute_losses(student, build_teacher(config, CPU), batch, config, CPU)
    offloaded_config = replace(config, same2x=replace(config.same2x, teacher_budget_gb=1.0))
    teacher = build_teacher(offloaded_config, CPU)
    assert teacher._swap is not None  # the teacher went through offload/ (on the CPU nothing streams)
    offloaded = compute_losses(student, teacher, batch, offloaded_config, CPU)
    assert torch.equal(resident.same2x, offloaded.same2x) and torch.equal(resident.total, offloaded.total)


def test_a_backbone_the_data_does_not_fit_is_refused_before_training(config_for, prepared_cache, tmp_path) -> None:
    from directanimator_core.errors import DirectAnimatorError, InputError

    config = config_for(tmp_path / "run", prepared_cache, data={"reference_frames": 0})
    with pytest.raises(InputError, match="reference_frames=0 but model.backbone is an image-to-video"):
        build_student(config, CPU)
    config = config_for(tmp_path / "run", prepared_cache, same2x={"stage": 2, "depth": 2})
    with pytest.raises(DirectAnimatorError, match="depth=2"):
        build_student(config, CPU)


def test_figure_weights_cover_the_persons_latent_pixels_and_keep_the_loss_scale(generator) -> None:
    from directanimator_core.train.losses import figure_weights

    mask = torch.zeros(1, 4, 2, 6, 6)
    mask[0, 3, 1, 2, 2] = 0.75  # the last pixel frame of latent frame 1 covers most of one latent pixel
    mask[0, 0, 1, 4, 4] = 0.1  # a thin limb crosses another
    weight = figure_weights(mask, 4.0)
    assert weight.shape == (1, 1, 2, 6, 6)
    assert (weight[0, 0, 0] == 1).all() and weight[0, 0, 1, 2, 2] == weight[0, 0, 1, 4, 4] == 5
    assert weight[0, 0, 1].sum() == 36 + 2 * 4
    x0, noise = torch.randn(1, 3, 2, 6, 6, generator=generator), torch.randn(1, 3, 2, 6, 6, generator=generator)
    velocity = torch.randn(1, 3, 2, 6, 6, generator=generator)
    assert flow_matching_loss(velocity, x0, noise, torch.ones(1, 1, 2, 6, 6)).item() == pytest.approx(
        flow_matching_loss(velocity, x0, noise).item(), rel=1e-6)  # uniform weight = the plain mean
    # an error only on the figure counts (1 + w) / mean(weight) times more than the plain mean says
    figure_only = torch.where(weight > 1, velocity, noise - x0)
    plain, weighted = flow_matching_loss(figure_only, x0, noise), flow_matching_loss(figure_only, x0, noise, weight)
    assert weighted.item() == pytest.approx(plain.item() * 5 / weight.mean().item(), rel=1e-5)


def test_figure_weight_changes_the_step_loss_only_when_set(config_for, prepared_cache, tmp_path) -> None:
    plain = config_for(tmp_path / "a", prepared_cache, run={"steps": 1})
    weighted = config_for(tmp_path / "b", prepared_cache, run={"steps": 1, "figure_weight": 9.0})
    student = build_student(plain, CPU)
    batch = SampleStream(ClipDataset(plain.data, clip_fingerprints(plain), 16), plain.run.seed, 2).batch(0, CPU)
    assert batch.figure is not None and batch.figure.shape == batch.cues.pose_mask.shape
    mask = torch.zeros_like(batch.figure)
    mask[..., 2:4, 2:4] = 1  # these clips' people fill the frame: a small figure instead
    batch = replace(batch, figure=mask)
    a = compute_losses(student, None, batch, plain, CPU).denoise.item()
    b = compute_losses(student, None, batch, weighted, CPU).denoise.item()
    assert abs(a - b) > 1e-3 * a
    off = replace(weighted, run=replace(weighted.run, figure_weight=0.0))
    assert compute_losses(student, None, batch, off, CPU).denoise.item() == a
    with pytest.raises(InputError, match="delete the cache folder"):  # a cache from before the masks
        compute_losses(student, None, replace(batch, figure=None), weighted, CPU)


def test_cue_dropout_trains_the_cue_free_prediction_on_a_share_of_steps(stage2) -> None:
    from directanimator_core.train.same2x import drops_cues

    draws = [drops_cues((seed,), 0.2) for seed in range(2000)]
    assert 0.17 < sum(draws) / len(draws) < 0.23 and draws == [drops_cues((s,), 0.2) for s in range(2000)]
    assert not any(drops_cues((seed,), 0.0) for seed in range(200))
    config, batch = stage2
    dropped = next(seed for seed in range(100) if drops_cues((seed,), 0.5))
    batch = replace(batch, seeds=(dropped, *batch.seeds[1:]))
    student, teacher = build_student(config, CPU), build_teacher(config, CPU)
    on = replace(config, run=replace(config.run, cue_dropout=0.5))
    free = compute_losses(student, teacher, batch, on, CPU)
    cued = compute_losses(student, teacher, batch, config, CPU)
    assert torch.isnan(free.same2x) and not torch.isnan(cued.same2x)  # no teacher alignment without cues
    assert free.denoise.item() != cued.denoise.item()
    with torch.no_grad():  # the cue-free step is the model called with no cues at all
        empty = compute_losses(student, teacher, replace(batch, cross=None), config, CPU)
    assert free.denoise.item() == pytest.approx(empty.denoise.item(), rel=1e-6)
    with pytest.raises(InputError, match="cue_dropout"):
        replace(config.run, cue_dropout=1.0)
