"""The tool-call metric on hand-made answers: wrong name, wrong argument, invalid JSON, call against no call."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tunesmith.evaluate.metrics import build_metrics
from tunesmith.evaluate.tool_metrics import ToolCalls


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def said(name: str, **arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def reference(*calls: dict[str, Any], content: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def scores(pairs: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    metric = ToolCalls()
    metric.update([p for p, _ in pairs], [r for _, r in pairs])
    return metric.compute()


def test_the_right_call_scores_one_whatever_the_argument_order() -> None:
    text = '<tool_call>\n{"arguments": {"reason": "damaged", "order_id": "K1"}, "name": "start_return"}\n</tool_call>'
    got = scores([(text, reference(call("start_return", order_id="K1", reason="damaged")))])
    assert got == {
        "call_decision_accuracy": 1.0,
        "call_exact_match": 1.0,
        "call_argument_f1": 1.0,
        "call_json_validity": 1.0,
    }


def test_a_wrong_function_name_is_no_exact_match_but_keeps_its_argument_credit() -> None:
    got = scores([(said("start_return", order_id="K1"), reference(call("lookup_order", order_id="K1")))])
    assert got["call_decision_accuracy"] == 1.0
    assert got["call_exact_match"] == 0.0
    assert got["call_argument_f1"] == 1.0


def test_a_wrong_argument_value_is_no_match_and_halves_the_pairs() -> None:
    expected = reference(call("start_return", order_id="K1", reason="damaged"))
    got = scores([(said("start_return", order_id="K1", reason="too_small"), expected)])
    assert got["call_exact_match"] == 0.0
    assert got["call_argument_f1"] == pytest.approx(0.5)  # 1 of 2 pairs right on each side
    # Values are compared as JSON: the number 1 is not the string "1".
    assert (
        scores([(said("lookup_order", order_id=1), reference(call("lookup_order", order_id="1")))])["call_exact_match"]
        == 0.0
    )


def test_invalid_json_is_a_call_decision_but_neither_valid_nor_a_match() -> None:
    broken = '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "K1"\n</tool_call>'
    got = scores([(broken, reference(call("lookup_order", order_id="K1")))])
    assert got["call_decision_accuracy"] == 1.0  # it tried to call, as it should
    assert got["call_json_validity"] == 0.0
    assert got["call_exact_match"] == 0.0
    half = scores(
        [(broken + "\n" + said("lookup_order", order_id="K1"), reference(call("lookup_order", order_id="K1")))]
    )
    assert half["call_json_validity"] == 0.5
    assert half["call_exact_match"] == 1.0


def test_call_against_no_call_counts_in_both_directions() -> None:
    text_turn = {"role": "assistant", "content": "We ship to every EU country.", "tool_calls": []}
    pairs = [
        (said("lookup_order", order_id="K1"), text_turn),  # called when it should have answered
        ("Let me look that up for you.", reference(call("lookup_order", order_id="K1"))),  # answered, should call
        ("We ship across the EU.", text_turn),  # right: no call
        (said("lookup_order", order_id="K2"), reference(call("lookup_order", order_id="K2"))),  # right call
    ]
    got = scores(pairs)
    assert got["call_decision_accuracy"] == 0.5
    assert got["call_exact_match"] == 0.5  # one of the two reference calls made
    assert got["call_argument_f1"] == pytest.approx(2 * 1 / (2 + 2))  # 1 matched pair of 2 predicted, 2 due
    assert got["call_json_validity"] == 1.0


def test_a_model_that_never_calls_has_no_json_validity_and_batches_add_up() -> None:
    metric = ToolCalls()
    metric.update(["Sure."], [reference(call("lookup_order", order_id="K1"))])
    metric.update(["Hello!"], [{"role": "assistant", "content": "Hi!", "tool_calls": []}])
    got = metric.compute()
    assert got["call_decision_accuracy"] == 0.5
    assert got["call_exact_match"] == 0.0
    assert math.isnan(got["call_json_validity"])
    assert metric.state()["turns"] == 2


def test_reference_texts_in_the_marked_format_are_parsed_like_answers() -> None:
    # Single-turn data whose responses are written calls: name tool_calls in eval.metrics.
    metric = build_metrics(["tool_calls"])["tool_calls"]
    metric.update([said("lookup_order", order_id="K1"), "No."], [(said("lookup_order", order_id="K1"),), ("Yes.",)])
    assert metric.compute()["call_exact_match"] == 1.0
    assert metric.compute()["call_decision_accuracy"] == 1.0
