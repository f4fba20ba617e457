"""The study's own bookkeeping: one JSON line per finished trial in trials.jsonl, written as trials end.

It is what makes a study survive Ctrl-C (every finished trial is already on disk) and what ``--resume``
reads to know how many trials are left. trials.csv is rendered from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

TrialStatus = Literal["completed", "stopped-early", "failed", "skipped"]


@dataclass
class TrialRow:
    """What happened to one sampled configuration."""

    trial: int
    status: TrialStatus
    params: dict[str, Any]
    history: list[float] = field(default_factory=list)  # the metric at each evaluation
    error: str = ""
    memory_estimate: str = ""
    run_dir: str = ""

    def best(self, mode: str) -> float:
        """The best metric over the trial's evaluations (nan when it never evaluated)."""
        if not self.history:
            return math.nan
        return min(self.history) if mode == "min" else max(self.history)

    @property
    def final(self) -> float:
        """The metric at the trial's last evaluation."""
        return self.history[-1] if self.history else math.nan


class StudyLog:
    """Append-only trials.jsonl of a study directory."""

    def __init__(self, study_dir: Path) -> None:
        self.path = study_dir / "trials.jsonl"
        self.rows: list[TrialRow] = []
        if self.path.is_file():
            self.rows = [TrialRow(**json.loads(line)) for line in self.path.read_text().splitlines() if line]

    def add(self, row: TrialRow) -> None:
        """Record a finished trial (flushed at once, so Ctrl-C never loses it)."""
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(row), default=str) + "\n")

    def next_index(self) -> int:
        """The number the next sampled trial gets (resumed studies continue the numbering)."""
        return max((row.trial for row in self.rows), default=0) + 1

    def best(self, mode: str) -> TrialRow | None:
        """The trial with the best metric, preferring those that trained to the end."""
        scored = [r for r in self.rows if r.history and not math.isnan(r.best(mode))]
        finished = [r for r in scored if r.status == "completed"] or scored
        if not finished:
            return None
        sign = 1 if mode == "min" else -1
        return min(finished, key=lambda r: sign * r.best(mode))


def as_table(rows: list[TrialRow], metric: str, mode: str) -> Any:
    """trials.csv as a pandas DataFrame: one column per searched key, then the outcome."""
    import pandas as pd

    keys = list(dict.fromkeys(k for row in rows for k in row.params))
    records = []
    for row in sorted(rows, key=lambda r: r.trial):
        record: dict[str, Any] = {"trial": row.trial, "status": row.status}
        record |= {key: _as_json_value(row.params.get(key)) for key in keys}
        record |= {f"final_{metric}": row.final, f"best_{metric}": row.best(mode), "iterations": len(row.history)}
        record |= {"memory_estimate": row.memory_estimate, "error": row.error, "run_dir": row.run_dir}
        records.append(record)
    return pd.DataFrame.from_records(records)


def _as_json_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value
