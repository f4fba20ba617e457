"""``tunesmith doctor``: pre-flight checks on a config and its data, before any training.

It shows a few examples exactly as the model will see them (the data pipeline's own rendering and
tokenisation, loss tokens marked), measures the token lengths against ``data.max_length``, looks for exact
and near duplicates, train/eval leakage, empty cells and label imbalance, and times a few real optimizer
steps to estimate memory and time per epoch. Problems are ranked; a blocking one means training cannot work.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config import DataConfig, RunConfig, load_config
from tunesmith.data.forms import DataForm, form_for
from tunesmith.data.prepare import PreparedData, Tables, prepare_data, read_tables, task_templates
from tunesmith.data.render import Pair, render_pairs
from tunesmith.data.single_turn import SINGLE_TURN
from tunesmith.data.tokenize import IGNORE_INDEX, TokenizeStats
from tunesmith.doctor.cost import estimate_cost, timing_summary
from tunesmith.doctor.findings import (
    LISTED,
    NEAR_DUPLICATE_JACCARD,
    NEAR_DUPLICATE_MAX_ROWS,
    SHOWN_EXAMPLES,
    ConversationStats,
    Diagnosis,
    Example,
    Lengths,
    Token,
    _blank,
    empty_cells,
    load_tokenizer_for,
    normalise,
)
from tunesmith.errors import TunesmithError

__all__ = [
    "Diagnosis",
    "diagnose",
    "diagnose_file",
    "empty_cells",
    "estimate_cost",
    "normalise",
    "renderables",
    "statistics_lines",
    "timing_summary",
]

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd


@dataclass
class _Rows:
    """Usable rows of one table, rendered, with their 1-based row numbers in the file."""

    numbers: list[int]
    pairs: list[Pair]
    dropped_empty: int


def diagnose_file(path: Path, overrides: list[str] | None = None, timing: bool = True) -> Diagnosis:
    """Load a config file (with ``--set`` overrides) and diagnose it."""
    return diagnose(load_config(path, overrides), timing=timing, source=str(path))


def diagnose(cfg: RunConfig, timing: bool = True, source: str = "config") -> Diagnosis:
    """Run every check on ``cfg`` and its data; with ``timing``, also time a few optimizer steps."""
    from tunesmith.console import quiet_libraries

    quiet_libraries()
    report = Diagnosis(source, cfg.task, cfg.model.name, cfg.method.name)
    _check_trackers(report, cfg)
    own_checks = _form_checks(form_for(cfg))
    if own_checks is not None:  # pairs of answers, conversations: their own checks
        return own_checks(report, cfg, timing)
    tables = read_tables(cfg.data, cfg.task)
    templates = list(task_templates(cfg.data, cfg.task).values())
    report.rows = {"read": len(tables.train) + (len(tables.eval) if tables.eval is not None else 0)}
    report.empty_cells = empty_cells(tables, templates, label_column(cfg.data))
    _check_labels(report, cfg, tables)
    train_rows = _render_rows(tables.train, templates)
    eval_rows = _render_rows(tables.eval, templates) if tables.eval is not None else None
    _check_duplicates(report, train_rows)
    tokenizer, resolved = load_tokenizer_for(cfg)
    prepared = _prepare(report, cfg, tables, tokenizer)
    _check_rows(report, cfg.data, train_rows, eval_rows, prepared)
    _check_leakage(report, train_rows, eval_rows, prepared)
    all_pairs = train_rows.pairs + (eval_rows.pairs if eval_rows else [])
    _check_lengths(report, cfg, all_pairs, tokenizer)
    report.examples = render_examples(train_rows, tokenizer, cfg)
    _drop_restated(report)
    if timing and prepared is not None and not report.blocking:
        report.timing = estimate_cost(cfg, resolved, tokenizer, prepared)
        report.add("info", "estimate", timing_summary(report.timing))
    return report


def _form_checks(form: DataForm) -> Callable[[Diagnosis, RunConfig, bool], Diagnosis] | None:
    """The doctor of a data form that is not a single turn; None for single-turn forms (checked here)."""
    from tunesmith.doctor.conversation import diagnose_conversations
    from tunesmith.doctor.grpo import diagnose_prompts
    from tunesmith.doctor.preference import diagnose_preferences

    checks: dict[str, Callable[[Diagnosis, RunConfig, bool], Diagnosis]] = {
        "preference": diagnose_preferences,
        "conversation": diagnose_conversations,
        "prompt_only": diagnose_prompts,
    }
    return checks.get(form.name)


def render_examples(rows: _Rows, tokenizer: Any, cfg: RunConfig, count: int = SHOWN_EXAMPLES) -> list[Example]:
    """The first ``count`` rows tokenised exactly as training does, each token flagged with its loss."""
    examples = []
    for number, pair in list(zip(rows.numbers, rows.pairs, strict=True))[:count]:
        tokenized, stats = encode(cfg, [pair], tokenizer)
        if not tokenized:
            continue  # dropped: truncation left no response token
        ids, labels = tokenized[0]["input_ids"], tokenized[0]["labels"]
        spec = SINGLE_TURN[cfg.task]
        if spec.token_loss:
            flags = [label != IGNORE_INDEX for label in labels]
            tokens = [Token(i, tokenizer.decode([i]), flag) for i, flag in zip(ids, flags, strict=True)]
        else:
            # Encoder input carries no loss; a seq2seq target is what the decoder learns to write.
            tokens = [Token(i, tokenizer.decode([i]), False) for i in ids]
            if spec.encoder_decoder:
                tokens += [Token(i, tokenizer.decode([i]), True) for i in labels]
        label = pair.response if spec.labelled else None
        examples.append(Example(number, tokens, stats.lengths[0], label))
    return examples


def encode(cfg: RunConfig, pairs: list[Pair], tokenizer: Any) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Tokenise pairs with the task's own encoder (the one training uses; no label set: labels map to -1)."""
    return SINGLE_TURN[cfg.task].encoder(None)(pairs, tokenizer, cfg.data)


def shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    """Word ``size``-grams of the normalised text."""
    words = normalise(text).split()
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def label_column(cfg: DataConfig) -> str | None:
    """The label column of a classification config, when this config version has one."""
    for key in ("label", "label_column"):
        value = getattr(cfg, key, None)
        if isinstance(value, str) and value:
            return value
    return None


def renderables(report: Diagnosis, styled: bool = True) -> list[Any]:
    """Rich renderables for the console; without ``styled``, loss tokens are bracketed ⟦like this⟧."""
    from rich.text import Text

    out: list[Any] = [
        Text(f"doctor: {report.config} (task {report.task}, model {report.model}, method {report.method})", "bold")
    ]
    legend = "bold = tokens that carry loss, dim = context only" if styled else "⟦…⟧ = tokens that carry loss"
    for example in report.examples:
        length = len(example.tokens)
        cut = f", truncated from {example.untruncated_length}" if example.untruncated_length > length else ""
        loss_tokens = sum(token.loss for token in example.tokens)
        out.append(Text(f"\nexample: row {example.row}, {length} tokens{cut}, {loss_tokens} with loss ({legend})"))
        out.append(_example_text(example, styled))
        if example.label is not None:
            out.append(Text(f"label: {example.label}"))
        if example.note is not None:
            out.append(Text(example.note))
    out.append(Text(""))
    out.extend(Text(line) for line in statistics_lines(report))
    out.append(Text("\nproblems:" if report.problems else "\nno problems found", "bold"))
    colours = {"blocking": "bold red", "warning": "yellow", "info": "dim"}
    for problem in report.ranked():
        out.append(Text(f"  {problem.severity:8} {problem.message}", colours[problem.severity]))
    return out


def _example_text(example: Example, styled: bool) -> Any:
    from rich.text import Text

    text = Text()
    for span, loss in example.spans:
        if styled:
            text.append(span, "bold green" if loss else "dim")
        else:
            text.append(f"⟦{span}⟧" if loss else span)
    return text


