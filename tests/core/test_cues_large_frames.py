"""Large frames are analysed at a working size (CueConfig.analysis_side) and their cues come out at full size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from directanimator_core.cues import segment
from directanimator_core.cues.config import CueConfig
from directanimator_core.cues.frames import ScaledSource, analysis_scale, chunk_size
from directanimator_core.cues.triplet import alignment_for, analyse, render
from harness import media

FRAMES = 12


@pytest.fixture(scope="module")
def walk():
    return media.vtest_frames(FRAMES)


@pytest.fixture(scope="module")
def tracks(walk):
    """(1000x750 track, 4000x3000 track, background shapes seen while analysing the large clip)."""
    small = analyse(media.ResizedClip(walk, 750, 1000), CueConfig())
    shapes = []
    original = segment.background_of

    def recording(sample, num_frames):
        background = original(sample, num_frames)
        shapes.append(None if background is None else background.shape)
        return background

    segment.background_of = recording
    try:
        large = analyse(media.ResizedClip(walk, 3000, 4000), CueConfig())
    finally:
        segment.background_of = original
    return small, large, shapes


def test_working_size_and_chunks() -> None:
    assert analysis_scale(512, 512, 1024) == 1.0 and analysis_scale(750, 1000, 1024) == 1.0
    assert analysis_scale(3000, 4000, 1024) == 0.256
    scaled = ScaledSource(media.ResizedClip(media.vtest_frames(2), 3000, 4000), 0.256)
    assert (scaled.height, scaled.width) == (768, 1024)
    assert next(scaled.chunks(16)).shape == (1, 768, 1024, 3)  # one full-size frame read at a time
    assert chunk_size(16, 576, 768) == 16 and chunk_size(16, 3000, 4000) == 1


def test_large_clip_background_is_held_at_the_working_size(tracks) -> None:
    *_, shapes = tracks
    assert shapes == [(768, 1024, 3)]


def test_large_clip_cues_at_full_size_with_the_person_in_place(tracks) -> None:
    small, large, _ = tracks
    assert (large.height, large.width) == (3000, 4000)
    assert large.mask(0).shape == (3000, 4000)
    both = small.person & large.person
    assert both.sum() >= FRAMES - 2
    # the same person, in the same place: boxes within a few pixels of the 1000x750 clip's, scaled by 4
    error = np.abs(large.body_boxes[both] / 4 - small.body_boxes[both])
    assert np.median(error) < 4, error
    for index in np.nonzero(both)[0][:3]:
        a, b = small.mask(index) > 0, cv2.resize(large.mask(index), (1000, 750), interpolation=cv2.INTER_AREA) > 127
        assert (a & b).sum() / (a | b).sum() > 0.7
    chunk = next(render(media.ResizedClip(media.vtest_frames(FRAMES), 3000, 4000), large, alignment_for(large, None), CueConfig()))
    assert chunk.pose.shape == (1, 3000, 4000, 3) and chunk.body_mask.shape == (1, 3000, 4000)


def test_a_given_mask_is_kept_at_full_size(walk) -> None:
    source = media.ResizedClip(walk[:3], 1500, 2000)
    masks = np.zeros((3, 1500, 2000), np.uint8)
    masks[:, 500:1400, 900:1201] = 255  # one column of odd width: lost if stored downscaled
    track = analyse(source, CueConfig(), masks=masks)
    assert np.array_equal(track.mask(1), masks[1])
    assert np.allclose(track.body_boxes[1], [900, 500, 1201, 1400], atol=3)


def test_face_cue_of_a_large_portrait_matches_the_small_one() -> None:
    from directanimator_core.cues.triplet import build_face_cue

    clip = media.pan_clip(media.grace_hopper(), 3)
    small, found_small = build_face_cue(clip, CueConfig())
    large, found_large = build_face_cue(media.ResizedClip(clip, 2400, 2400), CueConfig())
    assert large.shape == (3, 2400, 2400, 3) and found_small.all() and found_large.all()
    # the same face, centred alike: the large cue brought down to the small one's size is close to it
    down = np.stack([cv2.resize(f, clip.shape[2:0:-1], interpolation=cv2.INTER_AREA) for f in large])
    assert np.abs(down.astype(int) - small).mean() < 20
