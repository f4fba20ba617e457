"""The SQLite run registry: concurrent writers, corrupt files, deleted run directories, filters and sorting."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunesmith.track.registry import get_row, list_runs, record_run, registry_path

WRITER = """
import sys, time
from pathlib import Path
from tunesmith.track.registry import record_run
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
for _ in range(10):
    record_run(Path(sys.argv[1]))
"""


def fake_run(runs: Path, name: str, loss: float, parent: str | None = None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\ntask: causal_lm\ntrain:\n  learning_rate: {loss / 1000}\n")
    record = {
        "name": name,
        "task": "causal_lm",
        "method": "lora",
        "status": "completed",
        "config_hash": f"hash-{name}",
        "started_at": "2026-01-01T00:00:00+00:00",
        "data": {"sha256": {"/data/ads.csv": "ab" * 32}},
        "metrics": {"eval_loss": loss},
        "timings": {"train": 1.5},
        **({"parent": parent} if parent else {}),
    }
    (run / "run.json").write_text(json.dumps(record))
    return run


def test_four_processes_writing_at_once_leave_four_complete_rows(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path / "runs", f"trial-{i}", 1.0 + i, parent="study-1") for i in range(4)]
    start = time.time() + 2.0  # every writer waits for the same moment, so they really collide
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(start)]) for run in runs]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    with sqlite3.connect(registry_path(tmp_path / "runs")) as conn:
        rows = conn.execute("SELECT id, kind, parent, status, config_hash, metrics FROM runs ORDER BY id").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert [r[0] for r in rows] == [f"trial-{i}" for i in range(4)]
    for i, (_, kind, parent, status, config_hash, metrics) in enumerate(rows):
        assert (kind, parent, status, config_hash) == ("trial", "study-1", "completed", f"hash-trial-{i}")
        assert json.loads(metrics) == {"eval_loss": 1.0 + i}


def test_corrupt_registry_warns_and_the_next_command_recovers(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    runs = tmp_path / "runs"
    run = fake_run(runs, "a", 1.0)
    registry_path(runs).write_bytes(b"this is not a database" * 100)
    record_run(run)  # must not raise
    assert "corrupt" in capsys.readouterr().err
    listing = list_runs(runs)
    assert listing.warning is not None and "corrupt" in listing.warning
    assert [row.id for row in listing.rows] == ["a"]

    registry_path(runs).unlink()
    listing = list_runs(runs)  # rebuilt from the run directories
    assert listing.warning is None and [row.id for row in listing.rows] == ["a"]


def test_locked_registry_warns_instead_of_failing(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tunesmith.track.registry as registry

    runs = tmp_path / "runs"
    run = fake_run(runs, "a", 1.0)
    list_runs(runs)
    monkeypatch.setattr(registry, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(registry_path(runs), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        record_run(run)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in capsys.readouterr().err


def test_runs_not_yet_recorded_are_added_and_deleted_ones_are_missing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first, second = fake_run(runs, "a", 2.0), fake_run(runs, "b", 1.0)
    record_run(first)
    assert [row.id for row in list_runs(runs).rows] == ["a", "b"]  # b was found by scanning
    import shutil

    shutil.rmtree(second)
    rows = {row.id: row for row in list_runs(runs).rows}
    assert rows["b"].missing and rows["b"].status == "missing" and not rows["a"].missing
    assert get_row(runs, "b").missing


def test_sort_and_filter(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name, loss in (("a", 2.0), ("b", 1.0), ("c", 3.0)):
        fake_run(runs, name, loss)
    assert [r.id for r in list_runs(runs, sort="eval_loss").rows] == ["b", "a", "c"]
    assert [r.id for r in list_runs(runs, filters=["eval_loss<2.5"]).rows] == ["a", "b"]
    assert [r.id for r in list_runs(runs, filters=["train.learning_rate=0.003"]).rows] == ["c"]
    assert [r.id for r in list_runs(runs, filters=["status=completed", "name!=a"]).rows] == ["b", "c"]
    with pytest.raises(Exception, match="expected key=value"):
        list_runs(runs, filters=["nonsense"])


def test_a_trial_is_recorded_in_the_registry_of_its_study(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    study = runs / "search-20260101-000000"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"started_at": "2026-01-01T00:00:00+00:00", "config_hash": "h"}))
    record_run(fake_run(study / "trials", "trial-0", 1.0, parent=study.name))
    with sqlite3.connect(registry_path(runs)) as conn:
        assert conn.execute("SELECT id, kind, parent FROM runs").fetchall() == [("trial-0", "trial", study.name)]
    kinds = {row.id: row.kind for row in list_runs(runs).rows}
    assert kinds == {"trial-0": "trial", study.name: "study"}


def test_registry_location_can_be_overridden(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TUNESMITH_REGISTRY", str(tmp_path / "elsewhere" / "my.db"))
    record_run(fake_run(tmp_path / "runs", "a", 1.0))
    assert (tmp_path / "elsewhere" / "my.db").is_file() and not (tmp_path / "runs" / "index.db").exists()


def _list(runs: Path, columns: int, *options: str) -> list[str]:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    result = CliRunner().invoke(app, ["runs", "list", "--dir", str(runs), *options], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_runs_list_fits_80_columns_and_shows_the_rest_on_request(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tunesmith.console import out_console

    runs = tmp_path / "runs"
    fake_run(runs, "marketing-copy-20261201-101501", 3.1)
    fake_run(runs, "marketing-copy-20261201-101502", 3.25)
    monkeypatch.setattr(out_console, "width", 80)
    lines = _list(runs, 80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    header = next(line for line in lines if line.lstrip().startswith("id"))
    assert header.split() == ["id", "status", "task", "method", "metric", "age"]
    assert any("loss 3.1 ↓" in line for line in lines)

    # A long id and long names: the columns that fit, by priority (id, status, metric first).
    long = fake_run(runs, "customer-service-intents-20261201-101500", 0.5)
    record = json.loads((long / "run.json").read_text())
    record |= {"task": "classification", "method": "prefix_tuning", "status": "interrupted"}
    record["metrics"] = {"eval_loss": 0.52, "eval_accuracy": 0.875}
    (long / "run.json").write_text(json.dumps(record))
    lines = _list(runs, 80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert next(line for line in lines if line.lstrip().startswith("id")).split()[:3] == ["id", "status", "metric"]
    assert any(long.name in line and "accuracy 0.875 ↑" in line for line in lines)

    wide = "\n".join(_list(runs, 80, "--wide"))
    assert long.name in wide and "prefix_tuning" in wide and "model" in wide and "created" in wide
    listed = json.loads("\n".join(_list(runs, 80, "--json")))
    assert len(listed) == 3 and {row["task"] for row in listed} == {"causal_lm", "classification"}
