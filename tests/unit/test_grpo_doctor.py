"""tunesmith doctor on GRPO prompts: the rewards scored on the references, a reward they fail is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.doctor import diagnose
from tunesmith.errors import TunesmithError


def grpo(tmp: Path, model: Path, rewards: list[dict[str, object]]) -> object:
    table = write_ads_csv(tmp / "ads.csv", repeat=1)
    train = {"objective": "grpo", "batch_size": 4, "rewards": rewards}
    return load_config(write_config(tmp / "g.yaml", model, table, train=train))


def test_a_reward_the_references_fail_is_a_warning_naming_rows(tmp_path: Path, tiny_llama: Path) -> None:
    rewards = [
        {"name": "chrf"},
        {"name": "length", "max_words": 11},
        {"name": "contains_columns", "columns": ["product"]},
    ]
    report = diagnose(grpo(tmp_path, tiny_llama, rewards), timing=False)  # type: ignore[arg-type]
    warnings = [p.message for p in report.problems if p.severity == "warning"]
    info = [p.message for p in report.problems if p.code == "reward" and p.severity == "info"]
    assert "train.rewards.0 chrf on the references: mean 1.000, std 0.000" in info
    assert not any("train.rewards.0" in w for w in warnings)  # the references are their own best chrF
    # Six of the eight ads run past 11 words; the bike and watch ads never name their product.
    assert any(
        w.startswith("train.rewards.1 length: 6 of 8 reference answers") and "rows 1, 2, 4, 5, 6 ..." in w
        for w in warnings
    )
    assert any(w.startswith("train.rewards.2 contains_columns: 2 of 8") and "rows 5, 8)" in w for w in warnings)
    assert report.examples and not report.blocking


def test_a_reward_naming_a_missing_column_stops_the_doctor(tmp_path: Path, tiny_llama: Path) -> None:
    cfg = grpo(tmp_path, tiny_llama, [{"name": "label", "column": "sentiment"}])
    with pytest.raises(TunesmithError, match="train.rewards.0.column: column 'sentiment' is not in"):
        diagnose(cfg, timing=False)  # type: ignore[arg-type]
