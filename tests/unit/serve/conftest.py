"""Two LoRA runs of a tiny Llama (different data), a classification run, and a real server on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import API_KEY, Running, build_noisy_llama, running_server, train_classifier, train_lora
from tool_serving import build_tool_caller, train_tool_run


@pytest.fixture(scope="session")
def noisy_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_noisy_llama(tmp_path_factory.mktemp("noisy-llama"))


@pytest.fixture(scope="session")
def lora_runs(noisy_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serve-runs")
    calm = train_lora(root / "calm", noisy_llama, "calm", shout=False, data={"system": "You write ads."})
    loud = train_lora(root / "loud", noisy_llama, "loud", shout=True)
    return calm, loud


@pytest.fixture(scope="session")
def classifier_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_classifier(tmp_path_factory.mktemp("serve-clf"), tiny_bert)


@pytest.fixture(scope="session")
def server(lora_runs: tuple[Path, Path], classifier_run: Path) -> Iterator[Running]:
    with running_server([*lora_runs, classifier_run], api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="session")
def dora_run(noisy_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # peft cannot mix DoRA adapters per row: this run exercises the one-adapter-per-batch path.
    root = tmp_path_factory.mktemp("serve-dora")
    return train_lora(root, noisy_llama, "dora", shout=True, method={"name": "dora", "r": 4, "alpha": 8})


@pytest.fixture(scope="session")
def tool_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-tools")
    return train_tool_run(root, build_tool_caller(root / "caller-model"))


@pytest.fixture(scope="session")
def tool_server(tool_run: Path) -> Iterator[Running]:
    with running_server([tool_run]) as running:
        yield running
