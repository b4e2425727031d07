"""On-disk cache of decoded clips, so later epochs and other sweep cells skip decoding.

An entry is `<data_root>/.cache/frames/<key>.npy` (uint8 frames (n,S,S,3)) plus `<key>.json`
(frame times, valid mask, failure reason). The key hashes the clip identity (absolute path, size,
mtime) and every setting that changes the decoded frames, so editing a clip or the sampling
config misses the old entry. Both files are written to a temp name and renamed into place, the
.npy last, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Part of every key: bump it when the sampling or decoding rules change what a key decodes to.
CACHE_VERSION = 2


@dataclass
class DecodedClip:
    """Decoded frames of one clip and what became of each requested timestamp."""

    frames: np.ndarray  # uint8 (n, S, S, 3)
    times: np.ndarray  # float32 (n,), seconds; 0 where invalid
    valid: np.ndarray  # bool (n,)
    reason: str = ""  # "" when every frame decoded, else why not (see core.data.decode)
    error: str = ""


def cache_key(path: str | Path, cfg: Any) -> str | None:
    """Hex key for `path` under the sampling/decoding settings of `cfg`; None if it cannot stat."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return None
    ident = [
        CACHE_VERSION,
        str(p),
        st.st_size,
        st.st_mtime_ns,
        cfg.sampling_policy,
        float(cfg.fps),
        int(cfg.min_frames),
        int(cfg.max_frames),
        int(cfg.frame_size),
    ]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:40]


class FrameCache:
    """Get/put DecodedClip entries under `<data_root>/.cache/frames/`."""

    def __init__(self, data_root: str | Path) -> None:
        self.dir = Path(data_root) / ".cache" / "frames"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npy", self.dir / f"{key}.json"

    def get(self, key: str) -> DecodedClip | None:
        npy, meta = self._paths(key)
        if not npy.is_file():
            return None
        try:
            info = json.loads(meta.read_text())
            frames = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable frame-cache entry %s (%s)", npy, exc)
            return None
        return DecodedClip(
            frames=frames,
            times=np.asarray(info["times"], np.float32),
            valid=np.asarray(info["valid"], bool),
            reason=info.get("reason", ""),
            error=info.get("error", ""),
        )

    def put(self, key: str, clip: DecodedClip) -> None:
        """Store `clip`; failures to write only log (the cache is an optimisation)."""
        npy, meta = self._paths(key)
        tag = f"{os.getpid()}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp_meta = meta.with_name(f"{meta.name}.{tag}")
            tmp_meta.write_text(
                json.dumps(
                    {
                        "times": [float(t) for t in clip.times],
                        "valid": [bool(v) for v in clip.valid],
                        "reason": clip.reason,
                        "error": clip.error,
                    }
                )
            )
            os.replace(tmp_meta, meta)
            tmp_npy = npy.with_name(f"{key}.{tag}.npy")
            np.save(tmp_npy, np.ascontiguousarray(clip.frames, dtype=np.uint8))
            os.replace(tmp_npy, npy)
        except OSError as exc:
            log.warning("could not write frame cache entry under %s (%s)", self.dir, exc)
