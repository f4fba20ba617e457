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


def test_the_step_shows_from_the_first_step_and_rates_count_the_resumed_process_only() -> None:
    # Interrupted at step 6 (logged every 5 steps), resumed a day later: the rows before the pause must not
    # stretch the rate, and the live step counts before the first logged row of the resumed process.
    before = [{"step": 5, "time": 1000.0, "tokens_seen": 500, "loss": 2.0}]
    after = [{"step": 10, "time": 90_040.0, "tokens_seen": 1000, "loss": 1.5}]
    session = {"started": 90_000.0, "step": 6, "tokens_seen": 600,
               "first_step_time": 90_020.0, "first_step": 7, "first_tokens": 700}  # fmt: skip
    live = {"pid": 42, "phase": "train", "step": 11, "max_steps": 20, "tokens_seen": 1100, "time": 90_060.0,
            "session": session}  # fmt: skip
    run = view("a", before + after, {"max_steps": 20})
    run.live = live
    now = progress(run, pid=42)
    assert now["step"] == 11 and now["total"] == 20
    assert now["tokens_per_second"] == pytest.approx(10.0)  # 400 tokens in the 40 s since its first step
    assert now["eta_seconds"] == pytest.approx(90.0)  # 9 steps left at 10 s a step (4 steps in 40 s)
    stale = progress(run, pid=43)  # live.json of another process (before the resume): ignored
    assert stale["step"] == 10


def test_an_evaluation_is_shown_instead_of_an_eta() -> None:
    from tunesmith.ui.progress import activity

    run = view("a", ROWS, {"max_steps": 20})
    run.live = {"pid": 1, "phase": "eval", "step": 6, "max_steps": 20, "time": 1.0, "session": {},
                "eval": {"at_step": 6, "batches": 3, "total": 40, "final": False}}  # fmt: skip
    now = progress(run, pid=1)
    assert now["eta_seconds"] is None and now["step"] == 6
    assert activity(now) == "evaluation at step 6: batch 3/40"
    assert activity(now, stopping=True) == "evaluation at step 6: batch 3/40, then a checkpoint is saved"
    run.live |= {"phase": "generate", "eval": {"at_step": 6, "batches": 40, "total": 40, "samples": 32}}
    assert activity(progress(run, pid=1)) == "evaluation at step 6: answering 32 eval samples for eval.metrics"
    run.live |= {"phase": "eval", "eval": {"batches": 2, "total": 9, "final": True}}
    assert activity(progress(run, pid=1)) == "closing evaluation: batch 2/9"
    run.live |= {"phase": "train"}
    assert activity(progress(run, pid=1)) is None
    assert activity(progress(run, pid=1), stopping=True) == "finishing step 7, then a checkpoint is saved"


@pytest.mark.slow
def test_a_real_run_leaves_live_json_the_ui_reads(tmp_path: Path, tiny_llama: Path) -> None:
    # The trainer's own record: every step (logged every 5 here), each evaluation, the closing phase.
    import json
    import os

    from fixtures import train_into, write_ads_csv, write_config
    from tunesmith.track.runview import load_run

    config = write_config(
        tmp_path / "c.yaml", tiny_llama, write_ads_csv(tmp_path / "ads.csv"),
        train={"max_steps": 3, "logging_steps": 5, "eval_steps": 2, "save_steps": 2},
    )  # fmt: skip
    run_dir = train_into(tmp_path, config)
    live = json.loads((run_dir / "live.json").read_text())
    assert live["pid"] == os.getpid() and live["phase"] == "closing" and live["step"] == 3
    assert live["max_steps"] == 3 and live["session"]["first_step"] == 1
    shown = progress(load_run(run_dir), active=False)
    assert shown["step"] == 3 and shown["total"] == 3 and shown["fraction"] == 1.0
    assert not [row for row in load_run(run_dir).history if "loss" in row and row["step"] < 3]  # none logged before
