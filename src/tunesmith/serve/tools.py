"""Tool calling over the OpenAI API: a request's ``tools``, ``tool_choice`` and tool messages checked, and the
model's answer read back as ``tool_calls``, whole or streamed as OpenAI streams them.

Rendering and reading are training's own (``data.chat_format``): the request's messages are put in the one
normalised conversation form (``data.conversation.normalise_messages``, the reader training data goes through),
rendered with ``render_conversation``-style prefixes, and the answer is split by ``parse_tool_calls``. A call
block that is not a JSON call stays in the text, so a bad call is an answer, never a server error.

``tool_choice``: ``none`` renders no tools (and reads no calls); ``auto`` (the default with tools) lists them;
``required`` and a named function also list them and, in the fallback format, start the answer with the call's
opening (``<tool_call>`` and, for a named one, ``{"name": "NAME"``), so the model writes a call of that function.
A template with its own tool format is not forced (its call syntax is its own): the choice is only checked.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Message, parse_tool_calls
from tunesmith.data.conversation import MessageProblem, normalise_messages

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the OpenAI API's rule for function names
ARGUMENT_CHUNK = 16  # characters of arguments per streamed delta


class RequestProblem(Exception):
    """A request field that cannot be served: answered 400 with ``param`` naming it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class ToolPlan:
    """What a request asks of tools: the ones the prompt lists, and the text the answer is forced to start with."""

    offered: list[dict[str, Any]] = field(default_factory=list)
    prefix: str = ""

    @property
    def reads_calls(self) -> bool:
        """Whether the answer is read for tool calls (only when tools were offered)."""
        return bool(self.offered)


def check_tools(raw: list[Any] | None) -> list[dict[str, Any]]:
    """The request's ``tools`` as OpenAI function tools, each checked; raises RequestProblem naming the field."""
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, tool in enumerate(raw or []):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise RequestProblem(where, 'expected {"type": "function", "function": {"name": ..., "parameters": {...}}}')
        if tool.get("type", "function") != "function":
            raise RequestProblem(f"{where}.type", f"only function tools are supported, got {tool.get('type')!r}")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise RequestProblem(f"{where}.function", "missing: a tool is an object with the function's schema")
        name = _function_name(function, where)
        if name in names:
            raise RequestProblem(f"{where}.function.name", f"{name!r} is listed twice")
        names.add(name)
        _check_schema(function, where)
        tools.append({"type": "function", "function": function})
    return tools


def _function_name(function: dict[str, Any], where: str) -> str:
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise RequestProblem(f"{where}.function.name", "missing: every tool names its function")
    if not FUNCTION_NAME.match(name):
        raise RequestProblem(f"{where}.function.name", f"{name!r}: use 1-64 letters, digits, _ or -")
    return name


def _check_schema(function: dict[str, Any], where: str) -> None:
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise RequestProblem(f"{where}.function.description", f"expected text, got {type(description).__name__}")
    parameters = function.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise RequestProblem(f"{where}.function.parameters", "expected a JSON Schema object")
    if parameters.get("type", "object") != "object":
        raise RequestProblem(f"{where}.function.parameters.type", "the arguments of a call are an object")


def plan_tools(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None, force: bool) -> ToolPlan:
    """What ``tool_choice`` makes of ``tools``; ``force``: the template uses the fallback call format."""
    if choice is None:
        choice = "auto" if tools else "none"
    if choice == "none":
        return ToolPlan()
    if isinstance(choice, str):
        if choice not in ("auto", "required"):
            raise RequestProblem("tool_choice", f"{choice!r}: expected none, auto, required or a named function")
        if not tools:
            raise RequestProblem("tool_choice", f"{choice!r} needs tools, and the request lists none")
        return ToolPlan(tools, f"{TOOL_CALL_OPEN}\n" if choice == "required" and force else "")
    name = _chosen_name(choice)
    known = [t["function"]["name"] for t in tools]
    if name not in known:
        listed = ", ".join(map(repr, known)) or "none"
        raise RequestProblem("tool_choice.function.name", f"{name!r} is not one of the request's tools ({listed})")
    return ToolPlan(tools, f'{TOOL_CALL_OPEN}\n{{"name": {json.dumps(name, ensure_ascii=False)}' if force else "")


def _chosen_name(choice: Any) -> str:
    if not isinstance(choice, dict) or choice.get("type", "function") != "function":
        raise RequestProblem("tool_choice", 'expected none, auto, required or {"type": "function", "function": ...}')
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise RequestProblem("tool_choice.function.name", "missing: a named tool_choice names the function")
    return name


