"""Write small MP4 fixtures with PyAV, including colour-coded frames and deliberately bad files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Frame i of n is painted with PALETTE[i % 6] in its top half and a grey level encoding i // 6 in its
# bottom half, so a decoded frame identifies its source index even after lossy coding and resizing.
PALETTE = np.array(
    [[230, 25, 25], [25, 200, 25], [25, 25, 230], [230, 230, 25], [230, 25, 230], [25, 230, 230]],
    np.uint8,
)


def coded_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8 frames whose content encodes the frame index (see `frame_index`)."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i, : height // 2] = PALETTE[i % len(PALETTE)]
        frames[i, height // 2 :] = _grey(i, n)
    return frames


def _grey(i: int, n: int) -> int:
    cycles = -(-n // len(PALETTE))
    if cycles > 13:
        raise ValueError(f"coded_frames supports at most {13 * len(PALETTE)} frames, got n={n}")
    return 10 + (i // len(PALETTE)) * (240 // max(cycles - 1, 1))


def frame_index(frame: np.ndarray, n: int) -> int:
    """Recover the source index of a decoded `coded_frames` frame (any size) among n frames."""
    h = frame.shape[0]
    top = frame[h // 8 : 3 * h // 8].reshape(-1, 3).astype(float).mean(0)
    grey = frame[5 * h // 8 : 7 * h // 8].astype(float).mean()
    colour = int(np.argmin(((PALETTE.astype(float) - top) ** 2).sum(1)))
    candidates = [i for i in range(n) if i % len(PALETTE) == colour]
    return min(candidates, key=lambda i: abs(_grey(i, n) - grey))


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    codec: str = "h264",
    gop: int = 12,
    *,
    pts: Sequence[int] | None = None,
    time_base: tuple[int, int] | None = None,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
    bframes: int | None = None,
) -> Path:
    """Encode RGB frames (n, H, W, 3) to `path` with PyAV.

    `pts`/`time_base` give explicit (e.g. variable-rate) timestamps; `rotation` stores a
    display-matrix rotation (counter-clockwise degrees); `faststart` puts the index first so a
    truncated copy still decodes its leading frames.
    """
    from fractions import Fraction

    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = "libx264" if codec == "h264" else codec
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(name, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if time_base is not None:
            stream.codec_context.time_base = Fraction(*time_base)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = (
                    Fraction(*time_base) if time_base else stream.codec_context.time_base
                )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: str | Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    tone = (0.2 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        chunk = 1024
        for k in range(0, n - chunk + 1, chunk):
            frame = av.AudioFrame.from_ndarray(
                tone[None, k : k + chunk], format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first `fraction` of the bytes of `src` to `dst`."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_random_bytes(path: str | Path, size: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_clip_zoo(folder: str | Path, n: int = 20, fps: float = 5.0) -> dict[str, Path]:
    """One clip of every awkward kind the data path must survive, keyed by kind.

    Good-but-unusual clips: ok, odd_resolution (33×17 MPEG-4), vfr (irregular timestamps),
    rotated (90° display matrix), partial (truncated with the index first: leading frames decode).
    Unusable clips: missing (never written), empty, truncated (index at the end cut off),
    random_bytes, audio_only.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = coded_frames(n)
    ok = write_mp4(folder / "ok.mp4", frames, fps)
    vfr_pts = np.cumsum([0] + [1 if i % 3 else 3 for i in range(n - 1)])
    full = write_mp4(folder / "full_faststart.tmp.mp4", frames, fps, faststart=True)
    zoo = {
        "ok": ok,
        "odd_resolution": write_mp4(
            folder / "odd_resolution.mp4", coded_frames(n, 17, 33), fps, codec="mpeg4"
        ),
        "vfr": write_mp4(
            folder / "vfr.mp4", frames, fps, pts=vfr_pts.tolist(), time_base=(1, int(2 * fps))
        ),
        "rotated": write_mp4(folder / "rotated.mp4", frames, fps, rotation=90),
        "partial": write_truncated(full, folder / "partial.mp4", 0.7),
        "missing": folder / "missing.mp4",
        "empty": folder / "empty.mp4",
        "truncated": write_truncated(ok, folder / "truncated.mp4", 0.6),
        "random_bytes": write_random_bytes(folder / "random_bytes.mp4"),
        "audio_only": write_audio_only(folder / "audio_only.mp4"),
    }
    full.unlink()
    zoo["empty"].write_bytes(b"")
    return zoo
