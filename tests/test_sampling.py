"""Sampling policies: edge durations, clamping, the fixed-rate policy and the duration probe."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.data.sampling import fixed_rate, probe_duration, sample_timestamps, uniform
from core.registry import SAMPLING_POLICIES


@pytest.mark.parametrize("duration", [0.0, -3.0])
@pytest.mark.parametrize("policy", [uniform, fixed_rate])
def test_no_duration_gives_one_frame_at_zero(policy, duration):
    assert policy(duration, 2.0, 4, 8) == [0.0]


def test_uniform_exact_two_seconds_at_two_fps():
    assert uniform(2.0, 2.0, 1, 8) == pytest.approx([0.0, 2 / 3, 4 / 3, 2.0])


def test_uniform_tiny_clip_is_raised_to_min_frames_and_spans_the_clip():
    times = uniform(0.1, 2.0, 4, 8)
    assert times == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1])


def test_uniform_long_clip_capped_at_max_frames_first_and_last_at_ends():
    times = uniform(600.0, 2.0, 4, 8)
    assert len(times) == 8
    assert times[0] == 0.0 and times[-1] == pytest.approx(600.0)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps == pytest.approx([600.0 / 7] * 7)


def test_uniform_max_one_frame():
    assert uniform(10.0, 2.0, 1, 1) == [0.0]


def test_fixed_rate_steps_from_zero_below_duration():
    assert fixed_rate(2.0, 2.0, 1, 8) == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_fixed_rate_capped_at_max_frames():
    assert fixed_rate(100.0, 1.0, 1, 5) == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def test_fixed_rate_raised_to_min_frames_by_uniform_spacing():
    assert fixed_rate(1.0, 2.0, 4, 8) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_registry_lookup_and_unknown_policy_message():
    assert SAMPLING_POLICIES.get("uniform") is uniform
    assert sample_timestamps("fps", 2.0, 2.0, 1, 8) == fixed_rate(2.0, 2.0, 1, 8)
    with pytest.raises(KeyError, match="Did you mean 'uniform'"):
        sample_timestamps("unifrom", 2.0, 2.0, 1, 8)


def _stream(duration, time_base, frames=0, rate=None):
    return SimpleNamespace(duration=duration, time_base=time_base, frames=frames, average_rate=rate)


def test_probe_duration_fallback_chain():
    from fractions import Fraction

    container = SimpleNamespace(duration=5_000_000)
    assert probe_duration(container, _stream(300, Fraction(1, 100))) == pytest.approx(3.0)
    assert probe_duration(container, _stream(None, Fraction(1, 100))) == pytest.approx(5.0)
    empty = SimpleNamespace(duration=None)
    assert probe_duration(empty, _stream(None, None, 40, Fraction(20))) == pytest.approx(2.0)
    assert probe_duration(empty, _stream(None, None)) == 0.0
