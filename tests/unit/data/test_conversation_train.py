"""tunesmith train on a conversation table: LoRA on the tiny model, the run's model loads, cuts are counted."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fixtures import train_into, write_config

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]


def conversation(number: int) -> list[dict[str, object]]:
    call = {"function": {"name": "lookup_order", "arguments": json.dumps({"order_id": number})}}
    return [
        {"role": "user", "content": f"Where is order {number}?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        {"role": "tool", "content": json.dumps({"status": "shipped", "order_id": number})},
        {"role": "assistant", "content": f"Order {number} has shipped."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You are welcome."},
    ]


def test_train_on_conversations_and_load_the_model(tmp_path: Path, tiny_llama: Path) -> None:
    import torch

    from tunesmith.models.run_model import load_run_model
    from tunesmith.rundir import read_run

    table = tmp_path / "chats.jsonl"
    table.write_text("".join(json.dumps({"messages": conversation(n), "tools": TOOLS}) + "\n" for n in range(12)))
    # max_length ends just after the second assistant turn: every conversation loses its closing small talk.
    max_length = _end_of_assistant_turn(tiny_llama, table, turn=2)
    config = write_config(tmp_path / "c.yaml", tiny_llama, table)
    raw = yaml.safe_load(config.read_text())
    data = {"train": str(table), "messages": "messages", "tools": "tools", "eval_fraction": 0.25}
    raw["data"] = {**data, "max_length": max_length}
    config.write_text(yaml.safe_dump(raw))

    run_dir = train_into(tmp_path, config)

    _, record = read_run(run_dir)
    assert record.data["status"] == "completed"
    stats = record.data["data"]["stats"]
    assert (stats["train_rows"], stats["eval_rows"], stats["truncated"], stats["dropped_truncated"]) == (9, 3, 12, 0)
    assert stats["train_tokens"] <= 9 * max_length
    loaded = load_run_model(run_dir)
    assert loaded.adapter
    ids = loaded.tokenizer("<|im_start|>user\nWhere is order 3?<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(loaded.model(input_ids=ids).logits).all()


def _end_of_assistant_turn(model: Path, table: Path, turn: int) -> int:
    from transformers import AutoTokenizer

    from tunesmith.config import DataConfig
    from tunesmith.data.conversation import read_conversations
    from tunesmith.data.tables import read_table
    from tunesmith.data.turns import conversation_renderer, encode_conversation

    tokenizer = AutoTokenizer.from_pretrained(model)
    cfg = DataConfig(train=table, messages="messages", tools="tools", max_length=4096)
    longest = 0
    for conversation in read_conversations(read_table(table, "data.train"), "messages", "tools", table):
        encoded = encode_conversation(conversation, tokenizer, cfg, conversation_renderer(tokenizer, cfg))
        assert encoded is not None
        ends = [end for role, _, end in encoded.turns if role == "assistant"]
        assert len(ends) == 3
        longest = max(longest, ends[turn - 1])
    return longest
