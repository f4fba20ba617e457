"""Shared fixtures: offline environment, tiny models, small tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# No test touches the network; set before transformers / huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fixtures import build_bert, build_llama, build_t5, write_ads_csv


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tokenised-data caches must not leak between tests, except the GGUF conversion (slow, content-keyed).
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny-llama-plain"), chat_template=False)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def ads_csv(tmp_path: Path) -> Path:
    return write_ads_csv(tmp_path / "ads.csv")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The Ray studies are the longest file: run them first, so that with two workers (make test) the other
    # worker takes the rest meanwhile and both finish together, instead of one long file starting last.
    items.sort(key=lambda item: 0 if item.get_closest_marker("ray") else 1)
