"""tunesmith train / doctor with train.objective grpo: each bad reward or batch setting is one line, exit 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fixtures import write_config

BAD = {
    "unknown reward": ([{"name": "chrff"}], {}, r"train.rewards.0: unknown reward 'chrff'; did you mean 'chrf'"),
    "missing column": (
        [{"name": "contains_columns", "columns": ["price"]}],
        {},
        r"train.rewards.0.columns.0: column 'price' is not in .*ads.csv",
    ),
    "bad schema": ([{"name": "json_schema", "schema": {"type": 5}}], {}, r"train.rewards.0: schema is not a valid"),
    "code reward": ([{"name": "python", "function": "mine:score"}], {}, r"train.rewards.0: reward python runs your"),
    "batch": ([{"name": "chrf"}], {"batch_size": 6}, r"train.batch_size: batch_size x grad_accum = 6 answers"),
}


def grpo_config(tmp: Path, model: Path, table: Path, rewards: list[Any], train: dict[str, Any]) -> Path:
    section = {"objective": "grpo", "batch_size": 4, "max_steps": 1, "rewards": rewards, **train}
    return write_config(tmp / "g.yaml", model, table, train=section)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_grpo_input_is_one_line(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path, case: str):  # type: ignore[no-untyped-def]
    rewards, train, pattern = BAD[case]
    config = grpo_config(tmp_path, tiny_llama, ads_csv, rewards, train)
    commands = [("train", str(config), "--output-dir", "runs")]
    commands += [("doctor", str(config))] if case == "missing column" else []
    for command in commands:
        done = tunesmith(*command)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists(), "nothing half-written"
