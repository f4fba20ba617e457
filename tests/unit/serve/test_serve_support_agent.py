"""A trained run of examples/support-agent served to the openai client with ``tools=``: every assistant turn of
its eval conversations asked from the conversation before it, whole and streamed.

Training the example takes minutes on a CPU, so this runs on a run you already have:
TUNESMITH_SUPPORT_AGENT_RUN=runs/support-agent-... pytest tests/unit/serve/test_serve_support_agent.py -s
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from serving import running_server

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("TUNESMITH_SUPPORT_AGENT_RUN"), reason="set TUNESMITH_SUPPORT_AGENT_RUN"),
]


COMPARED = 16  # turns asked alone, whole and streamed


def _turns(run_dir: Path) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]:
    """(messages before, tools, the reference assistant message) for every assistant turn of the eval split."""
    from tunesmith.config import load_config
    from tunesmith.data.conversation_data import conversations_of, read_conversation_tables

    config = load_config(run_dir / "config.yaml", [])
    _, held_out = conversations_of(config.data, read_conversation_tables(config.data))
    turns = []
    for conversation in held_out:
        openai_shaped = [_openai(m) for m in conversation.messages]
        for index, message in enumerate(conversation.messages):
            if message["role"] == "assistant":
                turns.append((openai_shaped[:index], conversation.tools, message))
    return turns


def _openai(message: dict[str, Any]) -> dict[str, Any]:
    # The wire shape: arguments as a JSON string.
    calls = [
        {"id": c["id"], "type": "function", "function": {**c["function"], "arguments": json.dumps(arguments)}}
        for c in message.get("tool_calls") or []
        for arguments in [c["function"]["arguments"]]
    ]
    return {**message, "tool_calls": calls} if calls else {k: v for k, v in message.items() if k != "tool_calls"}


def _calls(message: Any) -> list[tuple[str, Any]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def test_the_support_agent_answers_each_turn_with_calls_or_text() -> None:
    run_dir = Path(os.environ["TUNESMITH_SUPPORT_AGENT_RUN"])
    turns = _turns(run_dir)
    with running_server([run_dir]) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=600)

        def ask(turn: tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]], stream: bool) -> Any:
            messages, tools, _ = turn
            kwargs: dict[str, Any] = {"model": run_dir.name, "messages": messages, "tools": tools, "max_tokens": 80}
            if not stream:
                return client.chat.completions.create(**kwargs).choices[0]
            with client.chat.completions.stream(**kwargs) as events:
                return events.get_final_completion().choices[0]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda turn: ask(turn, stream=False), turns))
        # bf16 answers depend on what else is in the batch: compare streamed with whole one request at a time.
        pairs = [(ask(turn, stream=False), ask(turn, stream=True)) for turn in turns[:COMPARED]]
    decided = exact = calls = 0
    for (_, _, reference), whole in zip(turns, answers, strict=True):
        got = _calls(whole.message)
        assert (whole.finish_reason == "tool_calls") == bool(got)
        wanted = [(c["function"]["name"], c["function"]["arguments"]) for c in reference.get("tool_calls") or []]
        decided += bool(wanted) == bool(got)
        calls += bool(wanted)
        exact += bool(wanted) and got == wanted
    print(f"{len(turns)} assistant turns: call/no-call {decided / len(turns):.3f}, exact calls {exact}/{calls}")
    called = sum(whole.finish_reason == "tool_calls" for whole, _ in pairs)
    print(f"{len(pairs)} turns asked alone, whole and streamed: {called} answered with calls")
    for whole, streamed in pairs:  # the streamed deltas, put together by the openai client, are the whole answer
        assert (streamed.finish_reason, _calls(streamed.message)) == (whole.finish_reason, _calls(whole.message))
        assert (streamed.message.content or None) == (whole.message.content or None)
