"""Curves, tokens/s and ETA from metrics.jsonl rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.track.runview import RunView
from tunesmith.ui.progress import curves, duration, progress


def view(name: str, rows: list[dict[str, object]], train: dict[str, object], status: str = "running") -> RunView:
    return RunView(Path(name), config={"train": train}, record={"status": status}, history=rows)


ROWS: list[dict[str, object]] = [
    {"step": 1, "epoch": 0.1, "time": 100.0, "tokens_seen": 1000, "loss": 3.0},
    {"step": 2, "epoch": 0.2, "time": 102.0, "tokens_seen": 2000, "loss": 2.5},
    {"step": 2, "epoch": 0.2, "time": 103.0, "tokens_seen": 2000, "eval_loss": 2.7},
    {"step": 3, "epoch": 0.3, "time": 104.0, "tokens_seen": 3000, "loss": 2.0},
]


def test_progress_by_steps_and_by_epochs() -> None:
    by_steps = progress(view("a", ROWS, {"max_steps": 5}))
    assert by_steps["step"] == 3 and by_steps["total"] == 5
    assert by_steps["fraction"] == pytest.approx(0.6)
    assert by_steps["tokens_per_second"] == pytest.approx(500.0)  # 2000 tokens in 4 s
    assert by_steps["eta_seconds"] == pytest.approx(4.0)  # 2 steps left at 2 s a step
    by_epochs = progress(view("a", ROWS, {"epochs": 1.0}))
    assert by_epochs["fraction"] == pytest.approx(0.3)
    assert by_epochs["eta_seconds"] == pytest.approx(14.0)  # 0.7 epoch left at 0.1 epoch per 2 s
    assert progress(view("a", ROWS, {"max_steps": 5}, status="completed"))["eta_seconds"] is None
    assert progress(view("a", [], {"max_steps": 5}))["eta_seconds"] is None


def test_curves_share_one_step_axis() -> None:
    one = curves([view("a", ROWS, {})])
    assert one["x"] == [1, 2, 3]
    assert one["series"] == {"loss": [3.0, 2.5, 2.0], "eval_loss": [None, 2.7, None]}
    two = curves([view("a", ROWS, {}), view("b", ROWS[:2], {})])
    assert set(two["series"]) == {"a loss", "a eval_loss", "b loss"}
    assert two["series"]["b loss"] == [3.0, 2.5, None]


def test_duration() -> None:
    assert duration(None) == "-"
    assert duration(42.4) == "42 s"
    assert duration(95) == "1 min 35 s"
