"""``tunesmith runs compare``: the config keys that differ, metrics with deltas, overlaid curves, samples side by side.

Runs of different tasks are compared on what they share (config, throughput); task metrics and samples
are shown but not set against each other, and the comparison says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.metric_specs import lower_is_better
from tunesmith.review.plots import curves_png
from tunesmith.track.registry import find_run
from tunesmith.track.runview import RunView, flatten, load_run

# Metrics that mean the same whatever the task, so they compare across tasks.
TASK_FREE_METRICS = frozenset({"tokens_per_second"})
UNSET = "(unset)"


@dataclass
class MetricRow:
    """One metric across runs; ``deltas[i]`` is run i minus the first run (None when not comparable)."""

    name: str
    values: list[float | None]
    deltas: list[float | None]


@dataclass
class SampleRow:
    """One input every compared run answered, with each run's answer."""

    input: str
    reference: str | None
    base_output: str | None
    outputs: list[str]


@dataclass
class Comparison:
    """What ``runs compare`` reports."""

    runs: list[RunView]
    config_diff: dict[str, list[Any]]
    metrics: list[MetricRow]
    plot: Path | None
    samples: list[SampleRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare_runs(refs: list[str], runs_dir: Path, plot: Path | None = None, max_samples: int = 3) -> Comparison:
    """Compare two or more runs, given as run directories or run ids under ``runs_dir``."""
    if len(refs) < 2:
        raise TunesmithError("runs compare: give at least two runs (ids or run directories)")
    views = [load_run(find_run(runs_dir, ref)) for ref in refs]
    for view in views:
        if not view.config:
            raise TunesmithError(f"{view.run_dir}: not a tunesmith run directory (no readable config.yaml)")
    notes: list[str] = []
    same_task = len({view.task for view in views}) == 1
    if not same_task:
        tasks = ", ".join(f"{view.id}: {view.task}" for view in views)
        notes.append(f"tasks differ ({tasks}): task metrics and samples are shown but not compared")
    comparison = Comparison(views, config_diff(views), compare_metrics(views, same_task), None, notes=notes)
    comparison.plot = _write_plot(views, plot or _default_plot_path(views), notes)
    if same_task:
        comparison.samples = sample_rows(views, max_samples, notes)
    return comparison


def config_diff(views: list[RunView]) -> dict[str, list[Any]]:
    """Flattened config keys whose values are not the same in every run (a key one run lacks counts)."""
    flats = [flatten(view.config) for view in views]
    keys = sorted({key for flat in flats for key in flat})
    diff = {}
    for key in keys:
        values = [flat.get(key, UNSET) for flat in flats]
        if any(value != values[0] for value in values[1:]):
            diff[key] = values
    return diff


def compare_metrics(views: list[RunView], same_task: bool) -> list[MetricRow]:
    """Every metric any run has; deltas against the first run where the metric means the same thing."""
    per_run = [view.key_metrics() for view in views]
    names = sorted({name for metrics in per_run for name in metrics})
    rows = []
    for name in names:
        values = [metrics.get(name) for metrics in per_run]
        comparable = same_task or name in TASK_FREE_METRICS
        first = values[0]
        deltas = [value - first if comparable and value is not None and first is not None else None for value in values]
        rows.append(MetricRow(name, values, deltas))
    return rows


def sample_rows(views: list[RunView], limit: int, notes: list[str]) -> list[SampleRow]:
    """Answers to the same inputs side by side (from samples.jsonl, written by tunesmith eval)."""
    without = [view.id for view in views if not view.samples]
    if without:
        notes.append(f"no samples for {', '.join(without)} (run `tunesmith eval RUN_DIR` to get them)")
        return []
    answers = [{row.get("input"): row for row in view.samples} for view in views]
    common = [row for row in views[0].samples if all(row.get("input") in other for other in answers[1:])]
    if not common:
        notes.append("samples: the runs were evaluated on different inputs; none to set side by side")
    rows = []
    for sample in common[:limit]:
        references = sample.get("references") or []
        rows.append(
            SampleRow(
                input=str(sample.get("input")),
                reference=str(references[0]) if references else None,
                base_output=sample.get("base_output"),
                outputs=[str(found[sample.get("input")].get("tuned_output", "")) for found in answers],
            )
        )
    return rows


def renderables(comparison: Comparison) -> list[Any]:
    """Rich tables and lines for the console."""
    from rich.table import Table

    ids = [view.id for view in comparison.runs]
    out: list[Any] = []
    config = Table(title="config keys that differ", title_justify="left")
    config.add_column("key")
    for run_id in ids:
        config.add_column(run_id, overflow="fold")
    for key, values in comparison.config_diff.items():
        config.add_row(key, *[_short(value) for value in values])
    out.append(config if comparison.config_diff else "config: identical")
    out.append(_metrics_table(comparison, ids))
    if comparison.plot is not None:
        out.append(f"curves: {comparison.plot}")
    if comparison.samples:
        samples = Table(title="samples (same inputs)", title_justify="left", show_lines=True, expand=True)
        for column in ("input", "base", *ids):
            samples.add_column(column, ratio=1, overflow="fold")
        for row in comparison.samples:
            samples.add_row(row.input, row.base_output or "-", *row.outputs)
        out.append(samples)
    out.extend(f"note: {note}" for note in comparison.notes)
    return out


def _metrics_table(comparison: Comparison, ids: list[str]) -> Any:
    from rich.table import Table

    table = Table(title="metrics", title_justify="left")
    table.add_column("metric")
    for run_id in ids:
        table.add_column(run_id, justify="right", overflow="fold")
    for run_id in ids[1:]:
        table.add_column(f"Δ {run_id}", justify="right", overflow="fold")
    for row in comparison.metrics:
        arrow = "↓" if lower_is_better(row.name) else "↑"
        values = ["-" if v is None else f"{v:.4g}" for v in row.values]
        deltas = ["-" if d is None else f"{d:+.4g}" for d in row.deltas[1:]]
        table.add_row(f"{row.name} {arrow}", *values, *deltas)
    return table


def _write_plot(views: list[RunView], path: Path, notes: list[str]) -> Path | None:
    png = curves_png(views)
    if png is None:
        notes.append("no curves: no run has a metrics.jsonl with losses")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _default_plot_path(views: list[RunView]) -> Path:
    more = f"-and-{len(views) - 2}-more" if len(views) > 2 else ""
    return views[0].run_dir.parent / f"compare-{views[0].id}-vs-{views[1].id}{more}.png"


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
