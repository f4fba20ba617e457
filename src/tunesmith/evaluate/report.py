"""What ``tunesmith eval`` leaves behind: eval.json, samples.jsonl and a base / tuned / delta table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.evaluate.references import EvalExample
from tunesmith.metric_specs import lower_is_better
from tunesmith.rundir import atomic_write, json_safe, now_iso

if TYPE_CHECKING:
    from rich.table import Table


@dataclass
class EvalReport:
    """Scores of the tuned model (and the base model) on the same inputs, with their answers."""

    run_dir: Path
    data: dict[str, Any]
    decoding: dict[str, Any]
    metric_names: list[str]
    examples: list[EvalExample]
    tuned: dict[str, float]
    tuned_outputs: list[str]
    base: dict[str, float] | None = None
    base_outputs: list[str] | None = None
    extra: dict[str, Any] | None = None  # task-specific results (classification: per-class report, confusion)
    sample_fields: list[dict[str, Any]] | None = None  # per example, added to its samples.jsonl line

    def delta(self) -> dict[str, float] | None:
        """Tuned minus base, per metric both have."""
        if self.base is None:
            return None
        return {key: value - self.base[key] for key, value in self.tuned.items() if key in self.base}


def eval_json(report: EvalReport) -> str:
    """The content of eval.json: metrics for both models, decoding settings, row counts, data source."""
    document = {
        "created_at": now_iso(),
        "data": report.data,
        "rows": len(report.examples),
        "decoding": report.decoding,
        "metric_names": report.metric_names,
        "metrics": {"base": report.base, "tuned": report.tuned},
        "delta": report.delta(),
    } | (report.extra or {})
    # A score with nothing to count (tool-call JSON validity when no call was written) is NaN: null in JSON.
    return json.dumps(json_safe(document), indent=2, ensure_ascii=False) + "\n"


def samples_jsonl(report: EvalReport) -> str:
    """The content of samples.jsonl: one line per input with its references and both answers."""
    lines = []
    for i, example in enumerate(report.examples):
        row = {
            "input": example.prompt,
            "references": list(example.references),
            "base_output": report.base_outputs[i] if report.base_outputs is not None else None,
            "tuned_output": report.tuned_outputs[i],
        } | (report.sample_fields[i] if report.sample_fields is not None else {})
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(lines)


def write_eval_outputs(report: EvalReport) -> None:
    """Write samples.jsonl, then eval.json (last, so an eval.json always has its samples beside it)."""
    atomic_write(report.run_dir / "samples.jsonl", samples_jsonl(report))
    atomic_write(report.run_dir / "eval.json", eval_json(report))


def metrics_table(report: EvalReport) -> Table:
    """One table: metric, base, tuned, delta (base columns only when the base was scored)."""
    from rich.table import Table

    table = Table(title=f"eval: {report.run_dir.name} ({len(report.examples)} inputs)", title_justify="left")
    table.add_column("metric")
    if report.base is not None:
        table.add_column("base", justify="right")
    table.add_column("tuned", justify="right")
    delta = report.delta()
    if delta is not None:
        table.add_column("delta", justify="right")
    for key, value in report.tuned.items():
        arrow = "↓" if lower_is_better(key) else "↑"
        base_cell = [score_text(report.base.get(key))] if report.base is not None else []
        delta_cell = [_signed(delta.get(key))] if delta is not None else []
        table.add_row(f"{key} {arrow}", *base_cell, score_text(value), *delta_cell)
    return table


def score_text(value: float | None) -> str:
    """A score as shown in tables and summary lines: 4 decimals, "-" when it is undefined (None or NaN)."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.4f}"
