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
from tunesmith.data.prepare import PreparedData, Tables, prepare_data, read_tables, task_templates
from tunesmith.data.render import Pair, render_pairs
from tunesmith.data.tokenize import (
    IGNORE_INDEX,
    TokenizeStats,
    tokenize_classification,
    tokenize_pairs,
    tokenize_seq2seq,
)
from tunesmith.doctor.findings import (
    LISTED,
    NEAR_DUPLICATE_JACCARD,
    NEAR_DUPLICATE_MAX_ROWS,
    SHOWN_EXAMPLES,
    TIMED_STEPS,
    Diagnosis,
    Example,
    Lengths,
    Timing,
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
    "normalise",
    "renderables",
    "statistics_lines",
    "timing_summary",
]

if TYPE_CHECKING:
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
    if cfg.train.objective != "sft":  # pairs of answers: their own checks
        from tunesmith.doctor.preference import diagnose_preferences

        return diagnose_preferences(report, cfg)
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


def render_examples(rows: _Rows, tokenizer: Any, cfg: RunConfig, count: int = SHOWN_EXAMPLES) -> list[Example]:
    """The first ``count`` rows tokenised exactly as training does, each token flagged with its loss."""
    examples = []
    for number, pair in list(zip(rows.numbers, rows.pairs, strict=True))[:count]:
        tokenized, stats = encode(cfg, [pair], tokenizer)
        if not tokenized:
            continue  # dropped: truncation left no response token
        ids, labels = tokenized[0]["input_ids"], tokenized[0]["labels"]
        if cfg.task == "causal_lm":
            flags = [label != IGNORE_INDEX for label in labels]
            tokens = [Token(i, tokenizer.decode([i]), flag) for i, flag in zip(ids, flags, strict=True)]
        else:
            # Encoder input carries no loss; a seq2seq target is what the decoder learns to write.
            tokens = [Token(i, tokenizer.decode([i]), False) for i in ids]
            if cfg.task == "seq2seq":
                tokens += [Token(i, tokenizer.decode([i]), True) for i in labels]
        label = pair.response if cfg.task == "classification" else None
        examples.append(Example(number, tokens, stats.lengths[0], label))
    return examples


def encode(cfg: RunConfig, pairs: list[Pair], tokenizer: Any) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Tokenise pairs with the task's own encoder (the one training uses)."""
    if cfg.task == "seq2seq":
        return tokenize_seq2seq(pairs, tokenizer, cfg.data)
    if cfg.task == "classification":
        # Label ids do not change lengths or rendering; unknown labels simply map to -1.
        return tokenize_classification(pairs, tokenizer, cfg.data, label_ids={})
    return tokenize_pairs(pairs, tokenizer, cfg.data)


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


def estimate_cost(cfg: RunConfig, resolved: Any, tokenizer: Any, prepared: PreparedData) -> Timing:
    """Load the model, apply the method and time a few optimizer steps on real batches at the run's precision.

    The first step runs on the longest rows (so the memory peak is the run's worst batch) and is not timed;
    the next ones, on the first batches, are. Evaluation and checkpointing are not included.
    """
    import time

    import torch
    from transformers import set_seed

    from tunesmith.data.collate import make_collator, packed_response_loss
    from tunesmith.methods import apply_method, get_method
    from tunesmith.models import head_kwargs
    from tunesmith.models.precision import resolve_precision
    from tunesmith.models.run_model import load_weights
    from tunesmith.train.runner import prepare_for_training

    precision, _ = resolve_precision(cfg.train.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_seed(cfg.train.seed)
    method = get_method(cfg.method.name)
    model = load_weights(resolved, cfg.model, cfg.task, **head_kwargs(prepared.labels))
    model = apply_method(model, cfg.method, cfg.task).to(device)
    model.train()
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if method.adapter:
            model.enable_input_require_grads()
    packing = prepare_for_training(cfg, model, method, precision)
    collate = make_collator(tokenizer, packing, cfg.task, model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    batches = _timing_batches(prepared.train, cfg.train.batch_size)
    durations = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for rows in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(rows).items()}
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            if packing:
                labels = batch.pop("labels")
                loss = packed_response_loss(model(**batch, use_cache=False), labels)
            else:
                loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    per_step = statistics.median(durations[1:]) if len(durations) > 1 else durations[0]
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    run_steps = (
        cfg.train.max_steps * cfg.train.grad_accum if cfg.train.max_steps else steps_per_epoch * cfg.train.epochs
    )
    return Timing(
        device=device,
        precision=precision,
        batch_size=cfg.train.batch_size,
        packing=packing,
        steps_timed=len(durations) - 1,
        seconds_per_step=round(per_step, 4),
        steps_per_epoch=steps_per_epoch,
        seconds_per_epoch=round(per_step * steps_per_epoch, 1),
        seconds_for_run=round(per_step * run_steps, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        peak_gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
    )


def timing_summary(timing: Timing) -> str:
    """One line: the estimate, labelled as one."""
    gpu = f", peak GPU memory {timing.peak_gpu_mb:,.0f} MB" if timing.peak_gpu_mb is not None else ""
    return (
        f"estimate from {timing.steps_timed} timed steps ({timing.device}, {timing.precision}, "
        f"batch {timing.batch_size}{', packed' if timing.packing else ''}): {timing.seconds_per_step:.2f} s/step, "
        f"~{_duration(timing.seconds_per_epoch)} per epoch ({timing.steps_per_epoch} steps), "
        f"~{_duration(timing.seconds_for_run)} for the run; peak memory (process RSS) {timing.peak_rss_mb:,.0f} MB"
        f"{gpu}; evaluation and checkpoints not included, other load on this machine skews it"
    )


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
    return lines


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
    if run_cfg.task == "causal_lm":
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
    if cfg.task != "classification":
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


def _timing_batches(dataset: Any, batch_size: int) -> list[list[dict[str, Any]]]:
    lengths = list(dataset["length"])
    longest = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)[:batch_size]
    timed = [[(i * batch_size + j) % len(lengths) for j in range(batch_size)] for i in range(TIMED_STEPS)]
    return [
        [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in dataset.select(indices)]
        for indices in [longest, *timed]
    ]


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _text(pair: Pair) -> str:
    return f"{pair.prompt}\n{pair.response}"


def _groups(groups: list[list[int]]) -> str:
    shown = "; ".join(", ".join(str(n) for n in group) for group in groups[:LISTED])
    return shown + (f"; and {len(groups) - LISTED} more" if len(groups) > LISTED else "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
