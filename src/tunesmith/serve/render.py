"""Requests -> the exact token ids the model reads, rendered as ``tunesmith generate`` renders a prompt."""

from __future__ import annotations

from typing import Any

from tunesmith.data.chat_format import ChatRenderer, Message
from tunesmith.data.conversation import with_system
from tunesmith.data.tokenize import prompt_text, uses_chat_template
from tunesmith.data.turns import conversation_renderer
from tunesmith.serve.pool import Route


def chat_prompt(route: Route, messages: list[dict[str, str]]) -> str:
    """The text the model reads for a conversation; the run's ``data.system`` applies when none is given."""
    tokenizer, data = route.tokenizer, route.data
    if not route.form.serves_chat:
        # Encoder-decoder runs were tuned on a bare source text: they read the user turns as is.
        return "\n\n".join(m["content"] for m in messages if m["role"] == "user")
    system = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    if not uses_chat_template(tokenizer, data):
        body = "\n\n".join(m["content"] for m in messages if m["role"] not in ("system", "developer"))
        with_system = data.model_copy(update={"system": "\n\n".join(system)}) if system else data
        return prompt_text(tokenizer, with_system, body)
    turns: list[dict[str, Any]] = [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]} for m in messages
    ]
    if not system and data.system:
        turns.insert(0, {"role": "system", "content": data.system})
    return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))


def renderer(route: Route) -> ChatRenderer:
    """The route's conversation renderer, made once (finding out whether its template knows tools renders probes)."""
    if route.renderer is None:
        route.renderer = conversation_renderer(route.tokenizer, route.data)
    return route.renderer


def conversation_prompt(route: Route, messages: list[Message], tools: list[dict[str, Any]]) -> str:
    """The text the model reads before answering the conversation, as training and per-turn eval render it.

    ``messages`` are normalised (``serve.tools.request_messages``); the run's ``data.system`` applies when they
    bring no system message; ``tools`` are listed the way the template (or the fallback) lists them.
    """
    chat = renderer(route)
    shaped = chat.template_messages(with_system(messages, route.data.system), tools)
    return chat.text(shaped, tools, generation_prompt=True)


def encode(route: Route, text: str, chat: bool) -> list[int]:
    """Token ids: a rendered chat prompt carries its own special tokens; a raw prompt gets the tokenizer's."""
    special = not (chat and route.form.serves_chat)
    return list(route.tokenizer(text, add_special_tokens=special)["input_ids"])
