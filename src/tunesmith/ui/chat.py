"""Chat with a completed run and its base model side by side (classification: the predicted label of each).

A causal LM that reads conversations (``data.messages``) or renders its rows through a chat template keeps a
history: each message goes to the model with the turns before it, rendered by the conversation renderer that
training used (``data.turns.conversation_renderer``: the template, or tunesmith's tool fallback), with the
tools the person offers. A reply's ``<tool_call>`` blocks are read back by ``data.chat_format.parse_tool_calls``
into calls, and the person's answer to a call goes back as a ``role: tool`` message. The history lives in the
page (it is posted with every message and checked like training data), so the server keeps no chat state.
Other runs (classification, seq2seq, a plain prompt template) answer one message at a time, as trained.

The model of the last run chatted with stays loaded; one lock serialises generation, which is what a laptop
CPU can do anyway.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.conversation import Message
from tunesmith.errors import TunesmithError

MAX_MESSAGE_CHARS = 4000
MAX_HISTORY_CHARS = 200_000  # the posted history and tools, as JSON
MAX_HISTORY_MESSAGES = 100
_WHERE = re.compile(r"^data\.(messages|tools): the chat row 1( message (\d+))?: ")


@dataclass
class Reply:
    """What the tuned model and its base answered to one message (no history)."""

    task: str
    message: str
    tuned: str
    base: str


@dataclass
class Exchange:
    """One step of a chat with history: the history with the tuned model's reply, and the base's reply to it."""

    history: list[Message]  # normalised messages, the tuned model's new assistant turn last (when it said anything)
    tuned: Message
    base: Message  # the base model's answer to the same history (not part of it)
    invalid_calls: list[str] = field(default_factory=list)  # <tool_call> blocks of the tuned reply that were not JSON
    prompt_tokens: int = 0

    @property
    def kept(self) -> bool:
        """Whether the tuned reply joined the history (an empty answer cannot: it is no turn)."""
        return bool(self.tuned["content"] or self.tuned["tool_calls"])

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The calls of the last turn that still wait for a result."""
        return pending_calls(self.history)


def pending_calls(history: list[Message]) -> list[dict[str, Any]]:
    """The tool calls of the history's last turn, when it is an assistant's (they wait for results)."""
    last = history[-1] if history else {}
    return list(last.get("tool_calls") or []) if last.get("role") == "assistant" else []


class ChatModels:
    """The loaded model of one run at a time, reloaded when another run is asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: Any = None

    def keeps_history(self, run_dir: Path) -> bool:
        """Whether the run chats with a history (a conversation run, or a causal LM with a chat template)."""
        from tunesmith.data.forms import form_for
        from tunesmith.data.tokenize import uses_chat_template

        with self._lock:
            run = self._load(run_dir)
            form = form_for(run.config)
            return form.serves_chat and (form.turns or uses_chat_template(run.tokenizer, run.config.data))

    def reply(self, run_dir: Path, message: str, max_new_tokens: int) -> Reply:
        """Answer ``message`` with the run's tuned model and its base (or classify it with both)."""
        from tunesmith.data.forms import form_for

        message = _checked_text(message, "message")
        with self._lock:
            run = self._load(run_dir)
            if form_for(run.config).label_head:
                return self._classify(run, message)
            return self._generate(run, message, max_new_tokens)

    def converse(
        self, run_dir: Path, history: list[Message], tools: list[dict[str, Any]], max_new_tokens: int
    ) -> Exchange:
        """The tuned model's next turn after ``history`` (checked), and the base model's answer to the same."""
        from tunesmith.data.chat_format import parse_tool_calls
        from tunesmith.data.conversation import with_system
        from tunesmith.data.turns import conversation_renderer
        from tunesmith.models.run_model import base_model_view

        with self._lock:
            run = self._load(run_dir)
            renderer = conversation_renderer(run.tokenizer, run.config.data)
            shown = with_system(history, run.config.data.system)
            text = renderer.text(renderer.template_messages(shown, tools), tools, generation_prompt=True)
            ids = run.tokenizer(text, add_special_tokens=False)["input_ids"]
            _check_context(run.model, len(ids), max_new_tokens)
            tuned = parse_tool_calls(_complete(run, run.model, text, max_new_tokens))
            with base_model_view(run) as base_model:
                base = parse_tool_calls(_complete(run, base_model, text, max_new_tokens))
        reply = _assistant(tuned.content, tuned.tool_calls)
        exchange = Exchange(history, reply, _assistant(base.content, base.tool_calls), tuned.invalid, len(ids))
        if exchange.kept:  # normalised like the rest: the calls get their ids, which the results will name
            exchange.history = checked_history([*history, reply], tools)
            exchange.tuned = exchange.history[-1]
        return exchange

    def _load(self, run_dir: Path) -> Any:
        from tunesmith.models.run_model import load_run_model

        if self._run is None or self._run.run_dir != run_dir:
            self._run = None  # free the previous model before loading the next
            self._run = load_run_model(run_dir)
        return self._run

    @staticmethod
    def _generate(run: Any, message: str, max_new_tokens: int) -> Reply:
        from tunesmith.evaluate.generation import Decoding, generate
        from tunesmith.models.run_model import base_model_view

        decoding = Decoding(max_new_tokens=max_new_tokens)
        (tuned,) = generate(run.model, run.tokenizer, run.config, [message], decoding, 1, run.precision)
        with base_model_view(run) as base_model:
            (base,) = generate(base_model, run.tokenizer, run.config, [message], decoding, 1, run.precision)
        return Reply(run.config.task, message, tuned, base)

    @staticmethod
    def _classify(run: Any, message: str) -> Reply:
        from tunesmith.evaluate.classify import predict_texts
        from tunesmith.models.run_model import base_model_view

        (tuned,) = predict_texts(run, [message])
        with base_model_view(run) as base_model:
            (base,) = predict_texts(dataclasses.replace(run, model=base_model), [message])
        return Reply(
            run.config.task,
            message,
            f"{tuned.label} (p={tuned.probability:.3f})",
            f"{base.label} (p={base.probability:.3f}, untrained head)",
        )


