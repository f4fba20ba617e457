"""Each built-in reward on answers it should score high and answers it should score low."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import REWARD_OPTIONS, validate_config
from tunesmith.errors import TunesmithError
from tunesmith.rewards import REWARDS, Reward, build_rewards, trl_reward_functions


def reward(entry: dict[str, Any], allow_code: bool = False) -> Reward:
    raw = {
        "data": {"train": "t.csv", "prompt": "{facts}", "response": "{ad}"},
        "train": {"objective": "grpo", "rewards": [entry], "allow_code_rewards": allow_code},
    }
    return build_rewards(validate_config(raw))[0]


def score(entry: dict[str, Any], completions: list[str], **columns: list[Any]) -> list[float]:
    n = len(completions)
    cols = {"reference": columns.pop("reference", [""] * n), "row": list(range(1, n + 1))}
    cols |= {f"column.{k}": v for k, v in columns.items()}
    return reward(entry)(["prompt"] * n, completions, cols)


def test_every_configured_reward_name_has_an_implementation() -> None:
    assert set(REWARDS) == set(REWARD_OPTIONS)


@pytest.mark.parametrize("name", ["chrf", "bleu", "rouge"])
def test_text_overlap_rewards_rank_the_reference_above_a_paraphrase_above_noise(name: str) -> None:
    ref = "Fresh roasted coffee beans from Kenya, ready in two days."
    got = score({"name": name}, [ref, "Coffee beans from Kenya, fresh roasted.", "zzz qqq"], reference=[ref] * 3)
    assert got[0] == pytest.approx(1.0) and got[0] > got[1] > got[2] and got[2] < 0.1


def test_text_rewards_read_a_named_column_instead_of_the_response() -> None:
    got = score({"name": "chrf", "column": "other"}, ["blue", "blue"], reference=["red", "red"], other=["blue", "x"])
    assert got[0] == pytest.approx(1.0) and got[1] < 0.5


def test_exact_match_ignores_case_and_spacing_only() -> None:
    got = score({"name": "exact_match"}, ["  Paris ", "paris.", "PARIS"], reference=["Paris"] * 3)
    assert got == [1.0, 0.0, 1.0]


def test_contains_columns_scores_the_share_of_values_mentioned() -> None:
    got = score(
        {"name": "contains_columns", "columns": ["product", "price"]},
        ["Our Lamp costs $20 today", "A lamp for you", "Nothing here", "Free!"],
        product=["lamp", "lamp", "lamp", ""],
        price=["$20", "$20", "$20", ""],
    )
    assert got == [1.0, 0.5, 0.0, 1.0]  # an empty cell asks for nothing


def test_regex_counts_must_and_must_not_patterns() -> None:
    entry = {"name": "regex", "must": [r"\d+ ?%"], "must_not": [r"(?i)sorry"]}
    assert score(entry, ["Save 20% now", "Sorry, save 20 %", "Sorry", "Hello"]) == [1.0, 0.5, 0.0, 0.5]


def test_json_schema_gives_full_credit_only_to_matching_json() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    answers = ['{"name": "Ada"}', '```json\n{"name": "Ada"}\n```', '{"name": 3}', "name: Ada"]
    assert score({"name": "json_schema", "schema": schema}, answers) == [1.0, 1.0, 0.5, 0.0]


def test_tool_call_compares_function_and_arguments_in_the_conversations_format() -> None:
    call = json.dumps({"name": "lookup_order", "arguments": {"order_id": "A17"}})
    openai_shape = json.dumps(
        [{"type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": "A17"}'}}]
    )
    answers = [
        '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "A17"}}</tool_call>',
        '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "B2"}}</tool_call>',
        '<tool_call>{"name": "cancel_order", "arguments": {"order_id": "A17"}}</tool_call>',
        "Your order A17 is on its way.",
        '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "A17"}}</tool_call>',
        "Happy to help!",
        '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "A17"}}</tool_call>',
    ]
    calls = [call, call, call, call, "", "", openai_shape]
    assert score({"name": "tool_call", "column": "call"}, answers, call=calls) == [1.0, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_tool_call_with_a_reference_that_is_not_json_fails() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        score({"name": "tool_call", "column": "call"}, ["x"], call=["{lookup"])


def test_label_takes_the_first_allowed_label_the_answer_names() -> None:
    entry = {"name": "label", "column": "gold", "labels": ["positive", "negative"]}
    answers = ["Positive.", "negative, not positive", "It is neutral", "positive"]
    assert score(entry, answers, gold=["positive", "positive", "positive", "Negative"]) == [1.0, 0.0, 0.0, 0.0]


def test_label_without_a_list_compares_the_first_line() -> None:
    assert score({"name": "label", "column": "gold"}, ["spam\nbecause", "ham"], gold=["spam", "spam"]) == [1.0, 0.0]


def test_length_is_full_inside_the_range_and_falls_off_outside() -> None:
    entry = {"name": "length", "min_words": 4, "max_words": 8}
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    assert score(entry, [words(2), words(4), words(8), words(12), words(20)]) == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_python_reward_calls_the_users_function_with_columns_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_rewards.py").write_text(
        "def short(prompts, completions, reference, row, **cols):\n"
        "    return [1.0 if len(c) <= len(f) else 0.0 for c, f in zip(completions, cols['facts'])]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    built = reward({"name": "python", "function": "user_rewards:short"}, allow_code=True)
    cols = {"reference": ["", ""], "row": [1, 2], "column.facts": ["abcdef", "ab"]}
    assert built(["p", "p"], ["abc", "abc"], cols) == [1.0, 0.0] and not built.failures
    sys.modules.pop("user_rewards", None)


def test_python_reward_failures_name_the_row_and_score_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad_rewards.py").write_text(
        "def picky(prompts, completions, row, **cols):\n    return [1.0 / (r - 2) for r in row]\n"
        "def wrong_count(prompts, completions, **cols):\n    return [1.0]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cols = {"reference": ["", "", ""], "row": [1, 2, 3]}
    picky = reward({"name": "python", "function": "bad_rewards:picky"}, allow_code=True)
    assert picky(["p"] * 3, ["a"] * 3, cols) == [0.0, 0.0, 0.0]
    assert picky.failures[0].message() == (
        "train.rewards.0: reward python failed on data row 2: ZeroDivisionError: float division by zero"
    )
    counted = reward({"name": "python", "function": "bad_rewards:wrong_count"}, allow_code=True)
    counted(["p"] * 3, ["a"] * 3, cols)
    assert "returned 1 values for 3 answers" in counted.failures[0].message()
    sys.modules.pop("bad_rewards", None)


def test_python_reward_that_cannot_be_imported_names_its_key() -> None:
    with pytest.raises(TunesmithError, match=r"train.rewards.0: function: cannot import nowhere_module:f"):
        reward({"name": "python", "function": "nowhere_module:f"}, allow_code=True)


def test_trl_functions_are_named_per_reward_and_read_the_dataset_columns() -> None:
    raw = {
        "data": {"train": "t.csv", "prompt": "{facts}", "response": "{ad}"},
        "train": {"objective": "grpo", "rewards": [{"name": "exact_match"}, {"name": "exact_match", "column": "alt"}]},
    }
    functions = trl_reward_functions(build_rewards(validate_config(raw)))
    assert [f.__name__ for f in functions] == ["exact_match", "exact_match_2"]
    kwargs = {"reference": ["a", "b"], "row": [1, 2], "column.alt": ["b", "b"], "trainer_state": None}
    assert functions[0](prompts=["p", "p"], completions=["a", "a"], completion_ids=[[1], [1]], **kwargs) == [1.0, 0.0]
    assert functions[1](prompts=["p", "p"], completions=["a", "b"], completion_ids=[[1], [1]], **kwargs) == [0.0, 1.0]