def request_messages(raw: list[dict[str, Any]]) -> list[Message]:
    """The request's messages in the normalised conversation form; raises RequestProblem naming the field."""
    shaped = []
    for index, message in enumerate(raw):
        role = "system" if message["role"] == "developer" else message["role"]
        if message.get("content") is None and role != "assistant":
            raise RequestProblem(f"messages[{index}].content", f"missing: a {role} message has content")
        if role == "tool" and not message.get("tool_call_id"):
            raise RequestProblem(f"messages[{index}].tool_call_id", "missing: a tool message names the call it answers")
        shaped.append({**message, "role": role})
    try:
        return normalise_messages(shaped, need_assistant=False)
    except MessageProblem as bad:
        where = "messages" if bad.index is None else f"messages[{bad.index}].{bad.field}"
        raise RequestProblem(where, bad.problem) from None


def uses_tools(raw: list[dict[str, Any]], plan: ToolPlan) -> bool:
    """Whether a request involves tools at all: offered, or calls and results in its history."""
    return plan.reads_calls or any(m["role"] == "tool" or m.get("tool_calls") for m in raw)


def reply_message(text: str) -> tuple[dict[str, Any], bool]:
    """A whole answer as an OpenAI assistant message, and whether it calls tools."""
    parsed = parse_tool_calls(text)
    if not parsed.tool_calls:
        return {"role": "assistant", "content": parsed.content}, False
    calls = [_openai_call(call) for call in parsed.tool_calls]
    return {"role": "assistant", "content": parsed.content or None, "tool_calls": calls}, True


def _openai_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    arguments = json.dumps(function["arguments"], ensure_ascii=False)  # the OpenAI API sends them as a string
    named = {"name": function["name"], "arguments": arguments}
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": named}


class ToolStream:
    """Streamed text -> OpenAI deltas: text as ``content``, each finished call as ``tool_calls`` deltas.

    A call is sent once its block closes and reads as JSON (its id, type and name first, then the arguments in
    pieces, as the OpenAI API streams them); until then the block is held back, and a block that does not read
    as a call goes out as text. The content joins up to exactly the non-streamed answer's (``reply_message``).
    """

    def __init__(self) -> None:
        self.pending, self.inside, self.calls = "", False, 0
        self._started, self._held = False, ""  # content sent yet; whitespace held until more text follows

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The deltas that ``text``, appended to the answer so far, settles."""
        self.pending += text
        deltas: list[dict[str, Any]] = []
        while True:
            if not self.inside:
                at = self.pending.find(TOOL_CALL_OPEN)
                if at < 0:
                    keep = _open_tail(self.pending)
                    deltas += self._content(self.pending[: len(self.pending) - keep])
                    self.pending = self.pending[len(self.pending) - keep :]
                    return deltas
                deltas += self._content(self.pending[:at])
                self.pending, self.inside = self.pending[at + len(TOOL_CALL_OPEN) :], True
            else:
                end = self.pending.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return deltas
                block = TOOL_CALL_OPEN + self.pending[:end] + TOOL_CALL_CLOSE
                self.pending, self.inside = self.pending[end + len(TOOL_CALL_CLOSE) :], False
                deltas += self._block(block)

    def close(self) -> list[dict[str, Any]]:
        """The deltas of what is left when the answer ends (an unclosed call block is text)."""
        rest = (TOOL_CALL_OPEN if self.inside else "") + self.pending
        self.pending, self.inside = "", False
        return self._content(rest)

    def _block(self, block: str) -> list[dict[str, Any]]:
        parsed = parse_tool_calls(block)
        if not parsed.tool_calls:
            return self._content(block)
        call = _openai_call(parsed.tool_calls[0])
        index, self.calls = self.calls, self.calls + 1
        head = {"index": index, "id": call["id"], "type": "function"}
        deltas = [{"tool_calls": [head | {"function": {"name": call["function"]["name"], "arguments": ""}}]}]
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), ARGUMENT_CHUNK):
            piece = arguments[start : start + ARGUMENT_CHUNK]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return deltas

    def _content(self, text: str) -> list[dict[str, Any]]:
        # The whole answer's content is stripped: drop leading whitespace, hold trailing until more text follows.
        if not self._started:
            text = text.lstrip()
        body = text.rstrip()
        if not body:
            self._held += text if self._started else ""
            return []
        sent, self._held, self._started = self._held + body, text[len(body) :], True
        return [{"content": sent}]


def _open_tail(text: str) -> int:
    # The longest tail of text that may be the start of a call's opening marker.
    return max((k for k in range(1, len(TOOL_CALL_OPEN)) if text.endswith(TOOL_CALL_OPEN[:k])), default=0)