def statistics_lines(report: Diagnosis) -> list[str]:
    """The data statistics as short lines of text (rows, lengths, duplicates, empty cells, labels)."""
    lines = ["rows: " + ", ".join(f"{key} {value}" for key, value in report.rows.items())]
    if report.lengths is not None:
        n = report.lengths
        lines.append(
            f"tokens per row: min {n.min}, median {n.median:g}, p95 {n.p95}, max {n.max}; "
            f"{n.truncated} of {n.rows} ({100 * n.truncated_share:.1f}%) over max_length={n.max_length}"
        )
        if n.template_tokens:
            lines.append(
                f"template text: {n.template_tokens} tokens per row ({100 * n.template_share:.0f}% of all tokens)"
            )
    lines.append(
        f"duplicates: {len(report.exact_duplicates)} exact groups, {len(report.near_duplicates)} near groups; "
        f"train/eval overlap: {len(report.leaked)}"
    )
    if report.empty_cells:
        lines.append("empty cells: " + ", ".join(f"{col} {count}" for col, count in report.empty_cells.items()))
    if report.labels is not None:
        lines.append("labels: " + ", ".join(f"{label} {count}" for label, count in report.labels.items()))
    if report.conversations is not None:
        lines.extend(conversation_lines(report.conversations, report.lengths))
    return lines


def conversation_lines(stats: ConversationStats, lengths: Lengths | None = None) -> list[str]:
    """Turns, tokens per turn, loss share and tool calls of conversation data, as short lines."""
    turns, calls = stats.turns, stats.tool_calls
    renderer = "the chat template" if stats.renderer == "native" else "the tunesmith fallback"
    per_role = ", ".join(f"{role} median {n['median']:g} max {n['max']:g}" for role, n in stats.tokens_per_turn.items())
    if per_role:
        tokens = [f"tokens per turn: {per_role}", f"tokens with loss: {100 * stats.loss_share:.1f}% of all tokens"]
    else:  # every conversation was dropped: no turn was tokenised, nothing carries loss
        tokens = ["tokens per turn: none, " + _nothing_fits(lengths)]
    return [
        f"turns per conversation: min {turns['min']:g}, median {turns['median']:g}, max {turns['max']:g}",
        *tokens,
        f"tool calls: {calls['total']:g} in all, median {calls['median']:g} max {calls['max']:g} per conversation, "
        f"{calls['with_calls']:g} of {stats.conversations} conversations call a tool"
        + (f"; tools rendered by {renderer}" if calls["total"] else ""),
    ]


def _nothing_fits(lengths: Lengths | None) -> str:
    if lengths is None:
        return "no conversation fits data.max_length; raise it"
    return (
        f"no conversation fits data.max_length={lengths.max_length}; raise it ({lengths.min} keeps the shortest whole)"
    )


def _render_rows(frame: pd.DataFrame, templates: list[str]) -> _Rows:
    # Row by row through the pipeline's own render_pairs, so each pair keeps its row number in the file.
    rows = _Rows([], [], 0)
    for index in range(len(frame)):
        pairs, dropped = render_pairs(frame.iloc[index : index + 1], *templates)
        rows.dropped_empty += dropped
        for pair in pairs:
            rows.numbers.append(index + 1)
            rows.pairs.append(pair)
    return rows


def _check_trackers(report: Diagnosis, cfg: RunConfig) -> None:
    # Training runs the same check before it starts.
    from tunesmith.track.trackers import check_trackers, enabled

    try:
        check_trackers(cfg.track)
    except TunesmithError as err:
        report.add("blocking", "trackers", f"training would stop: {err}")
        return
    where = {
        "tensorboard": "tensorboard (<run dir>/tensorboard)",
        "mlflow": f"mlflow (experiment {cfg.track.mlflow_experiment or cfg.name}, "
        f"store {cfg.track.mlflow_tracking_uri or 'MLFLOW_TRACKING_URI or the MLflow default'})",
    }
    if names := enabled(cfg.track):
        report.add("info", "trackers", "also logged to " + ", ".join(where[name] for name in names))


def _prepare(report: Diagnosis, cfg: RunConfig, tables: Tables, tokenizer: Any) -> PreparedData | None:
    # The training pipeline itself: what it refuses, training would refuse.
    try:
        return prepare_data(cfg.data, tables, tokenizer, cfg.task)
    except TunesmithError as err:
        report.add("blocking", "prepare", f"training would stop: {err}")
        return None


