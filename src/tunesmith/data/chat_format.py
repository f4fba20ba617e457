"""Render a conversation as the model reads it, tools and tool calls included, and read tool calls back out.

Training, eval, serve and export all render through ``render_conversation`` and parse replies with
``parse_tool_calls``, so a model reads and writes tool calls the same way everywhere.

Two paths:

* **Native**: the tokenizer's chat template knows tools (``supports_tools``: a probe rendered with a tool, a
  call and a result shows all three). Messages go to ``apply_chat_template`` in the OpenAI shape with
  ``tools=``, the arguments as objects (what Hugging Face templates expect).
* **Fallback**, for any template (SmolLM2's has no tool support) and for text-only models: only plain
  ``role``/``content`` messages reach the template.

  - The tools are listed in the system turn (appended to the conversation's system message, or a system
    message of their own): ``TOOLS_PREAMBLE``, then one JSON schema per line between ``<tools>`` and
    ``</tools>``.
  - An assistant call is its text (if any), then per call a JSON object ``{"name": ..., "arguments": {...}}``
    between ``<tool_call>`` and ``</tool_call>`` on their own lines.
  - Tool results become a user turn: each result between ``<tool_response>`` and ``</tool_response>``;
    consecutive results share one turn, so templates that require user/assistant alternation accept it.

Without a chat template (none, or ``data.chat_template: off``), ``PLAIN_CHAT_TEMPLATE`` renders the turns
as ``User: ...`` / ``Assistant: ...`` lines, each assistant turn ending with the EOS token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, Any]

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOLS_OPEN, TOOLS_CLOSE = "<tools>", "</tools>"
TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to help with the request. Their JSON schemas:\n"
    f"{TOOLS_OPEN}\n{{schemas}}\n{TOOLS_CLOSE}\n\n"
    f'To call a function, answer with one JSON object per call, {{"name": ..., "arguments": {{...}}}}, '
    f"between {TOOL_CALL_OPEN} and {TOOL_CALL_CLOSE}."
)
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ message['role'] | capitalize + ': ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)
_PROBE_TOOL, _PROBE_RESULT = "tunesmith_probe_tool", "tunesmith_probe_result"
_CALL_PATTERN = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class ChatRenderer:
    """How one tokenizer renders conversations: its template (or the plain one) and whether tools are native."""

    tokenizer: Any
    template: str
    native_tools: bool

    def text(self, messages: list[Message], tools: list[dict[str, Any]] | None, generation_prompt: bool) -> str:
        """The text of ``messages`` (already in this renderer's shape, see ``template_messages``)."""
        if not messages:
            return ""
        kwargs: dict[str, Any] = {"tools": tools} if self.native_tools and tools else {}
        return str(
            self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.template,
                tokenize=False,
                add_generation_prompt=generation_prompt,
                **kwargs,
            )
        )

    def template_messages(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> list[Message]:
        """Normalised messages in the shape this template reads (native: as they are; fallback: plain text)."""
        return [dict(m) for m in messages] if self.native_tools else fallback_messages(messages, tools or [])


def chat_renderer(tokenizer: PreTrainedTokenizerBase, use_template: bool = True) -> ChatRenderer:
    """The renderer for ``tokenizer``: its chat template when it has one and ``use_template``, else the plain one."""
    template = getattr(tokenizer, "chat_template", None) if use_template else None
    if not isinstance(template, str) or not template:
        return ChatRenderer(tokenizer, PLAIN_CHAT_TEMPLATE, native_tools=False)
    return ChatRenderer(tokenizer, template, native_tools=supports_tools(tokenizer, template))


def supports_tools(tokenizer: PreTrainedTokenizerBase, template: str) -> bool:
    """Whether ``template`` renders a tool list, an assistant's call and a tool result (probed, not guessed)."""
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": _PROBE_TOOL, "description": "", "parameters": {}}}
    ]
    call = {"type": "function", "id": "call_0", "function": {"name": _PROBE_TOOL, "arguments": {"q": 1}}}
    probe: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "name": _PROBE_TOOL, "content": _PROBE_RESULT},
    ]
    try:
        head = tokenizer.apply_chat_template(probe[:1], chat_template=template, tools=tools, tokenize=False)  # type: ignore[arg-type]
        whole = tokenizer.apply_chat_template(probe, chat_template=template, tools=tools, tokenize=False)  # type: ignore[arg-type]
    except Exception:
        return False
    return _PROBE_TOOL in str(head) and str(whole).count(_PROBE_TOOL) >= 2 and _PROBE_RESULT in str(whole)


def fallback_messages(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """Normalised messages as plain role/content turns carrying tools, calls and results as marked text."""
    out: list[Message] = []
    for message in messages:
        role = message["role"]
        if role == "assistant":
            out.append({"role": "assistant", "content": assistant_text(message)})
        elif role == "tool":
            block = f"{TOOL_RESPONSE_OPEN}\n{message.get('content', '')}\n{TOOL_RESPONSE_CLOSE}"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        else:
            out.append({"role": role, "content": message.get("content", "")})
    for message in out:
        message.pop("_tool_results", None)
    return _with_tools(out, tools) if tools else out


def assistant_text(message: Message) -> str:
    """An assistant turn as the fallback writes it: its text, then each call as a marked JSON block."""
    parts = [message["content"]] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        body = {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
        parts.append(f"{TOOL_CALL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}")
    return "\n".join(parts)


def _with_tools(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    preamble = TOOLS_PREAMBLE.replace("{schemas}", schemas)
    if messages and messages[0]["role"] == "system":
        own = messages[0]["content"]
        return [{"role": "system", "content": f"{own}\n\n{preamble}" if own else preamble}, *messages[1:]]
    return [{"role": "system", "content": preamble}, *messages]


@dataclass
class ParsedReply:
    """A generated assistant turn read back: its text, the calls it made, and call blocks that were not JSON."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def parse_tool_calls(text: str) -> ParsedReply:
    """Split generated text into content and ``<tool_call>`` blocks; a block that is not a JSON call is kept as text.

    Calls come back in the normalised shape (``{"type": "function", "function": {"name", "arguments"}}``,
    arguments as an object); ``invalid`` lists the blocks that failed, which serve answers as text.
    """
    calls, invalid = [], []
    for body in _CALL_PATTERN.findall(text):
        call = _call_from_json(body.strip())
        if call is None:
            invalid.append(body.strip())
        else:
            calls.append(call)
    content = _CALL_PATTERN.sub(lambda m: "" if _call_from_json(m.group(1).strip()) else m.group(0), text)
    return ParsedReply(content.strip(), calls, invalid)


def _call_from_json(body: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        return None
    arguments = parsed.get("arguments", {})
    if isinstance(arguments, str):  # some models write the OpenAI string form
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"type": "function", "function": {"name": parsed["name"], "arguments": arguments}}
