"""PyAV decoding: the right frame per timestamp (seek and sequential), odd clips, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.decode import ClipError, decode_frames, denormalize_frames, normalize_frames
from tests.video_fixtures import PALETTE, coded_frames, frame_index, write_mp4

N, FPS = 60, 10.0


@pytest.fixture(scope="module", params=[("h264", None), ("h264", 3), ("mpeg4", None)])
def clip(request, tmp_path_factory):
    codec, bframes = request.param
    path = tmp_path_factory.mktemp("dec") / f"{codec}_{bframes}.mp4"
    return write_mp4(path, coded_frames(N), FPS, codec=codec, gop=12, bframes=bframes)


def _expected(t: float) -> int:
    """Index of the first source frame with time ≥ t − half a frame (last frame past the end)."""
    return min(int(np.ceil(round((t - 0.5 / FPS) * FPS, 6))), N - 1)


@pytest.mark.parametrize("mode", ["auto", "seek", "sequential"])
def test_sparse_targets_hit_the_right_frames(clip, mode):
    targets = [0.0, 1.55, 3.3, 5.9, 6.0, 2.0, 1.46, 1.44]
    frames, info = decode_frames(clip, targets, 32, mode=mode)
    assert frames.shape == (len(targets), 32, 32, 3) and frames.dtype == np.uint8
    assert info.valid.all()
    assert [frame_index(f, N) for f in frames] == [_expected(t) for t in targets]
    assert info.times == pytest.approx([_expected(t) / FPS for t in targets], abs=1e-4)
    if mode == "sequential":
        assert info.seeks == 0 and info.frames_decoded == N
    else:
        assert info.seeks >= 1 and info.frames_decoded < N


@pytest.mark.parametrize("mode", ["auto", "seek", "sequential"])
def test_every_frame_in_order(clip, mode):
    targets = [i / FPS for i in range(N)]
    frames, info = decode_frames(clip, targets, 16, mode=mode)
    assert [frame_index(f, N) for f in frames] == list(range(N))


def test_auto_reads_dense_targets_in_one_pass(clip):
    _, info = decode_frames(clip, [i / FPS for i in range(N)], 16, mode="auto")
    assert info.seeks <= 1 and info.frames_decoded == N


def test_auto_skips_gops_for_sparse_targets(clip):
    _, info = decode_frames(clip, [0.5, 5.5], 16, mode="auto")
    assert info.frames_decoded < N // 2


def test_target_beyond_the_end_by_more_than_a_frame_is_invalid(clip):
    frames, info = decode_frames(clip, [1.0, 6.0, 9.0], 16)
    assert info.valid.tolist() == [True, True, False]
    assert frame_index(frames[1], N) == N - 1
    assert (frames[2] == 0).all()


def test_colours_survive_resize(tmp_path):
    path = write_mp4(tmp_path / "c.mp4", coded_frames(6, 96, 128), 6, gop=3)
    frames, _ = decode_frames(path, [i / 6 for i in range(6)], 24)
    for i, f in enumerate(frames):
        top = f[2:8].reshape(-1, 3).astype(int).mean(0)
        assert np.abs(top - PALETTE[i]).max() < 25


def test_rotation_metadata_is_applied(clip_zoo):
    upright, info_r = decode_frames(clip_zoo["rotated"], [0.0], 32)
    plain, info_p = decode_frames(clip_zoo["ok"], [0.0], 32)
    assert info_r.rotation == 90 and info_p.rotation == 0
    # 90° counter-clockwise: the coloured top half of the coded frame ends up on the left.
    assert np.abs(upright[0].astype(int) - np.rot90(plain[0]).astype(int)).max() < 12
    assert np.abs(upright[0].astype(int) - plain[0].astype(int)).max() > 100


def test_odd_resolution_vfr_and_partial_clips(clip_zoo):
    frames, info = decode_frames(clip_zoo["odd_resolution"], [0.0, 1.0, 2.0], 32)
    assert info.valid.all() and (info.width, info.height) == (33, 17)
    assert [frame_index(f, 20) for f in frames] == [0, 5, 10]
    # VFR: every third gap is three ticks of 0.1 s, so frame k sits at a known irregular time.
    ticks = np.cumsum([0] + [1 if i % 3 else 3 for i in range(19)]) / 10.0
    frames, info = decode_frames(clip_zoo["vfr"], [0.0, 1.3, 2.2], 32)
    want = [int(np.argmax(ticks >= t - 1e-6)) for t in (0.0, 1.3, 2.2)]
    assert info.valid.all() and [frame_index(f, 20) for f in frames] == want
    frames, info = decode_frames(clip_zoo["partial"], [0.0, 3.5], 32)
    assert info.valid.tolist() == [True, False] and frame_index(frames[0], 20) == 0


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "missing"),
        ("empty", "empty"),
        ("truncated", "undecodable"),
        ("random_bytes", "undecodable"),
        ("audio_only", "no_video_stream"),
    ],
)
def test_unusable_clips_raise_clip_error_with_reason(clip_zoo, kind, reason):
    with pytest.raises(ClipError) as err:
        decode_frames(clip_zoo[kind], [0.0], 16)
    assert err.value.reason == reason and str(clip_zoo[kind]) in str(err.value)


def test_unknown_mode_is_rejected(clip_zoo):
    with pytest.raises(ValueError, match="decode mode"):
        decode_frames(clip_zoo["ok"], [0.0], 16, mode="fast")


def test_normalize_frames_maps_to_unit_range():
    x = np.array([0, 255, 51], np.uint8).reshape(1, 1, 1, 3).repeat(2, 1).repeat(2, 2)
    out = normalize_frames(x)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1])


def test_denormalize_inverts_normalize_for_any_configured_statistics():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for mean, std in (((0.166, 0.165, 0.163), (0.107, 0.098, 0.104)), ((0.5,) * 3, (0.5,) * 3)):
        pixels = normalize_frames(frames, mean, std)
        assert np.array_equal(denormalize_frames(pixels, mean, std), frames)
    # Negative control: inverting the dataset statistics with SigLIP's 0.5/0.5 (the old keep-map
    # code) washes a dark background out to mid-grey.
    dark = np.full((1, 4, 4, 3), 40, np.uint8)
    pixels = normalize_frames(dark, (0.166,) * 3, (0.107,) * 3)
    assert denormalize_frames(pixels, (0.166,) * 3, (0.107,) * 3).max() == 40
    assert denormalize_frames(pixels).min() > 100
