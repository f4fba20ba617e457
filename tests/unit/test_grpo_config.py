"""train.objective grpo: every bad reward and batch setting is one line naming its key, before any model loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import OBJECTIVE_CHECKS, OBJECTIVE_TRAIN_KEYS, validate_config
from tunesmith.data.forms import FORMS, form_for, read_data
from tunesmith.errors import TunesmithError
from tunesmith.train.objectives import OBJECTIVES, objective_for

BASE: dict[str, Any] = {
    "data": {"train": "t.csv", "prompt": "Facts: {facts}", "response": "{ad}"},
    "train": {"objective": "grpo", "batch_size": 4, "rewards": [{"name": "chrf"}]},
}


def config(**train: Any) -> Any:
    raw = copy.deepcopy(BASE)
    raw["train"].update(train)
    return validate_config(raw)


def test_registry_covers_every_objective_with_its_config_check_and_a_known_form() -> None:
    assert set(OBJECTIVES) == set(OBJECTIVE_CHECKS)
    for name, objective in OBJECTIVES.items():
        assert objective.check is OBJECTIVE_CHECKS[name]
        assert set(objective.forms) <= set(FORMS)
        for form in objective.forms:
            assert name in FORMS[form].objectives


def test_a_grpo_config_reads_prompts_and_reports_each_reward() -> None:
    cfg = config(rewards=[{"name": "chrf"}, {"name": "chrf", "column": "ad"}, {"name": "length", "max_words": 40}])
    assert form_for(cfg).name == "prompt_only"
    assert objective_for(cfg).eval_metrics(cfg) == ("reward", "reward_chrf", "reward_chrf_2", "reward_length")
    assert cfg.train.grpo.num_generations == 4 and cfg.train.beta is None


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"rewards": [{"name": "chrff"}]}, "train.rewards.0: unknown reward 'chrff'; did you mean 'chrf'?"),
        ({"rewards": []}, "train.rewards is required for train.objective grpo"),
        (
            {"rewards": [{"name": "regex", "must": ["(unclosed"]}]},
            "train.rewards.0: must: '(unclosed' is not a regular",
        ),
        (
            {"rewards": [{"name": "json_schema", "schema": {"type": "objekt"}}]},
            "train.rewards.0: schema is not a valid JSON Schema",
        ),
        ({"rewards": [{"name": "json_schema"}]}, "train.rewards.0: json_schema needs schema"),
        ({"rewards": [{"name": "python", "function": "mine:score"}]}, "train.rewards.0: reward python runs your code"),
        ({"rewards": [{"name": "python", "function": "no colon"}], "allow_code_rewards": True}, "module:function"),
        ({"rewards": [{"name": "length", "column": "ad", "max_words": 3}]}, "train.rewards.0: column does not apply"),
        ({"rewards": [{"name": "length", "min_words": 9, "max_words": 3}]}, "min_words 9 is above max_words 3"),
        ({"rewards": [{"name": "contains_columns"}]}, "contains_columns needs columns"),
        ({"rewards": [{"name": "tool_call"}]}, "tool_call needs column"),
        ({"rewards": [{"name": "chrf", "bogus": 1}]}, "train.rewards.0.bogus"),
        (
            {"batch_size": 6},
            "train.batch_size: batch_size x grad_accum = 6 answers per step is not a multiple of "
            "train.grpo.num_generations (4)",
        ),
        ({"batch_size": 2, "grad_accum": 3, "grpo": {"num_generations": 4}}, "= 6 answers per step"),
        ({"grpo": {"num_generations": 1}}, "train.grpo.num_generations: Input should be greater than or equal to 2"),
        ({"loss_type": "sigmoid"}, "train.loss_type: unknown GRPO loss 'sigmoid'"),
        ({"beta": -0.1}, "train.beta: Input should be greater than or equal to 0"),
    ],
)
def test_bad_grpo_settings_are_one_line_naming_the_key(train: dict[str, Any], message: str) -> None:
    with pytest.raises(TunesmithError) as caught:
        config(**train)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_beta_zero_is_allowed_for_grpo_only() -> None:
    assert config(beta=0.0).train.beta == 0.0
    raw = {
        "data": {"train": "t.csv", "prompt": "{p}", "chosen": "{a}", "rejected": "{b}"},
        "train": {"objective": "dpo", "beta": 0},
    }
    with pytest.raises(TunesmithError, match="train.beta must be above 0 for train.objective dpo"):
        validate_config(raw)


def test_rewards_without_grpo_and_reference_rewards_without_a_reference_fail() -> None:
    raw = {"data": {"train": "t.csv", "prompt": "{p}", "response": "{r}"}, "train": {"rewards": [{"name": "chrf"}]}}
    with pytest.raises(TunesmithError, match="train.rewards apply to train.objective grpo only"):
        validate_config(raw)
    raw = {"data": {"train": "t.csv", "prompt": "{p}"}, "train": {"objective": "grpo", "rewards": [{"name": "bleu"}]}}
    with pytest.raises(TunesmithError, match="train.rewards.0: reward bleu needs a reference"):
        validate_config(raw)


def test_a_reward_naming_a_missing_column_fails_when_the_data_is_read(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("facts,ad\nred lamp,A red lamp.\n")
    raw = copy.deepcopy(BASE)
    raw["data"]["train"] = str(tmp_path / "t.csv")
    raw["train"]["rewards"] = [{"name": "contains_columns", "columns": ["facts", "price"]}]
    with pytest.raises(TunesmithError, match=r"train.rewards.0.columns.1: column 'price' is not in .*t.csv"):
        read_data(validate_config(raw))


def test_config_hash_of_other_objectives_ignores_the_grpo_keys() -> None:
    raw = {"data": {"train": "t.csv", "prompt": "{p}", "response": "{r}"}}
    changed = validate_config({**raw, "train": {"grpo": {"num_generations": 8}}})
    assert changed.config_hash() == validate_config(raw).config_hash()
    assert config().config_hash() != config(grpo={"num_generations": 2}).config_hash()


def test_the_config_hash_leaves_out_the_train_keys_another_objective_owns(monkeypatch: pytest.MonkeyPatch) -> None:
    sft = validate_config({"data": BASE["data"]})
    tuned_beta = sft.model_copy(update={"train": sft.train.model_copy(update={"beta": 0.5})})
    assert tuned_beta.config_hash() != sft.config_hash()  # sft hashes train.beta until an objective owns it
    monkeypatch.setitem(OBJECTIVE_TRAIN_KEYS, "dpo", ("beta",))
    assert tuned_beta.config_hash() == sft.config_hash()
    pairs = {"train": "t.csv", "prompt": "{p}", "chosen": "{c}", "rejected": "{r}"}
    dpo = [validate_config({"data": pairs, "train": {"objective": "dpo", "beta": b}}) for b in (0.1, 0.5)]
    assert dpo[0].config_hash() != dpo[1].config_hash()  # the owner's hash keeps it
