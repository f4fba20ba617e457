"""Console tables for ``tunesmith runs list`` and ``runs show``."""

from __future__ import annotations

import json
from typing import Any

from tunesmith.metric_specs import lower_is_better
from tunesmith.track.registry import RunRow

# Metrics shown as columns by default (the sort metric is added when it is another one).
DEFAULT_METRICS = ("eval_loss", "loss", "bleu", "rouge_l", "accuracy")


def runs_table(rows: list[RunRow], sort: str | None = None) -> Any:
    """One line per run: id, status, kind, task, method, created, and a few key metrics."""
    from rich.table import Table

    metrics = [name for name in DEFAULT_METRICS if any(name in row.metrics for row in rows)][:3]
    if sort and sort not in metrics:
        metrics.insert(0, sort)
    table = Table(title=f"{len(rows)} runs", title_justify="left")
    table.add_column("id", no_wrap=True)
    for column in ("status", "kind", "task", "method", "created"):
        table.add_column(column, overflow="fold")
    for name in metrics:
        table.add_column(f"{name} {'↓' if lower_is_better(name) else '↑'}", justify="right")
    for row in rows:
        status = f"[red]{row.status}[/red]" if row.missing else str(row.status)
        cells = [row.id, status, row.kind or "", row.task or "", row.method or "", (row.created_at or "")[:19]]
        table.add_row(*cells, *[_metric(row, name) for name in metrics])
    return table


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
