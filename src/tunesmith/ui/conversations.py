"""Conversations as the UI shows them: each turn's role, text, tool calls (name + arguments) and tool results.

The data layer reads and checks the messages (``data.conversation``); the doctor renders them as the model
reads them and counts turns, tokens and tool calls (``doctor.conversation``). This module only lays the
normalised messages out for a page, and marks the turns that carry loss under ``data.loss_on`` by the rule
the tokenizer side applies (``data.turns.encode_conversation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.data.conversation import Conversation, Message, read_conversations

if TYPE_CHECKING:
    import pandas as pd

ARGUMENT_CHARS = 400  # a call's arguments as shown (the rendered text below shows them whole)
CONTENT_CHARS = 1200


@dataclass(frozen=True)
class ToolCall:
    """One call an assistant turn makes: the function and its arguments as JSON text."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class Turn:
    """One message laid out for a page."""

    index: int  # 0-based, as the doctor names a malformed message
    role: str
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    answers: str = ""  # a tool result: the call id it answers
    name: str = ""  # a tool result: the function that produced it
    loss: bool = False


@dataclass(frozen=True)
class ConversationView:
    """One conversation: its row in the file, its turns, the names of the tools it may call."""

    row: int
    turns: list[Turn]
    tools: list[str]


def calls_of(message: Message) -> list[ToolCall]:
    """A normalised message's tool calls, arguments as compact JSON."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = json.dumps(function.get("arguments", {}), ensure_ascii=False)
        calls.append(ToolCall(str(function.get("name", "")), _cut(arguments, ARGUMENT_CHARS), str(call.get("id", ""))))
    return calls


def turns_of(messages: list[Message], loss_on: str | None = "response") -> list[Turn]:
    """Normalised messages as turns, the loss ones marked: every assistant turn, the last one, all, or none."""
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    last = assistants[-1] if assistants else -1
    turns = []
    for index, message in enumerate(messages):
        assistant = message["role"] == "assistant"
        loss = loss_on == "all" or (assistant and (loss_on == "response" or (loss_on == "last" and index == last)))
        turns.append(
            Turn(
                index,
                message["role"],
                _cut(str(message.get("content") or ""), CONTENT_CHARS),
                calls_of(message),
                str(message.get("tool_call_id", "")),
                str(message.get("name", "")) if message["role"] == "tool" else "",
                loss,
            )
        )
    return turns


def view_of(conversation: Conversation, loss_on: str | None = "response") -> ConversationView:
    """A conversation read by the data layer, laid out."""
    names = [str((tool.get("function") or {}).get("name", "")) for tool in conversation.tools]
    return ConversationView(conversation.row, turns_of(conversation.messages, loss_on), names)


def messages_column(frame: pd.DataFrame) -> str | None:
    """The column of a table that holds conversations (lists of role/content or from/value messages), if any."""
    for column in frame.columns:
        if _looks_like(_first(frame[column]), ("role", "from")):
            return str(column)
    return None


def tools_column(frame: pd.DataFrame, messages: str) -> str | None:
    """The column next to ``messages`` that holds tool schemas (lists of {"function": ...}), if any."""
    for column in frame.columns:
        if str(column) != messages and _looks_like(_first(frame[column]), ("function",)):
            return str(column)
    return None


def table_views(
    frame: pd.DataFrame, messages: str, tools: str | None, source: Path, system: str | None = None, limit: int = 5
) -> list[ConversationView]:
    """The first ``limit`` rows as conversations; a malformed message anywhere raises the data layer's one line.

    No turn is marked for loss: that is the config's data.loss_on, which the preview (with the config) shows.
    """
    conversations = read_conversations(frame, messages, tools, source, system)
    return [view_of(conversation, None) for conversation in conversations[:limit]]


def tool_schemas(conversations: list[Conversation]) -> list[dict[str, Any]]:
    """Every distinct tool schema the conversations offer, first seen first (by function name)."""
    seen: dict[str, dict[str, Any]] = {}
    for conversation in conversations:
        for tool in conversation.tools:
            seen.setdefault(str(tool["function"]["name"]), tool)
    return list(seen.values())


def _first(column: pd.Series) -> Any:
    for value in column.head(20):
        if value is not None and not (isinstance(value, float) and value != value):
            return value
    return None


def _looks_like(value: Any, keys: tuple[str, ...]) -> bool:
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    return isinstance(first, dict) and any(key in first for key in keys)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
