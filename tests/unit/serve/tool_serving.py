"""A tiny causal LM that writes a fixed tool call, and a conversation run of it, for the tool-calling serve tests.

The model is a bigram table: embeddings are one-hot, attention and MLP outputs are zero, so each logit row
depends on the last token only, and ``lm_head`` maps each token of a chain to the next. The chain starts at
the last token of the generation prompt and writes ``Checking.`` then a ``<tool_call>`` block of the fallback
format, one added token at a time. A prompt ending in a forced call opening (tool_choice) continues from the
function's name: ``lookup_order`` to its arguments, ``broken`` to arguments that are not JSON. Generation,
decoding, batching and streaming are the real server's; only the weights are set by hand, so the answers are
known without training.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import yaml

from fixtures import build_tokenizer, train_into

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}
BROKEN = {"type": "function", "function": {"name": "broken", "parameters": {"type": "object", "properties": {}}}}
TOOLS = [LOOKUP, BROKEN]
# One added token per piece: the answer's chain, and the chain a forced "broken" call continues with.
CHAIN = ["Check", "ing.\n", "<tool_call>\n", '{"name": ', '"lookup_order"', ', "arguments": ', '{"order_id": "A1"}']
CHAIN += ["}\n</tool_call>"]
BROKEN_CHAIN = ['"broken"', ', "arguments": {oops', "}\n</tool_call>"]
ANSWER = "".join(CHAIN)  # Checking. then the call block, as the fallback format writes it


def build_tool_caller(path: Path) -> Path:
    """Save the bigram model and its tokenizer (ChatML template, no tool support: the fallback format)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    tokenizer.add_tokens(sorted(set(CHAIN + BROKEN_CHAIN)))
    vocab = len(tokenizer)
    hidden = -(-vocab // 8) * 8
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids
    start = _generation_prompt_end(tokenizer)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        head = model.lm_head.weight
        head[tokenizer.eos_token_id, :vocab] = 0.5  # every token ends the answer unless a chain goes on
        for first, then in _links([start, *ids(CHAIN)]) + _links(ids(BROKEN_CHAIN)):
            head[then, first] = 1.0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _links(chain: list[int]) -> list[tuple[int, int]]:
    return list(itertools.pairwise(chain))


def _generation_prompt_end(tokenizer: Any) -> int:
    hello = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(hello, tokenize=False, add_generation_prompt=True)
    return int(tokenizer(text, add_special_tokens=False)["input_ids"][-1])


def train_tool_run(root: Path, model: Path) -> Path:
    """A conversation run (data.messages, data.tools) of the model, one step at a learning rate too small to
    change an answer: a run directory to serve, with the conversation form's rendering."""
    root.mkdir(parents=True, exist_ok=True)
    call = {"type": "function", "function": {"name": "lookup_order", "arguments": {"order_id": "A1"}}}
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Where is my order A1?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
                {"role": "tool", "content": '{"status": "shipped"}'},
                {"role": "assistant", "content": "It has shipped."},
            ],
            "tools": TOOLS,
        }
    ] * 2
    (root / "calls.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "name": "caller",
        "model": {"name": str(model)},
        "data": {
            "train": str(root / "calls.jsonl"),
            "messages": "messages",
            "tools": "tools",
            "max_length": 1024,
            "eval_fraction": 0,
        },
        "method": {"name": "full"},
        "train": {"max_steps": 1, "batch_size": 2, "learning_rate": 1e-12, "logging_steps": 1, "save_steps": 100},
        "eval": {"max_new_tokens": 8, "metrics": []},
    }
    (root / "caller.yaml").write_text(yaml.safe_dump(config))
    return train_into(root, root / "caller.yaml")
