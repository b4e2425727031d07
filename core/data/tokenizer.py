"""Tokenizers: a word-level one built from the training manifest, and a local HF adapter."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}'])")


def split_words(text: str) -> list[str]:
    """Lower-cased words with punctuation split off as separate tokens."""
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Lower-cased word-level tokenizer; ids 0..3 are <pad>, <unk>, <bos>, <eos>."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIALS)
        for w in words:
            if w not in SPECIALS:
                self.itos.append(w)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("WordTokenizer: duplicate words in the vocabulary")

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> WordTokenizer:
        """Vocabulary of every word seen `min_count`+ times, most frequent first (ties: a→z)."""
        counts = Counter(w for text in texts for w in split_words(text))
        ordered = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(ordered)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in split_words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces (specials dropped, no space before closing punctuation)."""
        words = [self.itos[i] for i in ids if 0 <= i < len(self.itos) and i > self.eos_id]
        return _NO_SPACE_BEFORE.sub(r"\1", " ".join(words))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON atomically (tmp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"type": "word", "itos": self.itos}, indent=0))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{path}: not a readable tokenizer JSON ({exc}). Fix: delete it to rebuild."
            ) from exc
        if data.get("type") != "word" or list(data.get("itos", [])[:4]) != list(SPECIALS):
            raise ValueError(f"{path}: not a WordTokenizer file. Fix: delete it to rebuild.")
        return cls(data["itos"][len(SPECIALS) :])


class HFTokenizer:
    """Adapter giving a local Hugging Face tokenizer the WordTokenizer interface."""

    def __init__(self, path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError(
                f"HF tokenizer {path!r} needs the optional 'transformers' package. "
                "Fix: pip install -e '.[hf]' or leave the hf tokenizer path empty."
            ) from exc
        if not Path(path).exists():
            raise FileNotFoundError(
                f"HF tokenizer path {path!r} does not exist. Fix: point it at a local model "
                "directory (nothing is downloaded at run time)."
            )
        self.tok: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.eos_id: int = self.tok.eos_token_id
        if self.eos_id is None:
            raise ValueError(f"HF tokenizer {path!r} has no eos token. Fix: use another model.")
        self.bos_id: int | None = self.tok.bos_token_id
        pad = self.tok.pad_token_id
        self.pad_id: int = self.eos_id if pad is None else pad

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


def tokenizer_path(cfg: Any) -> Path:
    """Where the word tokenizer of a dataset lives: `<data_root>/raw/<dataset_name>/tokenizer.json`."""
    return Path(cfg.data_root) / "raw" / cfg.dataset_name / "tokenizer.json"


def build_tokenizer(cfg: Any, hf_path: str = "") -> WordTokenizer | HFTokenizer:
    """The HF tokenizer at `hf_path` if given; else the dataset's word tokenizer (built once).

    The word vocabulary comes from every text of the training split (prompts, targets, questions,
    answers, options, captions) and is saved beside the data so every run of a sweep shares it.
    """
    if hf_path:
        return HFTokenizer(hf_path)
    path = tokenizer_path(cfg)
    if path.is_file():
        return WordTokenizer.load(path)
    from core.data.datasets import dataset_texts

    tok = WordTokenizer.from_texts(dataset_texts(cfg, cfg.split))
    try:
        tok.save(path)
    except OSError as exc:
        log.warning("could not save tokenizer to %s (%s); using it in memory", path, exc)
    return tok