def _check_rows(
    report: Diagnosis, cfg: DataConfig, train: _Rows, evaluation: _Rows | None, prepared: PreparedData | None
) -> None:
    report.rows["usable"] = len(train.pairs) + (len(evaluation.pairs) if evaluation else 0)
    dropped = train.dropped_empty + (evaluation.dropped_empty if evaluation else 0)
    report.rows["dropped_empty"] = dropped
    if dropped:
        report.add("warning", "empty", f"{dropped} rows dropped: every column of their prompt or response is empty")
    if not train.pairs:
        report.add("blocking", "no-rows", f"data.train: no rows left (all {dropped} have an empty prompt or response)")
    if prepared is None:
        return
    report.rows["train"], report.rows["eval"] = prepared.stats.train_rows, prepared.stats.eval_rows
    wants_eval = cfg.eval is not None or cfg.eval_fraction > 0
    if wants_eval and prepared.stats.eval_rows == 0:
        report.add("blocking", "eval-empty", "the eval split is empty: too few rows for data.eval_fraction")
    elif not wants_eval:
        report.add("info", "no-eval", "no eval split (data.eval_fraction 0): no eval loss, tunesmith eval needs --data")


def _check_duplicates(report: Diagnosis, rows: _Rows) -> None:
    exact: dict[Pair, list[int]] = defaultdict(list)
    for number, pair in zip(rows.numbers, rows.pairs, strict=True):
        exact[pair].append(number)
    report.exact_duplicates = [numbers for numbers in exact.values() if len(numbers) > 1]
    report.near_duplicates = _near_duplicates(rows, exact)
    if report.exact_duplicates:
        extra = sum(len(group) - 1 for group in report.exact_duplicates)
        report.add(
            "warning",
            "duplicates",
            f"{extra} exact duplicate rows in data.train (rows {_groups(report.exact_duplicates)}): "
            "they weigh those examples double and can leak into eval",
        )
    if report.near_duplicates:
        report.add(
            "info",
            "near-duplicates",
            f"{len(report.near_duplicates)} groups of near-duplicate rows (same text up to case, punctuation and "
            f"spacing, or ≥{NEAR_DUPLICATE_JACCARD:.0%} shared word trigrams): rows {_groups(report.near_duplicates)}",
        )


def _near_duplicates(rows: _Rows, exact: dict[Pair, list[int]]) -> list[list[int]]:
    # One representative per exact group, so exact duplicates are not counted again as near ones.
    firsts = {numbers[0]: pair for pair, numbers in exact.items()}
    by_text: dict[str, list[int]] = defaultdict(list)
    for number, pair in firsts.items():
        by_text[normalise(_text(pair))].append(number)
    groups = [numbers for numbers in by_text.values() if len(numbers) > 1]
    grouped = {number for group in groups for number in group}
    candidates = [(n, shingles(_text(p))) for n, p in firsts.items() if n not in grouped][:NEAR_DUPLICATE_MAX_ROWS]
    candidates.sort(key=lambda item: len(item[1]))
    for i, (number, grams) in enumerate(candidates):
        for other, other_grams in candidates[i + 1 :]:
            if len(grams) < NEAR_DUPLICATE_JACCARD * len(other_grams):
                break  # sorted by size: every later set is too large to reach the threshold
            if len(grams & other_grams) / len(grams | other_grams) >= NEAR_DUPLICATE_JACCARD:
                groups.append(sorted([number, other]))
    return groups


def _check_leakage(report: Diagnosis, train: _Rows, evaluation: _Rows | None, prepared: PreparedData | None) -> None:
    """Eval rows whose normalised text also appears in the training split."""
    train_keys: dict[str, list[int]] = defaultdict(list)
    for number, pair in zip(train.numbers, train.pairs, strict=True):
        train_keys[normalise(_text(pair))].append(number)
    if evaluation is not None:
        for number, pair in zip(evaluation.numbers, evaluation.pairs, strict=True):
            found = train_keys.get(normalise(_text(pair)))
            if found:
                report.leaked.append({"eval_rows": [number], "train_rows": found})
    elif prepared is not None:
        # Split off data.train: a text leaks when the table holds more copies of it than the eval split took.
        held_out = Counter(normalise(_text(pair)) for pair in prepared.eval_pairs)
        for key, count in held_out.items():
            if len(train_keys.get(key, [])) > count:
                report.leaked.append({"eval_rows": [], "train_rows": train_keys[key]})
    if report.leaked:
        rows = _groups([item["eval_rows"] + item["train_rows"] for item in report.leaked])
        report.add(
            "warning",
            "leakage",
            f"{len(report.leaked)} eval rows also appear in training data (rows {rows}): eval scores will be "
            "optimistic; deduplicate the table",
        )


