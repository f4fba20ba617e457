"""Live numbers of a run from its metrics.jsonl: curves, step, tokens/s and ETA."""

from __future__ import annotations

import time
from typing import Any

from tunesmith.track.runview import RunView

CURVE_KEYS = ("loss", "eval_loss")


def curves(views: list[RunView], keys: tuple[str, ...] = CURVE_KEYS) -> dict[str, Any]:
    """Series on one shared step axis (None where a series has no point), as uPlot wants them."""
    columns: dict[str, dict[int, float]] = {}
    for view in views:
        prefix = f"{view.id} " if len(views) > 1 else ""
        for row in view.history:
            step = row.get("step")
            for key in keys:
                value = row.get(key)
                if isinstance(step, int) and isinstance(value, int | float):
                    columns.setdefault(prefix + key, {})[step] = float(value)
    steps = sorted({step for points in columns.values() for step in points})
    series = {name: [points.get(step) for step in steps] for name, points in columns.items()}
    return {"x": steps, "series": series, "points": sum(len(points) for points in columns.values())}


def progress(view: RunView, now: float | None = None) -> dict[str, Any]:
    """Step, share done, tokens/s and ETA (seconds), from the logged steps (None where unknown)."""
    logged = [row for row in view.history if isinstance(row.get("step"), int) and "loss" in row]
    train = view.config.get("train") or {}
    done = {"step": logged[-1]["step"] if logged else 0, "total": train.get("max_steps")}
    finished = view.record.get("train") or {}
    speed = finished.get("tokens_per_second")
    if speed is None and len(logged) >= 2:
        first, last = logged[0], logged[-1]
        seconds = float(last.get("time", 0)) - float(first.get("time", 0))
        tokens = float(last.get("tokens_seen", 0)) - float(first.get("tokens_seen", 0))
        speed = tokens / seconds if seconds > 0 else None
    done["tokens_per_second"] = speed
    done["fraction"] = _fraction(logged[-1], train) if logged else 0.0
    done["eta_seconds"] = _eta(logged, train, now or time.time()) if view.record.get("status") == "running" else None
    return done


def _fraction(row: dict[str, Any], train: dict[str, Any]) -> float | None:
    # Share of the run done at a logged row: by steps when max_steps is set, else by epochs.
    if train.get("max_steps"):
        return min(1.0, row["step"] / float(train["max_steps"]))
    epoch, epochs = row.get("epoch"), train.get("epochs")
    if isinstance(epoch, int | float) and isinstance(epochs, int | float) and epochs > 0:
        return min(1.0, epoch / epochs)
    return None


def _eta(logged: list[dict[str, Any]], train: dict[str, Any], now: float) -> float | None:
    # The pace between the first and last logged rows (so model loading does not count), projected forward.
    if len(logged) < 2:
        return None
    start, end = _fraction(logged[0], train), _fraction(logged[-1], train)
    seconds = float(logged[-1].get("time", now)) - float(logged[0].get("time", now))
    if start is None or end is None or end <= start or seconds <= 0:
        return None
    return (1.0 - end) * seconds / (end - start)


def duration(seconds: float | None) -> str:
    """``95`` -> ``1 min 35 s``; None -> ``-``."""
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
