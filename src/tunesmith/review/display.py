"""Console tables for ``tunesmith runs list`` and ``runs show``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from tunesmith.metric_specs import lower_is_better
from tunesmith.track.registry import RunRow

# Metrics shown as columns by `runs list --wide` (the sort metric is added when it is another one).
WIDE_METRICS = ("eval_loss", "loss", "bleu", "rougeL", "accuracy")
# The narrow listing keeps these columns while they fit, dropping from the end of this order first.
NARROW_PRIORITY = ("id", "status", "main", "task", "method", "age")
NARROW_ORDER = ("id", "status", "task", "method", "main", "age")
COLUMN_GAP = 2  # one space of padding on each side of a column, no rules


def main_metric(row: RunRow, sort: str | None = None) -> str | None:
    """The one metric a narrow listing shows: the sort key, else accuracy for classification, else eval loss."""
    from tunesmith.data.forms import find_form

    if sort:
        return sort
    config = row.config  # the run's resolved config, flattened to dotted keys
    form = find_form(row.task, config.get("train.objective", "sft"), lambda key: config.get(f"data.{key}") is not None)
    candidates = ("accuracy", "eval_accuracy") if form is not None and form.label_head else ("eval_loss", "loss")
    return next((name for name in candidates if name in row.metrics), None)


def runs_table(rows: list[RunRow], sort: str | None = None, width: int = 80, wide: bool = False) -> Any:
    """One line per run. Narrow: the columns that fit ``width``; wide: every column, whatever the width."""
    if wide:
        return _wide_table(rows, sort)
    cells = [_narrow_cells(row, sort) for row in rows]
    headers = {"id": "id", "status": "status", "task": "task", "method": "method", "main": "metric", "age": "age"}
    widths = {key: max([len(headers[key]), *(len(c[key]) for c in cells)]) for key in headers}
    shown: list[str] = []
    for key in NARROW_PRIORITY:
        if sum(widths[k] + COLUMN_GAP for k in [*shown, key]) - COLUMN_GAP <= width or not shown:
            shown.append(key)
    return _table([key for key in NARROW_ORDER if key in shown], headers, cells, title=f"{len(rows)} runs")


def _narrow_cells(row: RunRow, sort: str | None) -> dict[str, str]:
    name = main_metric(row, sort)
    value = row.metrics.get(name) if name else None
    metric = "-" if name is None or value is None else f"{name.removeprefix('eval_')} {value:.4g}"
    if name and value is not None:
        metric += " ↓" if lower_is_better(name) else " ↑"
    status = str(row.status or "-") + (" (missing)" if row.missing else "")
    return {
        "id": row.id,
        "status": status,
        "task": row.task or "-",
        "method": row.method or "-",
        "main": metric,
        "age": age(row.created_at),
    }


def _table(keys: list[str], headers: dict[str, str], cells: list[dict[str, str]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for key in keys:
        table.add_column(headers[key], no_wrap=True, justify="right" if key == "main" else "left")
    for row in cells:
        table.add_row(*[row[key] for key in keys])
    return table


def _wide_table(rows: list[RunRow], sort: str | None) -> Any:
    from rich.table import Table

    metrics = [name for name in WIDE_METRICS if any(name in row.metrics for row in rows)]
    if sort and sort not in metrics:
        metrics.insert(0, sort)
    table = Table(title=f"{len(rows)} runs", title_justify="left")
    for column in ("id", "status", "kind", "task", "method", "model", "created"):
        table.add_column(column, no_wrap=True)
    for name in metrics:
        table.add_column(f"{name} {'↓' if lower_is_better(name) else '↑'}", justify="right", no_wrap=True)
    for row in rows:
        status = f"[red]{row.status}[/red]" if row.missing else str(row.status)
        cells = [row.id, status, row.kind or "", row.task or "", row.method or "", row.model or ""]
        table.add_row(*cells, (row.created_at or "")[:19], *[_metric(row, name) for name in metrics])
    return table


def rows_json(rows: list[RunRow]) -> str:
    """Every field of every row, for scripts (``runs list --json``)."""
    from dataclasses import asdict

    return json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False)


def age(created_at: str | None, now: datetime | None = None) -> str:
    """How long ago a run started, in its largest unit: 42s, 5m, 3h, 2d."""
    if not created_at:
        return "-"
    try:
        started = datetime.fromisoformat(created_at)
    except ValueError:
        return "-"
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - started).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_details(row: RunRow) -> Any:
    """Every recorded field of one run."""
    from rich.table import Table

    table = Table(title=row.id, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in ("path", "status", "kind", "parent", "name", "task", "method", "model", "config_hash"):
        table.add_row(field, str(getattr(row, field) or "-"))
    table.add_row("created", str(row.created_at or "-"))
    table.add_row("data", "\n".join(f"{path} {digest[:16]}…" for path, digest in row.data_hashes.items()) or "-")
    table.add_row("metrics", "\n".join(f"{k} {v:.4g}" for k, v in sorted(row.metrics.items())) or "-")
    table.add_row("timings", json.dumps(row.timings) if row.timings else "-")
    return table


def _metric(row: RunRow, name: str) -> str:
    value = row.metrics.get(name)
    return "-" if value is None else f"{value:.4g}"
