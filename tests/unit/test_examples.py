"""Every shipped example config loads, validates, and its templates match its data."""

from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.data.forms import read_data

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/config.yaml"))


def test_the_two_foundation_examples_exist() -> None:
    assert {p.parent.name for p in EXAMPLES} >= {
        "marketing-copy",
        "customer-service",
        "sentiment",
        "intent",
        "summarization",
        "multi-gpu",
    }


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_config_and_data_agree(config: Path) -> None:
    cfg = load_config(config)
    tables = read_data(cfg)  # the config's data form reads and checks it
    assert len(tables.train) >= 150
