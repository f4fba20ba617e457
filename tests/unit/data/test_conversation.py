"""Conversation rows: OpenAI and ShareGPT shapes normalise to one form; tables in every format read the same."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tunesmith.data.conversation import normalise_messages, read_conversations
from tunesmith.errors import TunesmithError

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
OPENAI = [
    {"role": "user", "content": "Where is order 12?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": 12}'}}],
    },
    {"role": "tool", "content": '{"status": "shipped"}'},
    {"role": "assistant", "content": "It shipped yesterday."},
]
SHAREGPT = [
    {"from": "human", "value": "Where is order 12?"},
    {"from": "function_call", "value": '{"name": "lookup_order", "arguments": {"order_id": 12}}'},
    {"from": "observation", "value": '{"status": "shipped"}'},
    {"from": "gpt", "value": "It shipped yesterday."},
]


def test_openai_and_sharegpt_normalise_to_the_same_messages() -> None:
    openai, sharegpt = normalise_messages(json.loads(json.dumps(OPENAI))), normalise_messages(SHAREGPT)
    assert openai == sharegpt
    call = openai[1]["tool_calls"][0]
    assert call["function"] == {"name": "lookup_order", "arguments": {"order_id": 12}}  # the JSON string, parsed
    # The tool result is tied to the call it answers, and names its function.
    answer = {"role": "tool", "content": '{"status": "shipped"}', "tool_call_id": call["id"], "name": "lookup_order"}
    assert openai[2] == answer


def test_arguments_as_an_object_equal_arguments_as_a_json_string() -> None:
    as_object = json.loads(json.dumps(OPENAI))
    as_object[1]["tool_calls"][0]["function"]["arguments"] = {"order_id": 12}
    assert normalise_messages(as_object) == normalise_messages(json.loads(json.dumps(OPENAI)))


def test_a_tool_call_id_must_name_an_open_call() -> None:
    messages = json.loads(json.dumps(OPENAI))
    messages[1]["tool_calls"][0]["id"] = "call_a"
    messages[2]["tool_call_id"] = "call_b"
    frame = pd.DataFrame({"messages": [messages]})
    with pytest.raises(TunesmithError, match=r"row 1 message 2: tool_call_id: 'call_b' answers none of the open calls"):
        read_conversations(frame, "messages", None, Path("t.jsonl"))


def write_tables(tmp_path: Path) -> list[Path]:
    rows = [{"messages": OPENAI, "tools": TOOLS}, {"messages": SHAREGPT, "tools": TOOLS}]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    csv = tmp_path / "c.csv"
    pd.DataFrame([{k: json.dumps(v) for k, v in row.items()} for row in rows]).to_csv(csv, index=False)
    parquet = tmp_path / "c.parquet"
    # Parquet cannot hold a column whose structs differ per row (OpenAI vs ShareGPT keys): store one shape.
    pd.DataFrame([{"messages": SHAREGPT, "tools": TOOLS}] * 2).to_parquet(parquet)
    return [jsonl, csv, parquet]


def test_jsonl_csv_and_parquet_tables_read_the_same_conversations(tmp_path: Path) -> None:
    from tunesmith.data.tables import read_table

    paths = write_tables(tmp_path)
    read = [read_conversations(read_table(path, "data.train"), "messages", "tools", path) for path in paths]
    first = read[0][0]
    assert first.tools == TOOLS and first.tool_calls == 1 and len(first.messages) == 4
    for conversations in read:
        assert [c.messages for c in conversations] == [first.messages, first.messages]
        assert [c.tools for c in conversations] == [TOOLS, TOOLS]
        assert [c.row for c in conversations] == [1, 2]


def test_data_system_applies_only_when_the_conversation_has_none() -> None:
    frame = pd.DataFrame({"messages": [OPENAI, [{"role": "system", "content": "Own."}, *OPENAI]]})
    first, second = read_conversations(frame, "messages", None, Path("t.jsonl"), system="Be brief.")
    assert first.messages[0] == {"role": "system", "content": "Be brief."}
    assert second.messages[0] == {"role": "system", "content": "Own."} and len(second.messages) == 5


def test_a_missing_messages_column_names_the_key_and_the_columns() -> None:
    with pytest.raises(TunesmithError, match=r"data.messages: column 'turns' is not in t.csv") as found:
        read_conversations(pd.DataFrame({"messages": [OPENAI]}), "turns", None, Path("t.csv"))
    assert found.value.hint == "columns: messages"


def test_a_tool_schema_without_a_function_name_is_named() -> None:
    frame = pd.DataFrame({"messages": [OPENAI], "tools": [[{"type": "function", "function": {}}]]})
    with pytest.raises(TunesmithError, match=r"data.tools: t.jsonl row 1: tools\[0\]: expected"):
        read_conversations(frame, "messages", "tools", Path("t.jsonl"))


NULL_ARGUMENT = [
    {"role": "user", "content": "Cancel order A1."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "cancel", "arguments": {"order_id": "A1", "note": None}}}
        ],
    },
    {"role": "tool", "content": '{"cancelled": true, "refund": null}'},
    {"role": "assistant", "content": "Done."},
]


def test_a_json_null_argument_stays_in_the_call_and_the_training_text(tmp_path: Path) -> None:
    from fixtures import build_tokenizer
    from tunesmith.data.chat_format import chat_renderer
    from tunesmith.data.tables import read_table
    from tunesmith.data.turns import render_pieces

    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": NULL_ARGUMENT}) + "\n")
    (conversation,) = read_conversations(read_table(path, "data.train"), "messages", None, path)
    call, result = conversation.messages[1], conversation.messages[2]
    assert call["content"] == ""  # the assistant's null content beside its calls is still "no text"
    assert call["tool_calls"][0]["function"]["arguments"] == {"order_id": "A1", "note": None}
    assert result["content"] == '{"cancelled": true, "refund": null}'
    text = "".join(p.text for p in render_pieces(conversation, chat_renderer(build_tokenizer(), use_template=False)))
    assert '"arguments": {"order_id": "A1", "note": null}' in text


def test_parquet_structs_read_like_json_rows(tmp_path: Path) -> None:
    # Arrow gives each struct the union of every row's fields, None where a row has none: those are absent.
    from tunesmith.data.tables import read_table

    messages = json.loads(json.dumps(OPENAI))
    messages[1]["tool_calls"][0]["function"]["arguments"] = {"order_id": 12}
    other = [*messages[:1], {"role": "assistant", "content": "Which order?"}]
    path = tmp_path / "c.parquet"
    pd.DataFrame({"messages": [messages, other], "tools": [TOOLS, TOOLS]}).to_parquet(path)
    read = read_conversations(read_table(path, "data.train"), "messages", "tools", path)
    assert [c.messages for c in read] == [normalise_messages(messages), normalise_messages(other)]
    assert [c.tools for c in read] == [TOOLS, TOOLS]
