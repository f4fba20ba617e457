"""Progress lines of an eval phase: a line at the start, as often as asked, and at the end."""

from __future__ import annotations

import pytest

from tunesmith.evaluate.progress import Progress, clock


def test_a_phase_reports_its_start_each_step_when_asked_and_its_end(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("eval tuned generation", every=0.0)
    progress.begin(3, "answers")
    progress.advance(2)
    progress.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "eval tuned generation: 0/3 answers"
    assert lines[1].startswith("eval tuned generation: 2/3 answers, 0 s, about ") and lines[1].endswith(" left")
    assert lines[2] == "eval tuned generation: 3/3 answers, 0 s"


def test_between_start_and_end_lines_come_no_more_often_than_asked(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("eval base loss", every=3600.0)
    progress.begin(4, "batches")
    for _ in range(4):
        progress.advance()
    assert capsys.readouterr().err.splitlines() == ["eval base loss: 0/4 batches", "eval base loss: 4/4 batches, 0 s"]


def test_clock_reads_seconds_minutes_and_hours() -> None:
    assert [clock(s) for s in (42.4, 185, 3720)] == ["42 s", "3 min 05 s", "1 h 02 min"]
