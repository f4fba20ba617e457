"""``tunesmith doctor`` on conversation data (data.messages).

A malformed message stops the doctor in one line before any model loads (the same check training runs).
Otherwise the first conversations are shown exactly as the model reads them, the tokens that carry loss
marked, with turns per conversation, tokens per turn by role, the share of tokens with loss, tool calls per
conversation, conversations cut at max_length, duplicates and train/eval overlap.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.conversation import Conversation
from tunesmith.data.conversation_data import conversations_of, prepare_conversation_data, read_conversation_tables
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.data.turns import (
    EncodedConversation,
    conversation_length,
    conversation_renderer,
    encode_conversation,
)
from tunesmith.doctor.cost import estimate_cost, timing_summary
from tunesmith.doctor.findings import (
    LISTED,
    SHOWN_EXAMPLES,
    ConversationStats,
    Diagnosis,
    Example,
    Lengths,
    Token,
    load_tokenizer_for,
)
from tunesmith.errors import TunesmithError


def diagnose_conversations(report: Diagnosis, cfg: RunConfig, timing: bool = True) -> Diagnosis:
    """Every conversation check on ``cfg``'s data; adds to ``report``. A malformed message raises (one line)."""
    data = cfg.data
    tables = read_conversation_tables(data)  # malformed messages stop here, before the tokenizer loads
    train, evaluation = conversations_of(data, tables)
    report.rows = {"read": len(tables.train) + (len(tables.eval) if tables.eval is not None else 0)}
    report.rows |= {"usable": len(train) + len(evaluation), "train": len(train), "eval": len(evaluation)}
    tokenizer, resolved = load_tokenizer_for(cfg)
    renderer = conversation_renderer(tokenizer, data)
    everything = train + evaluation
    encoded = [encode_conversation(c, tokenizer, data, renderer) for c in everything]
    report.conversations = _statistics(everything, encoded, renderer.native_tools)
    full = [
        e.untruncated_length if e else conversation_length(c, tokenizer, renderer)
        for c, e in zip(everything, encoded, strict=True)
    ]
    report.lengths = _lengths(full, encoded, cfg)
    _check_cuts(report, cfg)
    _check_duplicates(report, train, evaluation)
    report.examples = [_example(c, e, tokenizer) for c, e in zip(train, encoded, strict=False) if e is not None][
        :SHOWN_EXAMPLES
    ]
    if not renderer.native_tools and any(c.tools or c.tool_calls for c in everything):
        report.add(
            "info",
            "tool-format",
            "the chat template has no tool support: tools, calls and results are written in tunesmith's marked-text "
            "format (tools in the system turn, <tool_call> JSON blocks, <tool_response> user turns)",
        )
    if timing and not report.blocking:
        _estimate(report, cfg, resolved, tokenizer, tables)
    return report


def _estimate(report: Diagnosis, cfg: RunConfig, resolved: Any, tokenizer: Any, tables: Any) -> None:
    try:
        prepared = prepare_conversation_data(cfg.data, tables, tokenizer)
    except TunesmithError as err:
        report.add("blocking", "prepare", f"training would stop: {err}")
        return
    report.timing = estimate_cost(cfg, resolved, tokenizer, prepared)
    report.add("info", "estimate", timing_summary(report.timing))


def _statistics(
    conversations: list[Conversation], encoded: list[EncodedConversation | None], native: bool
) -> ConversationStats:
    turns = [len(c.messages) for c in conversations]
    per_role: dict[str, list[int]] = defaultdict(list)
    loss = total = 0
    for item in encoded:
        if item is None:
            continue
        for role, start, end in item.turns:
            per_role[role].append(end - start)
        loss += sum(label != IGNORE_INDEX for label in item.labels)
        total += len(item.labels)
    calls = [c.tool_calls for c in conversations]
    return ConversationStats(
        conversations=len(conversations),
        turns={"min": min(turns), "median": statistics.median(turns), "max": max(turns)},
        tokens_per_turn={r: {"median": statistics.median(n), "max": max(n)} for r, n in sorted(per_role.items())},
        loss_share=loss / total if total else 0.0,
        tool_calls={
            "total": sum(calls),
            "median": statistics.median(calls),
            "max": max(calls),
            "with_calls": sum(1 for n in calls if n),
        },
        renderer="native" if native else "fallback",
    )


def _lengths(full: list[int], encoded: list[EncodedConversation | None], cfg: RunConfig) -> Lengths:
    lengths = sorted(full)
    return Lengths(
        rows=len(lengths),
        min=lengths[0],
        median=statistics.median(lengths),
        p95=lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)],
        max=lengths[-1],
        max_length=cfg.data.max_length,
        truncated=sum(1 for e in encoded if e is None or e.cut),
        dropped_truncated=sum(1 for e in encoded if e is None),
        total=sum(lengths),
    )


def _check_cuts(report: Diagnosis, cfg: RunConfig) -> None:
    n = report.lengths
    assert n is not None
    if n.dropped_truncated == n.rows:
        report.add(
            "blocking",
            "all-truncated",
            f"no conversation keeps an assistant turn within data.max_length={cfg.data.max_length} tokens; "
            f"max_length {n.min} keeps the shortest conversation whole",
        )
    elif n.truncated:
        report.add(
            "warning",
            "truncated",
            f"{n.truncated} of {n.rows} conversations are longer than data.max_length={cfg.data.max_length} "
            f"(longest {n.max}) and are cut after the last assistant turn that fits"
            + (f"; {n.dropped_truncated} keep no assistant turn and are dropped" if n.dropped_truncated else ""),
        )


def _check_duplicates(report: Diagnosis, train: list[Conversation], evaluation: list[Conversation]) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for conversation in train:
        seen[_key(conversation)].append(conversation.row)
    report.exact_duplicates = [rows for rows in seen.values() if len(rows) > 1]
    if report.exact_duplicates:
        groups = "; ".join(", ".join(map(str, g)) for g in report.exact_duplicates[:LISTED])
        count = len(report.exact_duplicates)
        report.add("warning", "duplicates", f"{count} groups of identical conversations (rows {groups})")
    report.leaked = [{"eval_rows": [c.row], "train_rows": seen[_key(c)]} for c in evaluation if _key(c) in seen]
    if report.leaked:
        report.add(
            "warning",
            "leakage",
            f"{len(report.leaked)} eval conversations also appear in training data: eval scores will be optimistic",
        )


def _key(conversation: Conversation) -> str:
    return json.dumps([conversation.messages, conversation.tools], sort_keys=True)


def _example(conversation: Conversation, encoded: EncodedConversation | None, tokenizer: Any) -> Example:
    assert encoded is not None
    tokens = [
        Token(i, tokenizer.decode([i]), label != IGNORE_INDEX)
        for i, label in zip(encoded.input_ids, encoded.labels, strict=True)
    ]
    turns = ", ".join(f"{role} {end - start}" for role, start, end in encoded.turns)
    return Example(conversation.row, tokens, encoded.untruncated_length, note=f"tokens per turn: {turns}")
