"""Benchmark statistics from QA rows: rows per type, answer balance, majority rate and chance."""

from __future__ import annotations

from collections import Counter

from core.data.synthetic.vocab import QUESTION_TYPES


def split_stats(rows: list[dict]) -> dict:
    """Per-type counts, answer balance, majority-answer rate and uniform-guess chance.

    A row's chance is 1 / len(options) (options = the type's answer set, or the two named colours
    for which_first); a type's chance is the mean over its rows and the overall chance the mean over
    all rows of the split.
    """
    by_type: dict[str, list[dict]] = {t: [] for t in QUESTION_TYPES}
    for row in rows:
        by_type[row["question_type"]].append(row)
    out: dict = {
        "rows": len(rows),
        "rows_per_type": {},
        "answer_balance": {},
        "majority_rate": {},
        "chance_per_type": {},
    }
    for qtype, group in by_type.items():
        if not group:
            continue
        counts = Counter(r["answer"] for r in group)
        out["rows_per_type"][qtype] = len(group)
        out["answer_balance"][qtype] = dict(sorted(counts.items()))
        out["majority_rate"][qtype] = round(max(counts.values()) / len(group), 4)
        out["chance_per_type"][qtype] = round(
            sum(1.0 / len(r["options"]) for r in group) / len(group), 4
        )
    first = [r for r in by_type["which_first"]]
    if first:
        named_first = sum(r["answer"] == r["options"][0] for r in first)
        out["which_first_answer_position"] = {
            "first_named": named_first,
            "second_named": len(first) - named_first,
        }
    out["chance_overall"] = (
        round(sum(1.0 / len(r["options"]) for r in rows) / len(rows), 4) if rows else 0.0
    )
    return out


def benchmark_stats(
    rows_by_split: dict[str, list[dict]], args: dict, evidence: dict[str, dict] | None = None
) -> dict:
    """The stats.json document: generation args, clips per split and per-split statistics.
    `chance_overall` is the validation split's (the train split's when there is no validation).
    `evidence` ({split: core.data.synthetic.evidence.evidence_fractions}) is stored per split."""
    splits = {split: split_stats(rows) for split, rows in rows_by_split.items()}
    for split, fractions in (evidence or {}).items():
        if split in splits:
            splits[split]["evidence"] = fractions
    headline = splits.get("validation") if rows_by_split.get("validation") else splits.get("train")
    return {
        "args": args,
        "clips": {split: len(rows) for split, rows in rows_by_split.items()},
        "chance_overall": headline["chance_overall"] if headline else 0.0,
        "splits": splits,
    }


def stats_markdown(stats: dict, split: str = "validation") -> str:
    """A Markdown table of one split's statistics."""
    s = stats["splits"][split]
    lines = [
        f"Split `{split}`: {s['rows']} rows, overall chance {s['chance_overall']:.3f}.",
        "",
        "| question type | rows | chance | majority rate | answer balance |",
        "|---|---:|---:|---:|---|",
    ]
    for qtype, n in s["rows_per_type"].items():
        balance = " ".join(f"{a}:{c}" for a, c in s["answer_balance"][qtype].items())
        lines.append(
            f"| {qtype} | {n} | {s['chance_per_type'][qtype]:.3f} | "
            f"{s['majority_rate'][qtype]:.3f} | {balance} |"
        )
    if "evidence" in s:
        crops = list(next(iter(s["evidence"].values())))
        lines += [
            "",
            "Fraction of questions whose answer the kept sampled frames settle "
            "(core.data.synthetic.evidence):",
            "",
            "| question type | " + " | ".join(crops) + " |",
            "|---" + "|---:" * len(crops) + "|",
        ]
        for qtype, row in s["evidence"].items():
            lines.append(f"| {qtype} | " + " | ".join(f"{row[c]:.2f}" for c in crops) + " |")
    if "which_first_answer_position" in s:
        pos = s["which_first_answer_position"]
        lines += [
            "",
            f"which_first answer position: first named {pos['first_named']}, "
            f"second named {pos['second_named']}.",
        ]
    return "\n".join(lines) + "\n"
