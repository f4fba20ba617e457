"""Tool-call metrics on assistant turns: did the model call when it should, and did it call the right thing.

A prediction is generated text, read back with ``chat_format.parse_tool_calls`` (the same reader serve uses).
A reference is the assistant message the data holds (normalised: ``tool_calls`` with arguments as objects), or
a reference text written in the marked format, which is parsed the same way.

* ``call_decision_accuracy``: share of turns where the model calls (writes at least one ``<tool_call>`` block,
  valid or not) exactly when the reference calls.
* ``call_exact_match``: share of the reference calls the model reproduced in the same turn: the same function
  name and arguments equal as parsed JSON (``{"a": 1, "b": 2}`` equals ``{"b": 2, "a": 1}``).
* ``call_argument_f1``: micro F1 over the ``key=value`` argument pairs of each turn's calls (values compared as
  JSON), summed over every turn; a call to the wrong function still earns credit for the arguments it got right.
* ``call_json_validity``: share of the ``<tool_call>`` blocks the model wrote that parse as a JSON call
  (``{"name": ..., "arguments": {...}}``).

A score whose denominator is zero (no reference call, no block written) is NaN, which eval.json writes as null:
a base model that never calls has no JSON validity, rather than a perfect or a zero one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tunesmith.data.chat_format import ParsedReply, parse_tool_calls
from tunesmith.evaluate.metrics import register

Call = tuple[str, str]  # (function name, arguments as canonical JSON)


def canonical_call(call: dict[str, Any]) -> Call:
    """A normalised call as a comparable value: its name and its arguments as sorted-key JSON."""
    function = call["function"]
    return function["name"], json.dumps(function.get("arguments", {}), sort_keys=True, ensure_ascii=False)


def argument_pairs(calls: Sequence[dict[str, Any]]) -> Counter[str]:
    """Every ``key=value`` argument pair of ``calls`` (a multiset: two calls may pass the same pair)."""
    pairs: Counter[str] = Counter()
    for call in calls:
        for key, value in (call["function"].get("arguments") or {}).items():
            pairs[f"{key}={json.dumps(value, sort_keys=True, ensure_ascii=False)}"] += 1
    return pairs


def reference_calls(reference: Any) -> list[dict[str, Any]]:
    """The calls of a reference: an assistant message's ``tool_calls``, or the calls written in a reference text."""
    if isinstance(reference, dict):
        return list(reference.get("tool_calls") or [])
    if isinstance(reference, str):
        return parse_tool_calls(reference).tool_calls
    # A row of references (single-turn eval): the first is the one the calls are compared with.
    return reference_calls(reference[0]) if reference else []


@dataclass
class CallCounts:
    """Sufficient statistics of the tool-call metrics: counts only, whatever the number of turns."""

    turns: int = 0
    decisions_right: int = 0
    reference_calls: int = 0
    calls_matched: int = 0
    pairs_matched: int = 0
    pairs_predicted: int = 0
    pairs_reference: int = 0
    blocks: int = 0  # <tool_call> blocks the model wrote
    blocks_valid: int = 0

    def add(self, predicted: ParsedReply, expected: list[dict[str, Any]]) -> None:
        """Count one turn: the model's parsed reply against the reference calls."""
        self.turns += 1
        self.decisions_right += int(bool(predicted.tool_calls or predicted.invalid) == bool(expected))
        self.reference_calls += len(expected)
        made, due = Counter(map(canonical_call, predicted.tool_calls)), Counter(map(canonical_call, expected))
        self.calls_matched += sum((made & due).values())
        got, wanted = argument_pairs(predicted.tool_calls), argument_pairs(expected)
        self.pairs_matched += sum((got & wanted).values())
        self.pairs_predicted += sum(got.values())
        self.pairs_reference += sum(wanted.values())
        self.blocks += len(predicted.tool_calls) + len(predicted.invalid)
        self.blocks_valid += len(predicted.tool_calls)

    def scores(self) -> dict[str, float]:
        """The four scores (0-1); NaN where the denominator is zero."""
        return {
            "call_decision_accuracy": _share(self.decisions_right, self.turns),
            "call_exact_match": _share(self.calls_matched, self.reference_calls),
            "call_argument_f1": _share(2 * self.pairs_matched, self.pairs_predicted + self.pairs_reference),
            "call_json_validity": _share(self.blocks_valid, self.blocks),
        }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


@register("tool_calls")
class ToolCalls:
    """Call/no-call decisions, exact calls, argument F1 and JSON validity over assistant turns."""

    every_turn = True  # a conversation eval feeds it every assistant turn, not only the text ones

    def __init__(self) -> None:
        self.counts = CallCounts()

    def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
        """Add a batch: generated texts and, per text, the reference assistant message (or reference texts)."""
        for text, reference in zip(predictions, references, strict=True):
            self.counts.add(parse_tool_calls(text), reference_calls(reference))

    def compute(self) -> dict[str, float]:
        """call_decision_accuracy, call_exact_match, call_argument_f1, call_json_validity."""
        return self.counts.scores()

    def state(self) -> dict[str, Any]:
        """The counts behind the scores."""
        return asdict(self.counts)
