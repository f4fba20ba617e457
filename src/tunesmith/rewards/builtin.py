"""The built-in rewards. Each scores one answer in [0, 1]; a partly right answer scores in between, because a
group of answers that all score the same teaches GRPO nothing."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from typing import Any

from tunesmith.config import RewardConfig
from tunesmith.data.chat_format import parse_tool_calls
from tunesmith.errors import TunesmithError
from tunesmith.rewards.registry import COLUMN_PREFIX, Columns, ScoreFn, register


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed: what exact_match, label and contains_columns compare."""
    return " ".join(str(text).casefold().split())


def references(cfg: RewardConfig, columns: Columns) -> list[str]:
    """The reference per completion: the named column, else data.response rendered."""
    key = COLUMN_PREFIX + cfg.column if cfg.column else "reference"
    return [str(value) for value in columns[key]]


def _per_pair(score: Callable[[str, str], float]) -> Callable[[RewardConfig], ScoreFn]:
    # A reward that compares each completion with its reference.
    def build(cfg: RewardConfig) -> ScoreFn:
        def run(prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
            return [score(c, r) for c, r in zip(completions, references(cfg, columns), strict=True)]

        return run

    return build


def _chrf(completion: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(completion, [reference]).score) / 100


def _bleu(completion: str, reference: str) -> float:
    from sacrebleu.metrics import BLEU

    return min(1.0, float(BLEU(effective_order=True).sentence_score(completion, [reference]).score) / 100)


def _rouge(completion: str, reference: str) -> float:
    from rouge_score.rouge_scorer import RougeScorer

    return float(RougeScorer(["rougeL"], use_stemmer=True).score(reference, completion)["rougeL"].fmeasure)


register("chrf")(_per_pair(_chrf))
register("bleu")(_per_pair(_bleu))
register("rouge")(_per_pair(_rouge))
register("exact_match")(_per_pair(lambda c, r: float(normalise(c) == normalise(r))))


@register("contains_columns")
def contains_columns(cfg: RewardConfig) -> ScoreFn:
    """The share of the named columns whose value appears in the answer (case and spacing ignored)."""
    names = cfg.columns or []

    def run(prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
        scores = []
        for index, completion in enumerate(completions):
            text = normalise(completion)
            values = [normalise(columns[COLUMN_PREFIX + name][index]) for name in names]
            values = [v for v in values if v]  # an empty cell asks for nothing
            scores.append(sum(v in text for v in values) / len(values) if values else 1.0)
        return scores

    return run


@register("regex")
def regex(cfg: RewardConfig) -> ScoreFn:
    """The share of patterns satisfied: each of ``must`` found in the answer, each of ``must_not`` absent."""
    must = [re.compile(p) for p in cfg.must or []]
    must_not = [re.compile(p) for p in cfg.must_not or []]

    def one(text: str) -> float:
        kept = sum(bool(p.search(text)) for p in must) + sum(not p.search(text) for p in must_not)
        return kept / (len(must) + len(must_not))

    return lambda prompts, completions, columns: [one(c) for c in completions]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_value(text: str) -> tuple[bool, Any]:
    """The answer as JSON: the whole text, else the first fenced block; (False, None) when neither parses."""
    for candidate in [text.strip(), *(m.strip() for m in _FENCE.findall(text))]:
        try:
            return True, json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return False, None


@register("json_schema")
def json_schema(cfg: RewardConfig) -> ScoreFn:
    """1 for JSON that matches the schema, 0.5 for JSON that does not, 0 for an answer that is not JSON."""
    from jsonschema import validators

    validator = validators.validator_for(cfg.schema_)(cfg.schema_)

    def one(text: str) -> float:
        parsed, value = json_value(text)
        return 0.0 if not parsed else 1.0 if validator.is_valid(value) else 0.5

    return lambda prompts, completions, columns: [one(c) for c in completions]


def reference_call(cell: str) -> tuple[str, dict[str, Any]] | None:
    """A reference column cell -> (function name, arguments); an empty cell means no call is expected.

    Accepted: ``{"name", "arguments"}`` (arguments an object or its JSON string), the OpenAI shape
    ``{"function": {...}}``, or a one-element list of either.
    """
    if not str(cell).strip():
        return None
    try:
        value = json.loads(cell)
    except json.JSONDecodeError as err:
        raise ValueError(f"reference call {cell!r} is not JSON") from err
    value = value[0] if isinstance(value, list) and len(value) == 1 else value
    value = value.get("function", value) if isinstance(value, dict) else value
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError(f"reference call {cell!r} has no function name")
    arguments = value.get("arguments", {})
    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    return value["name"], arguments


@register("tool_call")
def tool_call(cfg: RewardConfig) -> ScoreFn:
    """1: the answer makes the reference call (same function, same arguments as JSON), or no call when none is
    expected; 0.5: the right function with other arguments; 0 otherwise. Calls are read as the conversations
    format writes them (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``)."""

    def one(completion: str, cell: str) -> float:
        expected = reference_call(cell)
        calls = parse_tool_calls(completion).tool_calls
        if expected is None:
            return 0.0 if calls else 1.0
        if not calls:
            return 0.0
        made = calls[0]["function"]
        if made["name"] != expected[0]:
            return 0.0
        return 1.0 if made["arguments"] == expected[1] and len(calls) == 1 else 0.5

    def run(prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
        return [one(c, r) for c, r in zip(completions, references(cfg, columns), strict=True)]

    return run


def answer_label(text: str, labels: list[str] | None) -> str:
    """The label an answer gives: the allowed label it names first, else its first line."""
    normal = normalise(text)
    if labels:
        found = [
            (m.start(), label)
            for label in labels
            for m in [re.search(rf"\b{re.escape(normalise(label))}\b", normal)]
            if m
        ]
        return normalise(min(found)[1]) if found else ""
    return normalise(text.strip().splitlines()[0]) if text.strip() else ""


@register("label")
def label(cfg: RewardConfig) -> ScoreFn:
    """1 when the label the answer gives (see ``answer_label``) is the row's label, else 0."""

    def run(prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
        refs = references(cfg, columns)
        return [float(answer_label(c, cfg.labels) == normalise(r)) for c, r in zip(completions, refs, strict=True)]

    return run


@register("length")
def length(cfg: RewardConfig) -> ScoreFn:
    """1 inside [min_words, max_words]; below, the share of min_words reached; above, falling to 0 at twice
    max_words."""
    low, high = cfg.min_words or 0, cfg.max_words

    def one(text: str) -> float:
        words = len(text.split())
        if words < low:
            return words / low
        if high is not None and words > high:
            return max(0.0, 1 - (words - high) / high)
        return 1.0

    return lambda prompts, completions, columns: [one(c) for c in completions]


@register("python")
def python(cfg: RewardConfig) -> ScoreFn:
    """The user's ``module:function``, called as function(prompts=..., completions=..., reference=..., row=...,
    <each column by name>=...) -> one number per completion."""
    module_name, _, attribute = (cfg.function or "").partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise TunesmithError(f"function: cannot import {cfg.function}: {err}") from err
    if not callable(function):
        raise TunesmithError(f"function: {cfg.function} is not callable")

    def run(prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
        named = {k.removeprefix(COLUMN_PREFIX): v for k, v in columns.items()}
        return function(prompts=prompts, completions=completions, **named)

    return run
