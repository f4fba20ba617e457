"""Conversations render through the chat template (native tools) or the marked-text fallback; loss spans are exact."""

from __future__ import annotations

import json

import pytest

from fixtures import build_tokenizer
from tunesmith.config import DataConfig
from tunesmith.data.chat_format import (
    assistant_text,
    chat_renderer,
    fallback_messages,
    parse_tool_calls,
)
from tunesmith.data.conversation import Conversation, normalise_messages
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.data.turns import conversation_renderer, encode_conversation, tokenize_conversations

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
MESSAGES = [
    {"role": "user", "content": "Where is order 12?"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "lookup_order", "arguments": {"id": 12}}}]},
    {"role": "tool", "content": "shipped"},
    {"role": "assistant", "content": "It shipped."},
]
CALL = '<tool_call>\n{"name": "lookup_order", "arguments": {"id": 12}}\n</tool_call>'
SYSTEM_WITH_TOOLS = (
    "# Tools\n\nYou may call one or more functions to help with the request. Their JSON schemas:\n<tools>\n"
    + json.dumps(TOOLS[0])
    + '\n</tools>\n\nTo call a function, answer with one JSON object per call, {"name": ..., "arguments": {...}}, '
    "between <tool_call> and </tool_call>."
)
# A template that knows tools: lists them, writes calls its own way and gives results their own role.
TOOL_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\nTOOLS:' }}{% for t in tools %}{{ ' ' + t.function.name }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endif %}"
    "{% for m in messages %}{% if m.role == 'assistant' and m.tool_calls %}{{ '<|im_start|>assistant\n' }}"
    "{% for c in m.tool_calls %}{{ 'CALL ' + c.function.name + ' ' + (c.function.arguments | tojson) }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% else %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def conversation() -> Conversation:
    return Conversation(1, normalise_messages(json.loads(json.dumps(MESSAGES))), TOOLS)


