"""Video data: sampling policies, PyAV decoding, frame cache, datasets, tokenizers, batching."""

from core.data.collate import collate
from core.data.datasets import build_dataset, prepare_data
from core.data.tokenizer import build_tokenizer

__all__ = ["build_dataset", "build_tokenizer", "collate", "prepare_data"]
