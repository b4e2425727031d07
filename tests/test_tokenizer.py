"""Word tokenizer round trip and the next-token label layout of build_text_example."""

from __future__ import annotations

import json

import pytest

from core.config import DataConfig
from core.data.text import IGNORE_INDEX, build_text_example
from core.data.tokenizer import HFTokenizer, WordTokenizer, build_tokenizer, tokenizer_path


def _tok() -> WordTokenizer:
    return WordTokenizer.from_texts(["What colour is the cube?", "red", "blue cube moves left."])


def test_specials_and_round_trip():
    tok = _tok()
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    text = "what colour is the blue cube?"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("What   COLOUR is the cube ?")) == "what colour is the cube?"
    assert tok.encode("purple cube") == [tok.unk_id, tok.stoi["cube"]]


def test_save_load_identical(tmp_path):
    tok = _tok()
    tok.save(tmp_path / "t.json")
    again = WordTokenizer.load(tmp_path / "t.json")
    assert again.itos == tok.itos and again.vocab_size == tok.vocab_size
    (tmp_path / "bad.json").write_text(json.dumps({"type": "bpe"}))
    with pytest.raises(ValueError, match="delete it to rebuild"):
        WordTokenizer.load(tmp_path / "bad.json")


def test_labels_are_next_target_tokens():
    tok = _tok()
    ids, labels, mask = build_text_example(tok, "what colour is the cube?", "blue cube", 16)
    prompt_len = 1 + len(tok.encode("what colour is the cube?"))
    n = prompt_len + 2 + 1  # two target tokens and eos
    assert mask.tolist() == [True] * n + [False] * (16 - n)
    assert ids[0] == tok.bos_id and ids[n - 1] == tok.eos_id
    assert (ids[n:] == tok.pad_id).all()
    for t in range(16):
        supervised = prompt_len - 1 <= t < n - 1
        expected = int(ids[t + 1]) if supervised else IGNORE_INDEX
        assert labels[t] == expected, t
    assert tok.decode(labels[labels != IGNORE_INDEX].tolist()) == "blue cube"


def test_truncation_drops_prompt_before_target():
    tok = _tok()
    ids, labels, mask = build_text_example(tok, "what colour is the cube?", "blue cube", 6)
    assert mask.all()
    assert ids.tolist() == [
        2,
        tok.stoi["what"],
        tok.stoi["colour"],
        tok.stoi["blue"],
        tok.stoi["cube"],
        3,
    ]
    assert labels.tolist() == [
        IGNORE_INDEX,
        IGNORE_INDEX,
        tok.stoi["blue"],
        tok.stoi["cube"],
        3,
        IGNORE_INDEX,
    ]
    ids, labels, _ = build_text_example(tok, "what colour", "blue cube moves left", 4)
    assert ids.tolist() == [2, tok.stoi["blue"], tok.stoi["cube"], 3]


def test_build_tokenizer_from_training_manifest_is_saved_and_reused(qa_tree):
    root = qa_tree({"a": None, "b": None}, split="train")
    cfg = DataConfig(data_root=str(root), dataset_name="fixture", generate_synthetic=False)
    tok = build_tokenizer(cfg)
    for word in ("what", "colour", "object", "red", "blue", "options", "square", "moves"):
        assert word in tok.stoi, word
    path = tokenizer_path(cfg)
    assert path.is_file()
    path.write_text(
        json.dumps({"type": "word", "itos": ["<pad>", "<unk>", "<bos>", "<eos>", "zz"]})
    )
    assert build_tokenizer(cfg).itos[-1] == "zz"


def test_hf_tokenizer_needs_transformers_or_local_path(tmp_path):
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="transformers"):
            HFTokenizer(str(tmp_path))
    else:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            HFTokenizer(str(tmp_path / "absent"))
