"""Held-out evaluation: answer accuracy (overall, per question type, chance) and caption loss.

Accuracy is teacher-forced exact match over the answer tokens (and EOS): every supervised position's
argmax must equal its next-token label. This equals greedy decoding of the answer, is static-shaped,
and a sample's result never depends on its batch neighbours. Undecodable clips count as wrong and are
reported in `bad_samples`.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable

import torch
from torch import nn

from core.data.text import IGNORE_INDEX
from core.training.batches import to_device
from core.training.precision import autocast


def chance_level(rows: Iterable[tuple[str, str, list[str] | None]]) -> dict[str, float]:
    """Per-type chance: 1/len(options) when a row lists its options, else 1/#answers of its type.

    rows: (question_type, answer, options). Returns {type: chance, "overall": mean over rows}.
    """
    rows = list(rows)
    answers: dict[str, set[str]] = defaultdict(set)
    for qtype, answer, _ in rows:
        answers[qtype].add(answer)
    per_row = []
    per_type: dict[str, list[float]] = defaultdict(list)
    for qtype, _, options in rows:
        c = 1.0 / len(options) if options else 1.0 / max(1, len(answers[qtype]))
        per_row.append(c)
        per_type[qtype].append(c)
    out = {q: sum(v) / len(v) for q, v in per_type.items()}
    out["overall"] = sum(per_row) / len(per_row) if per_row else float("nan")
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[dict], device: torch.device, precision: str = "fp32"
) -> dict:
    """Run the whole loader; returns accuracy, per-type accuracy/counts, caption loss, throughput
    and the batch-mean of the model's scalar statistics (`stats`, e.g. `reducer/*`)."""
    model.eval()
    correct: Counter = Counter()
    count: Counter = Counter()
    bad = 0
    loss_sum, token_count, clips = 0.0, 0, 0
    stat_sums: Counter = Counter()
    stat_batches = 0
    start = time.perf_counter()
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = model(batch)
        stat_sums.update({k: v for k, v in out.stats.items() if isinstance(v, int | float)})
        stat_batches += 1
        logits = out.logits.float()
        labels = batch["labels"]
        supervised = labels != IGNORE_INDEX
        pred = logits.argmax(-1)
        ok = ((pred == labels) | ~supervised).all(1) & supervised.any(1)
        if supervised.any():
            ce = torch.nn.functional.cross_entropy(
                logits[supervised], labels[supervised], reduction="sum"
            )
            loss_sum += float(ce)
            token_count += int(supervised.sum())
        valid = batch.get("sample_valid", torch.ones(len(labels), dtype=torch.bool))
        bad += int((~valid.bool()).sum())
        for qtype, hit in zip(
            batch.get("question_type", ["all"] * len(ok)), ok.tolist(), strict=True
        ):
            count[qtype] += 1
            correct[qtype] += int(hit)
        clips += len(ok)
    elapsed = time.perf_counter() - start
    total = sum(count.values())
    loss = loss_sum / token_count if token_count else float("nan")
    return {
        "accuracy": sum(correct.values()) / total if total else float("nan"),
        "accuracy_by_type": {q: correct[q] / count[q] for q in sorted(count)},
        "count_by_type": {q: count[q] for q in sorted(count)},
        "loss": loss,
        "perplexity": math.exp(loss) if token_count and loss < 50 else float("nan"),
        "eval_samples": total,
        "bad_samples": bad,
        "eval_s": elapsed,
        "eval_clips_per_s": clips / elapsed if elapsed > 0 else float("nan"),
        "stats": {k: v / stat_batches for k, v in stat_sums.items()},
    }
