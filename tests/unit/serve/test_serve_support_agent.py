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

        def ask(turn: tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]) -> tuple[Any, Any]:
            messages, tools, _ = turn
            kwargs: dict[str, Any] = {"model": run_dir.name, "messages": messages, "tools": tools, "max_tokens": 80}
            whole = client.chat.completions.create(**kwargs).choices[0]
            with client.chat.completions.stream(**kwargs) as stream:
                streamed = stream.get_final_completion().choices[0]
            return whole, streamed

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, turns))
    decided = exact = calls = 0
    differ = []
    for (_, _, reference), (whole, streamed) in zip(turns, answers, strict=True):
        got = _calls(whole.message)
        same = (streamed.finish_reason, _calls(streamed.message)) == (whole.finish_reason, got)
        if not same or (streamed.message.content or None) != (whole.message.content or None):
            differ.append((whole, streamed))
        assert (whole.finish_reason == "tool_calls") == bool(got)
        wanted = [(c["function"]["name"], c["function"]["arguments"]) for c in reference.get("tool_calls") or []]
        decided += bool(wanted) == bool(got)
        calls += bool(wanted)
        exact += bool(wanted) and got == wanted
    print(f"{len(turns)} assistant turns: call/no-call {decided / len(turns):.3f}, exact calls {exact}/{calls}")
    assert not differ, differ[:2]  # streamed answers put together equal the whole ones
