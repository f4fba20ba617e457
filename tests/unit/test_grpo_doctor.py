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


def sampled(tmp: Path, model: Path, rewards: list[dict[str, object]], method: str = "lora") -> object:
    """A GRPO config whose steps take 2 prompts x 2 answers; 6 training prompts, 2 held out."""
    table = write_ads_csv(tmp / "ads.csv", repeat=1)
    train = {"objective": "grpo", "batch_size": 4, "max_steps": 5, "rewards": rewards}
    train["grpo"] = {"num_generations": 2, "max_new_tokens": 6}
    methods = {"name": method, "r": 4, "alpha": 8}
    return load_config(write_config(tmp / "g.yaml", model, table, train=train, method=methods))


def test_rewards_are_scored_on_base_model_answers_and_a_step_is_timed(tmp_path: Path, tiny_llama: Path) -> None:
    rewards = [{"name": "length", "min_words": 30}, {"name": "contains_columns", "columns": ["product"]}]
    report = diagnose(sampled(tmp_path, tiny_llama, rewards), timing=True)  # type: ignore[arg-type]
    info = {p.message.split(":")[0]: p.message for p in report.problems if p.severity == "info"}
    where = "on 8 base-model answers (4 prompts x 2)"
    length = info[f"train.rewards.0 length {where}"]
    mean, std = (float(part.split()[-1]) for part in length.split(": ", 1)[1].split(", "))
    assert 0 < mean < 1 and std > 0  # answers of a few words, some longer than others
    assert f"train.rewards.1 contains_columns {where}" in info
    groups = next(p for p in report.problems if p.code == "zero-variance")
    assert groups.severity == "info" and " of 4 prompt groups " in groups.message  # length tells them apart
    timing = report.timing
    assert timing is not None and timing.generation_seconds is not None
    assert (timing.prompts_per_step, timing.answers_per_step, timing.answers_sampled) == (2, 4, 8)
    assert 0 < timing.generation_seconds < timing.seconds_per_step  # generation + optimisation
    assert timing.steps_per_epoch == 3 and timing.steps_timed == 3  # 6 training prompts, 2 per step
    assert timing.seconds_for_run == pytest.approx(5 * timing.seconds_per_step, abs=0.1)
    estimate = next(p.message for p in report.problems if p.code == "estimate")
    assert estimate.startswith("estimate (cpu, ") and "= generation " in estimate and "+ optimisation " in estimate
    assert not report.blocking


def test_every_group_scoring_the_same_is_a_warning(tmp_path: Path, tiny_llama: Path) -> None:
    # Six new tokens are never more than 200 words: every answer scores 1, no group has a better answer.
    report = diagnose(sampled(tmp_path, tiny_llama, [{"name": "length", "max_words": 200}]), timing=True)  # type: ignore[arg-type]
    info = [p.message for p in report.problems if p.code == "reward" and "base-model" in p.message]
    assert info == ["train.rewards.0 length on 8 base-model answers (4 prompts x 2): mean 1.000, std 0.000"]
    warning = next(p for p in report.problems if p.code == "zero-variance")
    assert warning.severity == "warning" and warning.message.startswith("4 of 4 prompt groups (100%)")
    assert "GRPO does not move" in warning.message


def test_no_timing_samples_nothing_and_an_engine_refusal_is_named(tmp_path: Path, tiny_llama: Path) -> None:
    rewards = [{"name": "length", "max_words": 200}]
    quick = diagnose(sampled(tmp_path, tiny_llama, rewards), timing=False)  # type: ignore[arg-type]
    assert quick.timing is None and not [p for p in quick.problems if "base-model answers (" in p.message]
    assert any("--no-timing" in p.message for p in quick.problems if p.code == "estimate")
    # DoRA adapters are not the built-in engine's: training samples with transformers, the doctor says so.
    dora = diagnose(sampled(tmp_path, tiny_llama, rewards, method="dora"), timing=True)  # type: ignore[arg-type]
    estimate = next(p.message for p in dora.problems if p.code == "estimate")
    assert dora.timing is None and "the built-in engine does not run this model (adapter default" in estimate


def test_group_variance_is_counted_on_the_weighted_sum() -> None:
    from tunesmith.doctor.findings import Diagnosis
    from tunesmith.doctor.grpo import _check_variance

    report = Diagnosis("c", "causal_lm", "m", "lora")
    _check_variance(report, [1.0, 1.0, 0.5, 1.0, 0.0, 0.0], group=2)
    assert [(p.severity, p.message.split(":")[0]) for p in report.problems] == [
        ("info", "2 of 3 prompt groups (67%) scored the same reward for every base-model answer")
    ]
