"""Tool calls over a real server, driven with the official openai client's ``tools=``.

The served model writes a fixed call (see ``tool_serving``): the prompt rendering, generation, parsing and
streaming under test are the real ones.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from openai import OpenAI
from serving import Running
from tool_serving import ANSWER, LOOKUP, TOOLS

from tunesmith.data.chat_format import parse_tool_calls
from tunesmith.data.conversation import normalise_messages
from tunesmith.data.turns import conversation_renderer
from tunesmith.serve.tools import ToolStream, reply_message

ASK = [{"role": "user", "content": "Where is my order A1?"}]
ARGUMENTS = {"order_id": "A1"}
CALLED = json.dumps(ARGUMENTS)
NOT_LISTED = {"type": "function", "function": {"name": "refund"}}


@pytest.fixture(scope="module")
def client(tool_server: Running) -> OpenAI:
    return OpenAI(base_url=f"{tool_server.url}/v1", api_key="none", max_retries=0, timeout=60)


def _model(server: Running) -> str:
    return next(iter(server.runs))


def _route(server: Running) -> Any:
    return server.app.state.pool.routes[_model(server)]  # type: ignore[attr-defined]


def test_a_call_comes_back_as_tool_calls(client: OpenAI, tool_server: Running) -> None:
    reply = client.chat.completions.create(model=_model(tool_server), messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "lookup_order"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == ARGUMENTS  # type: ignore[union-attr]


def test_the_prompt_is_rendered_as_training_renders_the_turn(client: OpenAI, tool_server: Running) -> None:
    # A whole exchange: the call, its result, and the turn after it, as an OpenAI client sends them.
    history: list[dict[str, Any]] = [
        *ASK,
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": CALLED}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
    ]
    reply = client.chat.completions.create(model=_model(tool_server), messages=history, tools=TOOLS)  # type: ignore[arg-type]
    route = _route(tool_server)
    renderer = conversation_renderer(route.tokenizer, route.data)
    # Training's text before an assistant turn: the conversation so far, tools listed, generation prompt on.
    messages = normalise_messages([*history, {"role": "assistant", "content": "It has shipped."}])
    before = renderer.text(renderer.template_messages(messages[:3], TOOLS), TOOLS, generation_prompt=True)
    whole = renderer.text(renderer.template_messages(messages, TOOLS), TOOLS, generation_prompt=False)
    assert whole.startswith(before) and "<tool_response>" in before and "<tools>" in before
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(route.tokenizer(before, add_special_tokens=False)["input_ids"])
    assert reply.choices[0].finish_reason == "tool_calls"


def test_streamed_calls_accumulate_in_the_openai_client(client: OpenAI, tool_server: Running) -> None:
    model = _model(tool_server)
    with client.chat.completions.stream(model=model, messages=ASK, tools=TOOLS) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    whole = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    streamed, plain = final.choices[0], whole.choices[0]
    assert streamed.finish_reason == plain.finish_reason == "tool_calls"
    assert streamed.message.content == plain.message.content == "Checking."
    [call] = streamed.message.tool_calls or []
    assert call.function.name == "lookup_order" and json.loads(call.function.arguments) == ARGUMENTS  # type: ignore[union-attr]


def test_stream_chunks_are_shaped_as_openai_sends_them(client: OpenAI, tool_server: Running) -> None:
    stream = client.chat.completions.create(model=_model(tool_server), messages=ASK, tools=TOOLS, stream=True)  # type: ignore[arg-type]
    chunks = [chunk.choices[0] for chunk in stream if chunk.choices]
    pieces = [piece for c in chunks for piece in c.delta.tool_calls or []]
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0 and first.id and first.type == "function" and first.function.name == "lookup_order"  # type: ignore[union-attr]
    assert len(rest) >= 2 and all(p.index == 0 and p.id is None for p in rest)
    arguments = "".join((p.function.arguments or "") for p in pieces if p.function)
    assert json.loads(arguments) == ARGUMENTS
    assert "".join(c.delta.content or "" for c in chunks) == "Checking."
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]


def test_tool_choice_none_offers_no_tools_and_reads_no_calls(client: OpenAI, tool_server: Running) -> None:
    model = _model(tool_server)
    offered = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    reply = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="none")  # type: ignore[arg-type]
    assert reply.choices[0].message.content == ANSWER and not reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage and offered.usage and reply.usage.prompt_tokens < offered.usage.prompt_tokens  # no tool list


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_tool_choice_forces_that_call(client: OpenAI, tool_server: Running, stream: bool) -> None:
    choice = {"type": "function", "function": {"name": "lookup_order"}}
    reply = _final(client, tool_server, stream, tool_choice=choice)
    assert reply.finish_reason == "tool_calls" and reply.message.content is None  # the call opens the answer
    [call] = reply.message.tool_calls or []
    assert call.function.name == "lookup_order" and json.loads(call.function.arguments) == ARGUMENTS  # type: ignore[union-attr]
    required = _final(client, tool_server, stream, tool_choice="required")
    assert [c.function.name for c in required.message.tool_calls or []] == ["lookup_order"]  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_that_is_not_json_comes_back_as_text(client: OpenAI, tool_server: Running, stream: bool) -> None:
    reply = _final(client, tool_server, stream, tool_choice={"type": "function", "function": {"name": "broken"}})
    assert reply.finish_reason == "stop" and not reply.message.tool_calls
    assert reply.message.content == '<tool_call>\n{"name": "broken", "arguments": {oops}\n</tool_call>'


def _final(client: OpenAI, server: Running, stream: bool, **extra: Any) -> Any:
    model = _model(server)
    if not stream:
        return client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, **extra).choices[0]  # type: ignore[arg-type]
    with client.chat.completions.stream(model=model, messages=ASK, tools=TOOLS, **extra) as events:  # type: ignore[arg-type]
        return events.get_final_completion().choices[0]


def _call(call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "lookup_order", "arguments": "{}"}}],
    }


BAD = [
    ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name"),
    ({"tools": [LOOKUP, {"function": {"name": "x", "parameters": []}}]}, "tools[1].function.parameters"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [LOOKUP, LOOKUP]}, "tools[1].function.name"),
    ({"tools": "lookup_order"}, "tools"),
    ({"tools": TOOLS, "tool_choice": NOT_LISTED}, "tool_choice.function.name"),
    ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    (
        {"messages": [*ASK, _call("c1"), {"role": "tool", "tool_call_id": "c9", "content": ""}]},
        "messages[2].tool_call_id",
    ),
    ({"messages": [*ASK, {"role": "tool", "tool_call_id": "c1", "content": "x"}]}, "messages[1].role"),
    ({"messages": [*ASK, _call("c1"), {"role": "tool", "content": "x"}]}, "messages[2].tool_call_id"),
    (
        {"messages": [*ASK, {**_call("c1"), "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]},
        "messages[1].tool_calls[0].function.arguments",
    ),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
]


@pytest.mark.parametrize(("extra", "param"), BAD)
def test_bad_tool_requests_are_400_naming_the_field(tool_server: Running, extra: dict[str, Any], param: str) -> None:
    body = {"model": _model(tool_server), "messages": ASK, **extra}
    reply = httpx.post(f"{tool_server.url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"].startswith(param), error


ANSWERS = [
    ANSWER,
    "Sure.",
    "  Let me look.  \n\n<tool_call>\n" + json.dumps({"name": "a", "arguments": {"x": [1, 2]}}) + "\n</tool_call>\n",
    '<tool_call>{"name": "a", "arguments": "{\\"k\\": 1}"}</tool_call> then <tool_call>{oops}</tool_call> done',
    'one <tool_call>{"name": "a"}</tool_call>\n two <tool_call>{"name": "b", "arguments": {}}</tool_call>',
    'an unclosed <tool_call>\n{"name": "a"',
    "text that ends in <tool_",
    "<tool_call>[1, 2]</tool_call>",
]


@pytest.mark.parametrize("text", ANSWERS)
def test_streamed_deltas_join_to_the_whole_answer(text: str) -> None:
    whole, called = reply_message(text)
    for seed in range(5):
        stream, rng, at, deltas = ToolStream(), random.Random(seed), 0, []
        while at < len(text):
            step = rng.randint(1, 6)
            deltas += stream.feed(text[at : at + step])
            at += step
        deltas += stream.close()
        content = "".join(d.get("content", "") for d in deltas)
        assert content == (whole["content"] or ""), (seed, deltas)
        calls: dict[int, dict[str, str]] = {}
        for piece in (p for d in deltas for p in d.get("tool_calls", [])):
            slot = calls.setdefault(piece["index"], {"name": "", "arguments": ""})
            slot["name"] += piece["function"].get("name", "")
            slot["arguments"] += piece["function"]["arguments"]
        expected = [c["function"] for c in whole.get("tool_calls", [])]
        assert [calls[i] for i in sorted(calls)] == expected
        assert called == bool(calls) == bool(parse_tool_calls(text).tool_calls)
