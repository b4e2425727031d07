"""Sampling policies: first and last frame kept, evenly spread, clamped, never a frame twice."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from core.data.decode import load_clip, probe_duration
from core.data.sampling import ClipTiming, fixed_rate, sample_timestamps, uniform
from core.registry import SAMPLING_POLICIES
from tests.video_fixtures import coded_frames, frame_index, write_mp4

POLICIES = [uniform, fixed_rate]


@pytest.mark.parametrize("duration", [0.0, -3.0])
@pytest.mark.parametrize("policy", POLICIES)
def test_no_duration_gives_one_frame_at_zero(policy, duration):
    assert policy(ClipTiming(duration, 25.0), 2.0, 4, 8) == [0.0]


def test_last_frame_and_frame_count_of_a_stream():
    clip = ClipTiming(0.32, 25.0)  # 8 frames at 25 fps: the last one starts at 0.28 s
    assert clip.last_frame == pytest.approx(0.28)
    assert clip.num_frames == 8
    assert ClipTiming(2.0).last_frame == 2.0 and ClipTiming(2.0).num_frames is None


def test_uniform_count_is_rounded_duration_times_fps_first_to_last_frame():
    # 2 s at 10 fps source: 20 frames, the last at 1.9 s; round(2·2) = 4 targets
    assert uniform(ClipTiming(2.0, 10.0), 2.0, 1, 8) == pytest.approx([0.0, 1.9 / 3, 3.8 / 3, 1.9])


@pytest.mark.parametrize("policy", POLICIES)
def test_long_clip_capped_at_max_frames_covers_the_whole_clip(policy):
    times = policy(ClipTiming(60.0, 25.0), 4.0, 4, 8)
    assert len(times) == 8
    assert times[0] == 0.0 and times[-1] == pytest.approx(60.0 - 1 / 25)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps == pytest.approx([(60.0 - 1 / 25) / 7] * 7)


def test_fixed_rate_has_gaps_of_at_most_one_over_fps_and_keeps_the_last_frame():
    times = fixed_rate(ClipTiming(2.0, 10.0), 2.0, 1, 8)  # last frame at 1.9 s
    assert times[0] == 0.0 and times[-1] == pytest.approx(1.9)
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 0.5 + 1e-9
    assert len(times) == 5  # ceil(1.9·2) + 1
    assert fixed_rate(ClipTiming(2.05, 20.0), 2.0, 1, 8) == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


@pytest.mark.parametrize("policy", POLICIES)
def test_short_clip_raised_to_min_frames_but_never_past_its_own_frames(policy):
    assert len(policy(ClipTiming(1.0, 25.0), 2.0, 4, 8)) == 4
    assert len(policy(ClipTiming(0.28, 25.0), 2.0, 8, 8)) == 7  # a 7-frame clip gives 7


def test_max_one_frame():
    assert uniform(ClipTiming(10.0, 25.0), 2.0, 1, 1) == [0.0]


@pytest.mark.parametrize("n", [7, 8, 9])
def test_short_clip_decodes_each_source_frame_once(tmp_path, n):
    """0.3 s at 25 fps with 8 frames wanted: every source frame once (was 0,1,2,3,5,6,7,7)."""
    path = write_mp4(tmp_path / "short.mp4", coded_frames(n), fps=25)
    frames, info, times = load_clip(path, lambda clip: uniform(clip, 2.0, 8, 8), 32)
    assert info.valid.all()
    got = [frame_index(f, n) for f in frames]
    assert len(set(got)) == len(got) == min(n, 8) and got == sorted(got)
    assert got[0] == 0 and got[-1] == n - 1


def test_registry_lookup_and_unknown_policy_message():
    clip = ClipTiming(2.0, 25.0)
    assert SAMPLING_POLICIES.get("uniform") is uniform
    assert sample_timestamps("fps", clip, 2.0, 1, 8) == fixed_rate(clip, 2.0, 1, 8)
    with pytest.raises(KeyError, match="Did you mean 'uniform'"):
        sample_timestamps("unifrom", clip, 2.0, 1, 8)


def _stream(duration, time_base, frames=0, rate=None):
    return SimpleNamespace(duration=duration, time_base=time_base, frames=frames, average_rate=rate)


def test_probe_duration_fallback_chain():
    container = SimpleNamespace(duration=5_000_000)
    assert probe_duration(container, _stream(300, Fraction(1, 100))) == pytest.approx(3.0)
    assert probe_duration(container, _stream(None, Fraction(1, 100))) == pytest.approx(5.0)
    empty = SimpleNamespace(duration=None)
    assert probe_duration(empty, _stream(None, None, 40, Fraction(20))) == pytest.approx(2.0)
    assert probe_duration(empty, _stream(None, None)) == 0.0
