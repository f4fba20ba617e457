"""Loss and eval curves from metrics.jsonl, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import io
from typing import Any

from tunesmith.track.runview import RunView

# (panel title, the metrics.jsonl key it plots)
PANELS = (("training loss", "loss"), ("eval loss", "eval_loss"))


def curves_png(views: list[RunView]) -> bytes | None:
    """One PNG with a panel per curve kind (training loss, eval loss), every run overlaid; None without data."""
    panels = [(title, key) for title, key in PANELS if any(_points(view, key) for view in views)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5 * len(panels), 3.6), layout="constrained")
    for index, (title, key) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for view in views:
            steps, values = _points(view, key) or ([], [])
            if steps:
                axes.plot(steps, values, marker="o" if len(steps) < 12 else None, markersize=3, label=view.id)
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _points(view: RunView, key: str) -> tuple[list[Any], list[float]] | None:
    rows = [row for row in view.history if isinstance(row.get(key), int | float) and "step" in row]
    if not rows:
        return None
    return [row["step"] for row in rows], [float(row[key]) for row in rows]