def expected(tokenizer, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    # The reference: each segment tokenised on its own, loss where the test says.
    ids, labels = [], []
    for text, loss in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if loss else [IGNORE_INDEX] * len(piece)
    return ids, labels


FALLBACK_SEGMENTS = [
    (f"<|im_start|>system\n{SYSTEM_WITH_TOOLS}<|im_end|>\n", False),
    ("<|im_start|>user\nWhere is order 12?<|im_end|>\n", False),
    ("<|im_start|>assistant\n", False),
    (f"{CALL}<|im_end|>\n", True),
    ("<|im_start|>user\n<tool_response>\nshipped\n</tool_response><|im_end|>\n", False),
    ("<|im_start|>assistant\n", False),
    ("It shipped.<|im_end|>\n", True),
]


def test_fallback_loss_covers_every_assistant_turn_its_calls_and_end_of_turn() -> None:
    tokenizer = build_tokenizer()  # its ChatML template has no tool support
    cfg = DataConfig(train="t.jsonl", messages="messages")
    renderer = conversation_renderer(tokenizer, cfg)
    assert not renderer.native_tools
    encoded = encode_conversation(conversation(), tokenizer, cfg, renderer)
    assert encoded is not None
    assert (encoded.input_ids, encoded.labels) == expected(tokenizer, FALLBACK_SEGMENTS)
    roles = [role for role, _, _ in encoded.turns]
    assert roles == ["system", "user", "assistant", "user", "assistant"] and not encoded.cut


@pytest.mark.parametrize("loss_on", ["last", "all"])
def test_loss_on_last_and_all(loss_on: str) -> None:
    tokenizer = build_tokenizer()
    cfg = DataConfig(train="t.jsonl", messages="messages", loss_on=loss_on)  # type: ignore[arg-type]
    encoded = encode_conversation(conversation(), tokenizer, cfg, conversation_renderer(tokenizer, cfg))
    assert encoded is not None
    if loss_on == "all":
        assert encoded.labels == encoded.input_ids
    else:
        last = len(FALLBACK_SEGMENTS) - 1
        segments = [(text, loss and i == last) for i, (text, loss) in enumerate(FALLBACK_SEGMENTS)]
        assert encoded.labels == expected(tokenizer, segments)[1]


def test_native_template_renders_tools_its_own_way() -> None:
    tokenizer = build_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    cfg = DataConfig(train="t.jsonl", messages="messages")
    renderer = conversation_renderer(tokenizer, cfg)
    assert renderer.native_tools
    encoded = encode_conversation(conversation(), tokenizer, cfg, renderer)
    assert encoded is not None
    segments = [
        ("<|im_start|>system\nTOOLS: lookup_order<|im_end|>\n", False),
        ("<|im_start|>user\nWhere is order 12?<|im_end|>\n", False),
        ("<|im_start|>assistant\n", False),
        ('CALL lookup_order {"id": 12}<|im_end|>\n', True),
        ("<|im_start|>tool\nshipped<|im_end|>\n", False),
        ("<|im_start|>assistant\n", False),
        ("It shipped.<|im_end|>\n", True),
    ]
    assert (encoded.input_ids, encoded.labels) == expected(tokenizer, segments)


def test_a_long_conversation_is_cut_after_the_last_assistant_turn_that_fits() -> None:
    tokenizer = build_tokenizer()
    whole, _ = expected(tokenizer, FALLBACK_SEGMENTS)
    through_first_answer, labels = expected(tokenizer, FALLBACK_SEGMENTS[:4])
    cfg = DataConfig(train="t.jsonl", messages="messages", max_length=len(whole) - 1)
    encoded = encode_conversation(conversation(), tokenizer, cfg, conversation_renderer(tokenizer, cfg))
    assert encoded is not None and encoded.cut and encoded.untruncated_length == len(whole)
    assert (encoded.input_ids, encoded.labels) == (through_first_answer, labels)
    short = DataConfig(train="t.jsonl", messages="messages", max_length=len(through_first_answer) - 1)
    examples, stats = tokenize_conversations([conversation(), conversation()], tokenizer, cfg)
    assert len(examples) == 2 and stats.truncated == 2 and stats.dropped_truncated == 0
    examples, stats = tokenize_conversations([conversation()], tokenizer, short)
    assert examples == [] and stats.truncated == 1 and stats.dropped_truncated == 1


def test_no_chat_template_renders_plain_turns() -> None:
    tokenizer = build_tokenizer(chat_template=False)
    renderer = chat_renderer(tokenizer)
    messages = renderer.template_messages(conversation().messages, [])
    text = renderer.text(messages, None, generation_prompt=False)
    assert text == (
        f"User: Where is order 12?\nAssistant: {CALL}<|im_end|>\n"
        "User: <tool_response>\nshipped\n</tool_response>\nAssistant: It shipped.<|im_end|>\n"
    )


def test_tool_results_in_a_row_share_one_user_turn() -> None:
    call = {"function": {"name": "f", "arguments": {}}}
    messages = normalise_messages(
        [
            {"role": "user", "content": "two lookups"},
            {"role": "assistant", "tool_calls": [call, call]},
            {"role": "tool", "content": "a"},
            {"role": "tool", "content": "b"},
            {"role": "assistant", "content": "done"},
        ]
    )
    plain = fallback_messages(messages, [])
    assert [m["role"] for m in plain] == ["user", "assistant", "user", "assistant"]
    assert plain[2]["content"] == "<tool_response>\na\n</tool_response>\n<tool_response>\nb\n</tool_response>"


def test_parse_tool_calls_reads_back_what_the_fallback_writes() -> None:
    message = normalise_messages([{"role": "user", "content": "q"}, *MESSAGES[1:2]])[1]
    message["content"] = "Let me check."
    parsed = parse_tool_calls(assistant_text(message))
    assert parsed.content == "Let me check." and parsed.invalid == []
    assert parsed.tool_calls == [{"type": "function", "function": {"name": "lookup_order", "arguments": {"id": 12}}}]
    broken = parse_tool_calls('Sure. <tool_call>\n{"name": "lookup_order", "arguments": {id: 12}}\n</tool_call>')
    assert broken.tool_calls == [] and broken.invalid and "<tool_call>" in broken.content
    stringy = parse_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>')
    assert stringy.tool_calls[0]["function"]["arguments"] == {"a": 1} and stringy.content == ""


def test_a_template_that_renders_prefixes_differently_is_one_clear_error() -> None:
    from tunesmith.errors import TunesmithError

    tokenizer = build_tokenizer()
    # Marks the last message: a conversation's first turns then render differently from the whole's start.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m.role + ': ' + m.content }}{% if loop.last %}{{ ' (end)' }}{% endif %}"
        "{{ '\n' }}{% endfor %}"
    )
    cfg = DataConfig(train="t.jsonl", messages="messages")
    with pytest.raises(TunesmithError, match="renders the first 1 messages differently") as found:
        encode_conversation(conversation(), tokenizer, cfg, conversation_renderer(tokenizer, cfg))
    assert found.value.hint is not None and "data.chat_template: off" in found.value.hint
