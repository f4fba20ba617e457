"""runs compare: exactly the keys that differ, metrics with deltas, curves, samples; bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.review.compare import compare_runs, renderables


def test_compare_shows_exactly_the_keys_that_differ(runs_copy: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = runs_copy
    comparison = compare_runs([str(first), second.name], tmp_path / "runs")
    assert comparison.config_diff == {"train.learning_rate": [0.001, 0.005]}
    metrics = {row.name: row for row in comparison.metrics}
    assert metrics["eval_loss"].values[0] is not None and metrics["eval_loss"].values[1] is not None
    assert metrics["eval_loss"].deltas[1] == pytest.approx(
        metrics["eval_loss"].values[1] - metrics["eval_loss"].values[0]
    )
    assert comparison.plot is not None and comparison.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Only the first run was evaluated: samples are not set side by side, and the comparison says why.
    assert comparison.samples == [] and any("no samples" in note for note in comparison.notes)
    text = "\n".join(str(item) for item in renderables(comparison))
    assert "curves:" in text


def test_samples_side_by_side_for_the_same_inputs(runs_copy: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = runs_copy
    shutil.copy(first / "samples.jsonl", second / "samples.jsonl")
    comparison = compare_runs([str(first), str(second)], tmp_path / "runs", max_samples=2)
    assert len(comparison.samples) == 2
    assert comparison.samples[0].outputs[0] == comparison.samples[0].outputs[1]


def test_different_tasks_compare_what_is_comparable(runs_copy: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = runs_copy
    config = second / "config.yaml"
    config.write_text(config.read_text().replace("task: causal_lm", "task: classification"))
    record = json.loads((second / "run.json").read_text())
    (second / "run.json").write_text(json.dumps(record | {"task": "classification"}))
    comparison = compare_runs([str(first), str(second)], tmp_path / "runs")
    assert "task" in comparison.config_diff
    assert any("tasks differ" in note for note in comparison.notes)
    metrics = {row.name: row for row in comparison.metrics}
    assert metrics["eval_loss"].deltas[1] is None  # not comparable across tasks
    assert metrics["tokens_per_second"].deltas[1] is not None


def test_a_deleted_run_is_a_clear_error_not_a_crash(runs_copy: tuple[Path, Path], tmp_path: Path) -> None:
    from tunesmith.track.registry import list_runs

    first, second = runs_copy
    list_runs(tmp_path / "runs")  # both recorded
    shutil.rmtree(second)
    with pytest.raises(TunesmithError, match="missing"):
        compare_runs([first.name, second.name], tmp_path / "runs")
    with pytest.raises(TunesmithError, match="at least two"):
        compare_runs([first.name], tmp_path / "runs")


def test_cli_list_and_compare(runs_copy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app
    from tunesmith.console import out_console

    monkeypatch.setattr(out_console, "width", 250)

    first, second = runs_copy
    runs_dir = str(tmp_path / "runs")
    listed = CliRunner().invoke(app, ["runs", "list", "--dir", runs_dir, "--sort", "eval_loss"])
    assert listed.exit_code == 0, listed.output
    assert first.name in listed.stdout and second.name in listed.stdout
    shown = CliRunner().invoke(app, ["runs", "show", first.name, "--dir", runs_dir])
    assert shown.exit_code == 0 and "config_hash" in shown.stdout
    compared = CliRunner().invoke(app, ["runs", "compare", first.name, second.name, "--dir", runs_dir])
    assert compared.exit_code == 0, compared.output
    assert "train.learning_rate" in compared.stdout and "train.epochs" not in compared.stdout
