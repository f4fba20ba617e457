"""Conversation rows: a column of messages (OpenAI or ShareGPT shape) -> one normalised form, checked.

The normalised form is OpenAI's: each message a dict with ``role`` (system, user, assistant, tool) and
``content`` (text, possibly empty); an assistant message may carry ``tool_calls``, each
``{"id": ..., "type": "function", "function": {"name": ..., "arguments": {...}}}`` with the arguments parsed
from JSON; a tool message carries the ``tool_call_id`` it answers (filled in from the call it follows when the
data has none, as ShareGPT data never does) and the function's ``name``.

Every problem is one line naming the file, the 1-based row, the 0-based message index and the field, found
before any model loads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tunesmith.errors import TunesmithError

Message = dict[str, Any]

OPENAI_ROLES = ("system", "user", "assistant", "tool")
# ShareGPT speaker -> OpenAI role (LLaMA-Factory's names; "function_call" is an assistant turn that calls a tool).
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}


@dataclass(frozen=True)
class Conversation:
    """One row: its normalised messages, the tools it may call, and its 1-based row number in the file."""

    row: int
    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tool_calls(self) -> int:
        """Tool calls made over the whole conversation."""
        return sum(len(m.get("tool_calls") or []) for m in self.messages)


class MessageProblem(Exception):
    """A malformed message: the field and what is wrong (the caller adds file, row and index)."""

    def __init__(self, index: int | None, field: str, problem: str) -> None:
        super().__init__(problem)
        self.index, self.field, self.problem = index, field, problem


_Bad = MessageProblem


def read_conversations(
    frame: pd.DataFrame, messages: str, tools: str | None, source: Path, system: str | None = None
) -> list[Conversation]:
    """Every row of ``frame`` as a checked Conversation; the first malformed row fails in one line."""
    for key, column in (("data.messages", messages), ("data.tools", tools)):
        if column is not None and column not in frame.columns:
            raise TunesmithError(
                f"{key}: column {column!r} is not in {source}", hint=f"columns: {', '.join(map(str, frame.columns))}"
            )
    conversations = []
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        try:
            raw_tools = _tool_list(record.get(tools)) if tools is not None else []
            normalised = normalise_messages(_cell_list(record.get(messages), "messages"))
        except _Bad as bad:
            where = f" message {bad.index}" if bad.index is not None else ""
            key = "data.tools" if bad.field.startswith("tools") else "data.messages"
            raise TunesmithError(f"{key}: {source} row {number}{where}: {bad.field}: {bad.problem}") from None
        conversations.append(Conversation(number, with_system(normalised, system), raw_tools))
    return conversations


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    """data.system as the first message when the conversation has no system message of its own."""
    if system is None or any(m["role"] == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]


def normalise_messages(raw: list[Any], need_assistant: bool = True) -> list[Message]:
    """OpenAI- or ShareGPT-shaped messages -> the normalised form, checking each; raises MessageProblem.

    ``need_assistant``: a training row must have an assistant turn; a request to answer (serve) need not.
    """
    messages = [_normalise_one(index, item) for index, item in enumerate(raw)]
    _check_order(messages, need_assistant)
    return messages


def _cell_list(value: Any, name: str) -> list[Any]:
    # JSONL cells hold lists, CSV cells the list as a JSON string, Parquet cells numpy arrays of Arrow structs.
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = _from_arrow(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise _Bad(None, name, f"not valid JSON ({err.msg} at character {err.pos})") from None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Bad(None, name, "empty: expected a list of messages" if name == "messages" else "empty")
    if not isinstance(value, list):
        raise _Bad(None, name, f"expected a list, got {type(value).__name__}")
    if name == "messages" and not value:
        raise _Bad(None, name, "the conversation has no messages")
    return value


def _tool_list(value: Any) -> list[dict[str, Any]]:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return []
    tools = _cell_list(value, "tools")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _Bad(None, f"tools[{index}]", 'expected {"type": "function", "function": {"name": ..., ...}}')
        tools[index] = tool
    return tools


def _from_arrow(value: Any) -> Any:
    # An Arrow struct column has the union of every row's fields, None where a row has none, so in a Parquet
    # cell None means "absent" and is dropped (a JSON null inside struct-typed arguments cannot survive Parquet;
    # arguments stored as a JSON string keep theirs). In JSON data None is a real null and stays.
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _from_arrow(value.tolist())
    if isinstance(value, dict):
        return {str(k): _from_arrow(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_from_arrow(v) for v in value]
    return value


def _normalise_one(index: int, item: Any) -> Message:
    # Fields the form reads treat None as absent (``"content": null`` beside tool calls); the payloads it passes
    # on (tool-call arguments, tool schemas) keep their JSON nulls.
    if not isinstance(item, dict):
        raise _Bad(index, "message", f"expected an object with role and content, got {type(item).__name__}")
    if item.get("from") is not None or item.get("value") is not None:
        return _from_sharegpt(index, item)
    return _from_openai(index, item)


def _from_openai(index: int, item: dict[str, Any]) -> Message:
    role = item.get("role")
    if role not in OPENAI_ROLES:
        raise _Bad(index, "role", f"unknown role {role!r}; expected one of {', '.join(OPENAI_ROLES)}")
    content = _content(index, item.get("content"))
    message: Message = {"role": role, "content": content}
    if role == "assistant":
        calls = item.get("tool_calls") or []
        if not isinstance(calls, list):
            raise _Bad(index, "tool_calls", f"expected a list, got {type(calls).__name__}")
        message["tool_calls"] = [_openai_call(index, n, call) for n, call in enumerate(calls)]
        if not content and not message["tool_calls"]:
            raise _Bad(index, "content", "an assistant turn needs content or tool_calls; it has neither")
    elif role == "tool":
        for key in ("tool_call_id", "name"):
            if isinstance(item.get(key), str) and item[key]:
                message[key] = item[key]
    return message


def _openai_call(index: int, number: int, call: Any) -> dict[str, Any]:
    where = f"tool_calls[{number}]"
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _Bad(index, where, 'expected {"type": "function", "function": {"name": ..., "arguments": ...}}')
    function = call["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _Bad(index, f"{where}.function.name", "missing: a call names the function it calls")
    arguments = _arguments(index, f"{where}.function.arguments", function.get("arguments", {}))
    normalised = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if isinstance(call.get("id"), str) and call["id"]:
        normalised["id"] = call["id"]
    return normalised


def _arguments(index: int, where: str, value: Any) -> dict[str, Any]:
    # OpenAI sends arguments as a JSON string; many datasets store the object itself. Both become the object.
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as err:
            raise _Bad(index, where, f"not valid JSON ({err.msg} at character {err.pos}): {value[:60]!r}") from None
    if not isinstance(value, dict):
        raise _Bad(index, where, f"expected a JSON object of arguments, got {type(value).__name__}")
    return value


def _from_sharegpt(index: int, item: dict[str, Any]) -> Message:
    speaker = item.get("from")
    role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
    if role is None:
        raise _Bad(index, "from", f"unknown role {speaker!r}; expected one of {', '.join(SHAREGPT_ROLES)}")
    value = _content(index, item.get("value"), "value")
    if speaker != "function_call":
        if role == "assistant" and not value:
            raise _Bad(index, "value", "an assistant turn needs content or tool_calls; it has neither")
        return {"role": role, "content": value} | ({"tool_calls": []} if role == "assistant" else {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise _Bad(index, "value", f"a function_call is not valid JSON ({err.msg} at character {err.pos})") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls:
        raise _Bad(index, "value", "an assistant turn needs content or tool_calls; it has neither")
    return {"role": "assistant", "content": "", "tool_calls": [_sharegpt_call(index, c) for c in calls]}


def _sharegpt_call(index: int, call: Any) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
        raise _Bad(index, "value", 'a function_call needs {"name": ..., "arguments": {...}}')
    arguments = _arguments(index, "value.arguments", call.get("arguments", {}))
    return {"type": "function", "function": {"name": call["name"], "arguments": arguments}}


def _content(index: int, value: Any, name: str = "content") -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # OpenAI content parts: only text parts carry meaning here
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(value) or not all(isinstance(p, str) for p in parts):
            raise _Bad(index, name, "only text content parts ({type: text, text: ...}) are supported")
        return "".join(str(p) for p in parts).strip()
    if not isinstance(value, str):
        raise _Bad(index, name, f"expected text, got {type(value).__name__}")
    return value.strip()


def _check_order(messages: list[Message], need_assistant: bool = True) -> None:
    # A tool result answers a call made before it; ids are given to calls that have none, so results can name them.
    open_calls: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            for number, call in enumerate(message.get("tool_calls", [])):
                call.setdefault("id", f"call_{index}_{number}")
            open_calls = list(message.get("tool_calls", []))
        elif message["role"] == "tool":
            open_calls = _answer(index, message, open_calls)
        elif message["role"] == "user":
            open_calls = []
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise _Bad(None, "messages", "the conversation has no assistant turn: nothing to learn")


def _answer(index: int, message: Message, open_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not open_calls:
        raise _Bad(index, "role", "a tool result with no tool call before it")
    wanted = message.get("tool_call_id")
    match = next((c for c in open_calls if c["id"] == wanted), None) if wanted else open_calls[0]
    if match is None:
        known = ", ".join(repr(c["id"]) for c in open_calls)
        raise _Bad(index, "tool_call_id", f"{wanted!r} answers none of the open calls ({known})")
    message["tool_call_id"] = match["id"]
    message.setdefault("name", match["function"]["name"])
    return [c for c in open_calls if c is not match]
