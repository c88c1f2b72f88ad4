"""Host-memory admission (admission.py): a run that cannot fit is refused with the figures, before any work."""

from __future__ import annotations

import pytest

from directanimator_core.admission import HostNeed, admit, latent_bytes, pixel_window_bytes, sampler_need
from directanimator_core.errors import InputError
from directanimator_core.offload.plan import GiB
from directanimator_core.offload.policy import host_available_bytes


def test_the_need_grows_with_the_frame_size_and_counts_the_dit_only_on_the_host() -> None:
    small = sampler_need(81, 64, 64, vae_encode_bytes=0, activation_bytes=10, dit_on_host=True)
    large = sampler_need(81, 4096, 4096, vae_encode_bytes=0, activation_bytes=10, dit_on_host=True)
    assert large.encode_bytes == 4096 ** 2 // 64 ** 2 * small.encode_bytes
    assert pixel_window_bytes(81, 4096, 4096) > 30 * GiB  # the float32 resize that took the server down
    assert latent_bytes(81, 480, 832) == 16 * 21 * 60 * 104 * 4
    host = sampler_need(5, 64, 64, 0, activation_bytes=5 * GiB, dit_on_host=True)
    device = sampler_need(5, 64, 64, 0, activation_bytes=5 * GiB, dit_on_host=False)
    assert host.sample_bytes - device.sample_bytes == 5 * GiB


def test_a_run_that_does_not_fit_is_refused_with_its_figures() -> None:
    need = HostNeed(encode_bytes=40 * GiB, sample_bytes=2 * GiB)
    with pytest.raises(InputError, match=r"^a window of 81 frames at 4096x4096 needs about 40\.0 GiB of host memory "
                                         r"for encoding the cues but 20\.0 GiB is free: lower width and height"):
        admit(need, "a window of 81 frames at 4096x4096", available=20 * GiB)
    admit(HostNeed(1 * GiB, 2 * GiB), "small", available=20 * GiB)  # fits: no error
    with pytest.raises(InputError, match="for sampling"):
        admit(HostNeed(1 * GiB, 19 * GiB), "a run", available=20 * GiB)  # above the 85 % headroom


def test_available_host_memory_is_read_from_this_machine() -> None:
    with open("/proc/meminfo", encoding="ascii") as handle:
        total = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemTotal:"))
    assert 0 < host_available_bytes() <= total


def test_a_cue_video_too_large_for_the_host_is_refused_before_it_is_built() -> None:
    from directanimator_core.admission import admit_output
    with pytest.raises(InputError, match=r"^the face cue of 2000 frames at 4096x4096 needs about 468\.8 GiB"):
        admit_output(2000, 4096, 4096, "the face cue", available=20 * GiB)
    admit_output(81, 512, 512, "the face cue", available=20 * GiB)
