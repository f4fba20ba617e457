"""A trained tiny LoRA run shared by the export tests, and the logit comparison they all use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from export_checks import CONVERSATION, LOOKUP, SYSTEM

from fixtures import train_into, write_ads_csv, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    """A completed LoRA run of the tiny llama (2 steps, with a system prompt)."""
    base = tmp_path_factory.mktemp("export-run")
    table = write_ads_csv(base / "ads.csv")
    config = write_config(
        base / "c.yaml",
        tiny_llama,
        table,
        train={"max_steps": 2, "batch_size": 4, "learning_rate": 5e-2},
        data={"system": SYSTEM},
    )
    return train_into(base, config)


@pytest.fixture(scope="session")
def tiny_reference(tiny_run: Path) -> tuple[Any, Any]:
    """The adapter model of ``tiny_run`` (fp32, unmerged) and its tokenizer: what every export must match."""
    from tunesmith.models.run_model import load_run_model

    loaded = load_run_model(tiny_run)
    return loaded.model, loaded.tokenizer


@pytest.fixture(scope="session")
def conversation_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    """A completed LoRA run of the tiny llama on conversations with a tool (2 steps, with a system prompt)."""
    import json

    import yaml

    base = tmp_path_factory.mktemp("export-conversations")
    rows = [{"messages": CONVERSATION, "tools": [LOOKUP]}] * 4
    (base / "chats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "name": "chats",
        "model": {"name": str(tiny_llama)},
        "data": {"train": str(base / "chats.jsonl"), "messages": "messages", "tools": "tools", "system": SYSTEM},
        "method": {"name": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "save_steps": 100},
        "eval": {"max_new_tokens": 8, "metrics": []},
    }
    config["data"] |= {"max_length": 512, "eval_fraction": 0}
    (base / "chats.yaml").write_text(yaml.safe_dump(config))
    return train_into(base, base / "chats.yaml")
