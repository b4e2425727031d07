"""The one place where token sequences and next-token labels are built."""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100


def build_text_example(
    tokenizer: Any, prompt: str, target: str, max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[bos] + prompt + target + [eos], right-padded to `max_len`, with next-token labels.

    labels[t] = input_ids[t + 1] when position t + 1 holds a target token or the eos, else -100,
    so the logit at position t learns the token at t + 1. Over-long examples lose the tail of the
    prompt first, then the tail of the target; bos and eos always stay. A tokenizer whose `bos_id`
    is None gets no bos. Returns (input_ids long (T,), labels long (T,), text_mask bool (T,)).
    """
    if max_len < 2:
        raise ValueError(f"max_len={max_len}: too short. Fix: allow at least 2 tokens.")
    head = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    prompt_ids = list(tokenizer.encode(prompt)) if prompt else []
    target_ids = list(tokenizer.encode(target)) if target else []
    room = max_len - len(head) - 1
    target_ids = target_ids[:room]
    prompt_ids = prompt_ids[: room - len(target_ids)]
    ids = head + prompt_ids + target_ids + [tokenizer.eos_id]
    first_supervised = len(head) + len(prompt_ids)
    input_ids = torch.full((max_len,), tokenizer.pad_id, dtype=torch.long)
    labels = torch.full((max_len,), IGNORE_INDEX, dtype=torch.long)
    text_mask = torch.zeros(max_len, dtype=torch.bool)
    input_ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    text_mask[: len(ids)] = True
    for t in range(max(first_supervised - 1, 0), len(ids) - 1):
        labels[t] = ids[t + 1]
    return input_ids, labels, text_mask
