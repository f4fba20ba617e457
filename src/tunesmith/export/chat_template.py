"""The chat template a GGUF carries (``tokenizer.chat_template``): the one the run was trained with.

A run whose template knows tools, or a run that is not a conversation run, carries its tokenizer's template as
it is. A conversation run in tunesmith's fallback tool format (``data.chat_format``) was trained on its
template *after* the fallback rewrote the messages, so the GGUF carries ``fallback_chat_template``: a Jinja
preamble that does that rewrite (tools into the system turn, calls as ``<tool_call>`` JSON blocks, results as
one ``<tool_response>`` user turn) and then the run's own template, unchanged, on the rewritten messages. A
runtime that renders with tools (``llama-server --jinja``, transformers) then gets the prompt training saw:
``tojson`` writes JSON as Python's ``json.dumps`` does. A run trained without a chat template carries
tunesmith's ``PLAIN_CHAT_TEMPLATE`` behind the same preamble.
"""

from __future__ import annotations

from tunesmith.data.chat_format import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOL_RESPONSE_CLOSE,
    TOOL_RESPONSE_OPEN,
    TOOLS_PREAMBLE,
)


def _string(text: str) -> str:
    # A Jinja string literal (the tojson of a Python string is one).
    import json

    return json.dumps(text)


def fallback_chat_template(template: str) -> str:
    """``template`` behind a preamble that rewrites tools, calls and results into the fallback format."""
    head, tail = TOOLS_PREAMBLE.split("{schemas}")
    call_open, call_close = _string(f"{TOOL_CALL_OPEN}\n"), _string(f"\n{TOOL_CALL_CLOSE}")
    result_open, result_close = _string(f"{TOOL_RESPONSE_OPEN}\n"), _string(f"\n{TOOL_RESPONSE_CLOSE}")
    rewrite = (
        "{%- set ns = namespace(out=[], previous='') -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'assistant' -%}"
        "{%- set turn = namespace(parts=[m['content']] if m['content'] else []) -%}"
        "{%- for call in m.get('tool_calls') or [] -%}"
        "{%- set arguments = call['function']['arguments'] -%}"
        "{%- set arguments = arguments if arguments is string else arguments | tojson -%}"
        "{%- set body = '{\"name\": ' + call['function']['name'] | tojson + ', \"arguments\": ' + arguments + '}' -%}"
        "{%- set turn.parts = turn.parts + [" + call_open + " + body + " + call_close + "] -%}"
        "{%- endfor -%}"
        "{%- set ns.out = ns.out + [{'role': 'assistant', 'content': turn.parts | join('\\n')}] -%}"
        "{%- elif m['role'] == 'tool' -%}"
        "{%- set block = " + result_open + " + (m['content'] or '') + " + result_close + " -%}"
        "{%- if ns.previous == 'tool' -%}"
        "{%- set ns.out = ns.out[:-1] + [{'role': 'user', 'content': ns.out[-1]['content'] + '\\n' + block}] -%}"
        "{%- else -%}{%- set ns.out = ns.out + [{'role': 'user', 'content': block}] -%}{%- endif -%}"
        "{%- else -%}"
        "{%- set ns.out = ns.out + [{'role': m['role'], 'content': m['content'] or ''}] -%}"
        "{%- endif -%}"
        "{%- set ns.previous = m['role'] -%}"
        "{%- endfor -%}"
        "{%- if tools -%}"
        "{%- set listed = namespace(schemas=[]) -%}"
        "{%- for tool in tools -%}{%- set listed.schemas = listed.schemas + [tool | tojson] -%}{%- endfor -%}"
        "{%- set preamble = " + _string(head) + " + listed.schemas | join('\\n') + " + _string(tail) + " -%}"
        "{%- if ns.out and ns.out[0]['role'] == 'system' -%}"
        "{%- set own = ns.out[0]['content'] -%}"
        "{%- set ns.out = [{'role': 'system', 'content': own + '\\n\\n' + preamble if own else preamble}]"
        " + ns.out[1:] -%}"
        "{%- else -%}{%- set ns.out = [{'role': 'system', 'content': preamble}] + ns.out -%}{%- endif -%}"
        "{%- endif -%}"
        "{%- set messages = ns.out -%}"
    )
    return rewrite + template