def _check_lengths(report: Diagnosis, run_cfg: RunConfig, pairs: list[Pair], tokenizer: Any) -> None:
    if not pairs:
        return
    cfg = run_cfg.data
    _, stats = encode(run_cfg, pairs, tokenizer)
    ordered = sorted(stats.lengths)
    report.lengths = Lengths(
        rows=len(ordered),
        min=ordered[0],
        median=statistics.median(ordered),
        p95=ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        max=ordered[-1],
        max_length=cfg.max_length,
        truncated=stats.truncated,
        dropped_truncated=stats.dropped_truncated,
        total=sum(ordered),
    )
    n = report.lengths
    if SINGLE_TURN[run_cfg.task].token_loss:
        _check_template(report, n, cfg, tokenizer)
    if n.truncated == n.rows:
        report.add("blocking", "all-truncated", f"every row is longer than data.max_length={cfg.max_length} tokens")
    elif n.truncated:
        report.add(
            "warning",
            "truncated",
            f"{n.truncated} of {n.rows} rows ({100 * n.truncated_share:.1f}%) are longer than "
            f"data.max_length={cfg.max_length} (longest {n.max}) and lose their end; "
            f"max_length {n.max} keeps every row whole",
        )
    if 0 < n.dropped_truncated < n.rows:
        report.add(
            "warning", "dropped-truncated", f"{n.dropped_truncated} rows lose every response token and are dropped"
        )


def _check_template(report: Diagnosis, lengths: Lengths, cfg: DataConfig, tokenizer: Any) -> None:
    from tunesmith.data.tokenize import template_overhead

    overhead = template_overhead(tokenizer, cfg)
    lengths.template_tokens, lengths.default_system_tokens = overhead.fixed, overhead.default_system
    if overhead.default_system:
        share = overhead.default_system * lengths.rows / lengths.total if lengths.total else 0.0
        report.add(
            "info",
            "default-system-prompt",
            f"the chat template adds its own system prompt to every row: {overhead.default_system} tokens, "
            f"{100 * share:.0f}% of all tokens, in training and at inference alike; data.system sets yours "
            "(shorter is cheaper) and data.system: '' leaves it out",
        )


def _drop_restated(report: Diagnosis) -> None:
    # The pipeline's refusal restates a cause a named check already reported; keep the named one.
    named = [p for p in report.problems if p.severity == "blocking" and p.code != "prepare"]
    if named:
        report.problems = [p for p in report.problems if p.code != "prepare"]


def _check_labels(report: Diagnosis, cfg: RunConfig, tables: Tables) -> None:
    if not SINGLE_TURN[cfg.task].labelled:
        return
    column = label_column(cfg.data)
    if column is None or column not in tables.train.columns:
        report.add("info", "labels", "label balance: this config names no label column, so it was not checked")
        return
    labels = tables.train[column][~_blank(tables.train[column])].astype(str).str.strip()
    report.labels = {str(k): int(v) for k, v in labels.value_counts().items()}
    if len(report.labels) < 2:
        report.add("blocking", "labels", f"column {column!r} has {len(report.labels)} distinct label(s)")
        return
    rarest, commonest = min(report.labels.values()), max(report.labels.values())
    if rarest * 10 < commonest:
        report.add("warning", "imbalance", f"labels are imbalanced ({rarest} vs {commonest} rows); watch macro F1")


def _text(pair: Pair) -> str:
    return f"{pair.prompt}\n{pair.response}"


def _groups(groups: list[list[int]]) -> str:
    shown = "; ".join(", ".join(str(n) for n in group) for group in groups[:LISTED])
    return shown + (f"; and {len(groups) - LISTED} more" if len(groups) > LISTED else "")
