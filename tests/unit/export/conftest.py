"""A trained tiny LoRA run shared by the export tests, and the logit comparison they all use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from export_checks import SYSTEM

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
