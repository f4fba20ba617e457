"""``tunesmith doctor`` on preference data (train.objective dpo, orpo, simpo, kto).

Pairs whose chosen and rejected answers are the same teach nothing; empty sides are dropped; a chosen side
that is nearly always the longer one lets the model learn length instead of quality (a known shortcut of
preference tuning); a prompt shared by train and eval pairs inflates the held-out accuracy. Both sides of the
first pairs are shown as the model reads them, answer tokens marked.
"""

from __future__ import annotations

import statistics
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.preference import (
    PreferenceRow,
    preference_templates,
    read_preference_tables,
    render_preference_rows,
    split_rows,
)
from tunesmith.data.render import Pair
from tunesmith.doctor.findings import (
    LISTED,
    SHOWN_EXAMPLES,
    Diagnosis,
    Example,
    Lengths,
    Token,
    empty_cells,
    load_tokenizer_for,
    normalise,
)

# The chosen side longer in more than this share of pairs (or shorter) is flagged as a length shortcut.
LENGTH_BIAS_SHARE = 0.8


def diagnose_preferences(report: Diagnosis, cfg: RunConfig, timing: bool = False) -> Diagnosis:
    """Every preference check on ``cfg``'s data; adds to ``report`` (timing is not estimated, whatever ``timing``)."""
    data = cfg.data
    tables = read_preference_tables(data)
    templates = [t for t in preference_templates(data).values() if t]
    report.rows = {"read": len(tables.train) + (len(tables.eval) if tables.eval is not None else 0)}
    report.empty_cells = empty_cells(tables, templates, data.desirable)
    rows, dropped = render_preference_rows(tables.train, data, data.train)
    held = render_preference_rows(tables.eval, data, data.eval)[0] if tables.eval is not None and data.eval else None
    if dropped:
        report.add("warning", "empty", f"{dropped} rows have an empty prompt or answer; training drops them")
    if not rows:
        report.add("blocking", "prepare", "training would stop: no usable rows")
        return report
    train_rows, eval_rows = split_rows(rows, data, held)
    report.rows |= {"usable": len(rows) + len(held or []), "train": len(train_rows), "eval": len(eval_rows)}
    tokenizer, _ = load_tokenizer_for(cfg)
    pairs = [row for row in rows if row.paired]
    _check_same_sides(report, pairs)
    _check_overlap(report, train_rows, eval_rows)
    if pairs:
        _check_length_balance(report, pairs, tokenizer, cfg)
    report.lengths = _lengths(rows, tokenizer, cfg)
    if report.lengths.truncated:
        report.add(
            "warning",
            "lengths",
            f"{report.lengths.truncated} of {report.lengths.rows} answers run past data.max_length="
            f"{data.max_length} with their prompt; TRL cuts them there",
        )
    report.examples = _examples(rows[:SHOWN_EXAMPLES], tokenizer, cfg)
    report.add("info", "estimate", f"timing is not estimated for train.objective {cfg.train.objective}")
    return report


def _check_same_sides(report: Diagnosis, pairs: list[PreferenceRow]) -> None:
    same = [i + 1 for i, row in enumerate(pairs) if normalise(row.chosen) == normalise(row.rejected)]
    if same:
        listed = ", ".join(map(str, same[:LISTED])) + (" ..." if len(same) > LISTED else "")
        report.add(
            "warning", "same_pair", f"{len(same)} pairs have the same chosen and rejected answer (pairs {listed})"
        )


def _check_overlap(report: Diagnosis, train: list[PreferenceRow], evaluation: list[PreferenceRow]) -> None:
    seen = {normalise(row.prompt) for row in train}
    shared = [row for row in evaluation if normalise(row.prompt) in seen]
    report.leaked = [{"eval_prompt": [i]} for i, _ in enumerate(shared)]
    if shared:
        report.add(
            "warning",
            "leakage",
            f"{len(shared)} of {len(evaluation)} eval pairs share their prompt with a training pair; "
            "held-out preference accuracy will look better than it is",
        )


def _check_length_balance(report: Diagnosis, pairs: list[PreferenceRow], tokenizer: Any, cfg: RunConfig) -> None:
    chosen = _answer_lengths([row.chosen for row in pairs], tokenizer)
    rejected = _answer_lengths([row.rejected for row in pairs], tokenizer)
    longer = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
    shorter = sum(c < r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
    means = f"mean {statistics.mean(chosen):.0f} vs {statistics.mean(rejected):.0f} tokens"
    if max(longer, shorter) > LENGTH_BIAS_SHARE:
        side, share = ("longer", longer) if longer > shorter else ("shorter", shorter)
        report.add(
            "warning",
            "length_bias",
            f"the chosen answer is {side} than the rejected one in {100 * share:.0f}% of pairs ({means}): "
            "the model can learn length instead of quality",
        )
    else:
        report.add("info", "length_balance", f"chosen vs rejected answer lengths: {means}")


def _answer_lengths(texts: list[str], tokenizer: Any) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _lengths(rows: list[PreferenceRow], tokenizer: Any, cfg: RunConfig) -> Lengths:
    from tunesmith.data.tokenize import tokenize_pairs

    sides = [Pair(r.prompt, r.chosen) for r in rows] + [Pair(r.prompt, r.rejected) for r in rows if r.paired]
    _, stats = tokenize_pairs(sides, tokenizer, cfg.data)
    ordered = sorted(stats.lengths) or [0]
    return Lengths(
        rows=len(sides),
        min=ordered[0],
        median=statistics.median(ordered),
        p95=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        max=ordered[-1],
        max_length=cfg.data.max_length,
        truncated=stats.truncated,
        dropped_truncated=stats.dropped_truncated,
    )


def _examples(rows: list[PreferenceRow], tokenizer: Any, cfg: RunConfig) -> list[Example]:
    # Both sides of each pair, tokenised as training's prompt + answer, the answer's tokens marked.
    from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_pairs

    examples = []
    for number, row in enumerate(rows, start=1):
        sides = [("chosen", row.chosen), ("rejected", row.rejected)] if row.paired else [("response", row.chosen)]
        for side, answer in sides:
            encoded, stats = tokenize_pairs([Pair(row.prompt, answer)], tokenizer, cfg.data)
            if not encoded:
                continue
            ids, labels = encoded[0]["input_ids"], encoded[0]["labels"]
            tokens = [Token(i, tokenizer.decode([i]), lab != IGNORE_INDEX) for i, lab in zip(ids, labels, strict=True)]
            label = side if row.desirable is None else f"{side} (desirable: {str(row.desirable).lower()})"
            examples.append(Example(number, tokens, stats.lengths[0], label))
    return examples
