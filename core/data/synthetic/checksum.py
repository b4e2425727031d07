"""Content checksum of a generated benchmark, the file digests that guard it, and the versions of
the libraries that built it.

The clips are lossless, so their decoded frames equal the rendered ones on every FFmpeg build. The
content checksum therefore hashes what a model sees, not the encoder's bytes: the decoded frames of
every clip (checked equal to the rendered ones at generation) and every metadata file (manifests,
captions, ground truth, stats). Two sets with the same content checksum give the same pixels and
answers wherever they were generated. `checksums.json` also keeps the byte digest of every file of
this copy, so later edits (a hand-edited manifest, a clip copied in from another set) are caught.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

CHECKSUM_FILE = "checksums.json"
_CHUNK = 1 << 20


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of a uint8 (F, H, W, 3) clip, its shape included."""
    h = hashlib.sha256(repr(tuple(frames.shape)).encode())
    h.update(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_checksum(clips: dict[str, str], metadata: dict[str, str]) -> str:
    """One sha256 over (path, frames digest) of every clip and (path, digest) of every metadata
    file, in path order: independent of the encoder build and of the worker count."""
    h = hashlib.sha256()
    for kind, table in (("clip", clips), ("file", metadata)):
        for rel in sorted(table):
            h.update(f"{kind} {rel} {table[rel]}\n".encode())
    return h.hexdigest()


def write_checksums(path: Path, content: str, clips: dict[str, str], files: dict[str, str]) -> str:
    """Write checksums.json; returns the sha256 of its bytes (which the marker records)."""
    doc = {"content_checksum": content, "clip_frames": clips, "files": files}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def _listed_files(checksum_path: Path, expected_sha: str) -> tuple[dict[str, str], list[str]]:
    """({path: digest} recorded in checksums.json, problems reading it)."""
    if not checksum_path.is_file():
        return {}, [f"{checksum_path} is missing"]
    data = checksum_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha:
        return {}, [f"{checksum_path} differs from the one the marker records"]
    return json.loads(data)["files"], []


def stat_signature(root: Path, checksum_path: Path, expected_sha: str) -> str:
    """A digest of (path, size, mtime) of every recorded file: cheap, and it changes whenever a
    file is rewritten, so a copy whose signature was verified before need not be hashed again."""
    files, problems = _listed_files(checksum_path, expected_sha)
    h = hashlib.sha256("\n".join(problems).encode())
    for rel in files:
        try:
            st = (root / rel).stat()
            h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel} missing\n".encode())
    return h.hexdigest()


def verify_files(root: Path, checksum_path: Path, expected_sha: str) -> list[str]:
    """Problems with this copy ([] when every file has the digest recorded at generation)."""
    files, problems = _listed_files(checksum_path, expected_sha)
    for rel, digest in files.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif file_digest(path) != digest:
            problems.append(f"{rel} was modified")
    return problems


def _x264_build() -> str:
    """The x264 version string libx264 writes into every stream ('' when it cannot encode)."""
    import io

    import av

    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format="mp4") as container:
            stream = container.add_stream("libx264rgb", rate=1)
            stream.width = stream.height = 16
            stream.pix_fmt = "rgb24"
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in (*stream.encode(frame), *stream.encode()):
                container.mux(packet)
    except Exception:  # an FFmpeg without libx264: report it as absent, do not fail
        return ""
    found = re.search(rb"x264 - core \d+( r\d+ [0-9a-f]+)?", buf.getvalue())
    return found.group(0).decode() if found else ""


@lru_cache(maxsize=1)
def environment_versions() -> dict[str, str]:
    """Versions that determine the generated and decoded benchmark: PyAV, its FFmpeg libraries,
    the x264 build and numpy (which renders the frames)."""
    import av

    libs = av.library_versions
    out = {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", ""))}
    for lib in ("libavcodec", "libavformat", "libswscale"):
        if lib in libs:
            out[lib] = ".".join(str(v) for v in libs[lib])
    out["x264"] = _x264_build()
    out["numpy"] = np.__version__
    return out


def decoded_content_checksum(root: Path, checksum_path: Path) -> str:
    """The content checksum recomputed from this copy: every clip listed in checksums.json decoded
    and hashed, every metadata file hashed. It equals the recorded one on any FFmpeg build when the
    clips are lossless; slow (decodes everything), so only the CLI's --verify calls it."""
    from core.data.synthetic.writer import read_mp4

    doc = json.loads(checksum_path.read_text(encoding="utf-8"))
    clips = {rel: frames_digest(read_mp4(root / rel)) for rel in doc["clip_frames"]}
    metadata = {rel: file_digest(root / rel) for rel in doc["files"] if rel not in clips}
    return content_checksum(clips, metadata)