def _assistant(content: str, calls: list[dict[str, Any]]) -> Message:
    return {"role": "assistant", "content": content, "tool_calls": calls}


def _complete(run: Any, model: Any, text: str, max_new_tokens: int) -> str:
    """Greedy continuation of the rendered ``text``: the built-in engine where it runs the model, else generate."""
    import torch

    from tunesmith.evaluate.generation import Decoding, engine_answers, generate_kwargs
    from tunesmith.models.precision import autocast

    decoding = Decoding(max_new_tokens=max_new_tokens)
    answers = engine_answers(model, run.tokenizer, [text], decoding, 1, run.precision)
    if answers is not None:
        return answers[0]
    batch = run.tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode(), autocast(run.precision):
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        generated = model.generate(**inputs, **generate_kwargs(run.tokenizer, decoding))
    return str(run.tokenizer.decode(generated[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


def _check_context(model: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    context = getattr(config, "max_position_embeddings", None)
    if context is not None and prompt_tokens + max_new_tokens > context:
        raise TunesmithError(
            f"history: {prompt_tokens} tokens and {max_new_tokens} new ones exceed the model's {context}",
            hint="press Clear to start a new conversation",
        )


def _checked_text(text: str, name: str) -> str:
    text = text.strip()
    if not text:
        raise TunesmithError(f"{name}: empty; type something to send")
    if len(text) > MAX_MESSAGE_CHARS:
        raise TunesmithError(f"{name}: {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}")
    return text


def parse_history(text: str) -> list[Message]:
    """The posted history (a JSON list of messages; empty: a new chat), not yet checked."""
    return _json_list(text, "history")


def parse_tools(text: str) -> list[dict[str, Any]]:
    """The posted tool schemas (a JSON list of OpenAI function schemas, or empty), checked like data.tools."""
    tools = _json_list(text, "tools")
    if tools:
        checked_history([{"role": "user", "content": "-"}, _assistant("-", [])], tools)
    return tools


def _json_list(text: str, name: str) -> list[Any]:
    if len(text) > MAX_HISTORY_CHARS:
        raise TunesmithError(f"{name}: {len(text)} characters; the limit is {MAX_HISTORY_CHARS} (press Clear)")
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise TunesmithError(f"{name}: not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, list):
        raise TunesmithError(f"{name}: expected a JSON list, got {type(value).__name__}")
    return value


def add_turns(history: list[Message], results: list[str], message: str) -> list[Message]:
    """``history`` with the person's tool results (one per pending call, in order) and message appended."""
    pending = pending_calls(history)
    results = [result.strip() for result in results]
    if any(results) and not all(results):
        raise TunesmithError(f"tool_result: give a result for each of the {len(pending)} calls")
    turns = list(history)
    if any(results):
        if len(results) != len(pending):
            raise TunesmithError(f"tool_result: {len(results)} results for {len(pending)} pending calls")
        for call, result in zip(pending, results, strict=True):
            _checked_text(result, "tool_result")
            turns.append({"role": "tool", "tool_call_id": call.get("id"), "content": result})
    if message.strip():
        turns.append({"role": "user", "content": _checked_text(message, "message")})
    if len(turns) == len(history):
        raise TunesmithError("message: empty; type something to send" + (" or a tool result" if pending else ""))
    if len(turns) > MAX_HISTORY_MESSAGES:
        raise TunesmithError(f"history: {len(turns)} messages; the limit is {MAX_HISTORY_MESSAGES} (press Clear)")
    return turns


def checked_history(messages: list[Any], tools: list[dict[str, Any]]) -> list[Message]:
    """Messages and tools checked and normalised exactly as a training row is; a problem is one line.

    The data layer wants an assistant turn in a conversation; the reply still to come stands in for it when the
    history has none yet (a first message), and is dropped again.
    """
    import pandas as pd

    from tunesmith.data.conversation import read_conversations

    stand_in = not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)
    rows = [*messages, _assistant("-", [])] if stand_in else list(messages)
    frame = pd.DataFrame({"messages": [rows], "tools": [tools]})
    try:
        (conversation,) = read_conversations(frame, "messages", "tools", Path("the chat"))
    except TunesmithError as err:
        raise TunesmithError(_WHERE.sub(_where, str(err.message)), hint=err.hint) from None
    return conversation.messages[:-1] if stand_in else conversation.messages


def _where(match: re.Match[str]) -> str:
    if match.group(1) == "tools":
        return "tools: "
    return f"history: message {match.group(3)}: " if match.group(3) else "history: "


def run_tools(run_dir: Path) -> list[dict[str, Any]]:
    """The tool schemas a conversation run's training data offers (none for other runs, or when unreadable)."""
    from tunesmith.data.conversation import read_conversations
    from tunesmith.data.tables import read_table
    from tunesmith.rundir import read_run
    from tunesmith.ui.conversations import tool_schemas

    try:
        config, _ = read_run(run_dir)
        data = config.data
        if data.messages is None or data.tools is None:
            return []
        return tool_schemas(
            read_conversations(read_table(data.train, "data.train"), data.messages, data.tools, data.train)
        )
    except TunesmithError:
        return []
