"""Video data: sampling policies, PyAV decoding, frame cache, datasets, tokenizers, batching."""

from core.data.collate import collate
from core.data.datasets import build_dataset
from core.data.loader import make_loader, set_epoch
from core.data.tokenizer import build_tokenizer

__all__ = ["build_dataset", "build_tokenizer", "collate", "make_loader", "set_epoch"]
