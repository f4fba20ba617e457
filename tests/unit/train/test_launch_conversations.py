"""`tunesmith train --nproc` and `tunesmith tune` prepare conversation data the way its form does."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fixtures import write_config

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]


def conversation_config(tmp_path: Path, model: Path) -> Path:
    call = {"function": {"name": "lookup_order", "arguments": json.dumps({"order_id": 7})}}
    messages = [
        {"role": "user", "content": "Where is order 7?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": json.dumps({"status": "shipped"})},
        {"role": "assistant", "content": "Order 7 has shipped."},
    ]
    table = tmp_path / "chats.jsonl"
    table.write_text(json.dumps({"messages": messages, "tools": TOOLS}) + "\n")
    config = write_config(tmp_path / "c.yaml", model, table)
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"train": str(table), "messages": "messages", "tools": "tools", "max_length": 1024}
    raw["eval"] = {"metrics": ["tool_calls"]}
    config.write_text(yaml.safe_dump(raw))
    return config


def test_the_launcher_warms_the_token_cache_of_a_conversation_config(tmp_path: Path, tiny_llama: Path) -> None:
    from tunesmith.cache import cache_root
    from tunesmith.config import load_config
    from tunesmith.train.launch import _warm_token_cache

    _warm_token_cache(load_config(conversation_config(tmp_path, tiny_llama)))  # single-turn reading refused it
    assert list((cache_root() / "tokens").iterdir())


def test_a_study_prepares_conversations_and_can_rank_by_a_tool_call_score(tmp_path: Path, tiny_llama: Path) -> None:
    from tunesmith.config import load_config
    from tunesmith.tune.study import _prepare_once, metric_key

    cfg = load_config(conversation_config(tmp_path, tiny_llama))
    rows, _ = _prepare_once(cfg, [])
    assert rows == 1
    assert metric_key(cfg, "call_exact_match", "c.yaml") == ("eval_call_exact_match", "tool_calls")
