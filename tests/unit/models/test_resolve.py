from pathlib import Path

import pytest

from tunesmith.config import ModelConfig
from tunesmith.errors import TunesmithError
from tunesmith.models import load_model, load_tokenizer, resolve_model
from tunesmith.models.embedded import EMBEDDED, EmbeddedModel


def test_local_directory(tiny_llama: Path) -> None:
    resolved = resolve_model(str(tiny_llama))
    assert resolved.source == "local" and resolved.local_files_only
    model = load_model(resolved, ModelConfig(name=str(tiny_llama)), "causal_lm")
    assert model.config.num_hidden_layers == 2
    assert load_tokenizer(resolved, ModelConfig()).pad_token == "<pad>"


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="no such file or directory"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(TunesmithError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "model.gguf"))


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="directory has no config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_offline_fails_at_once_and_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode must not touch the network")

    monkeypatch.setattr("socket.create_connection", no_network)
    with pytest.raises(TunesmithError, match=r"HF_HUB_OFFLINE is set .* not in the local cache .*model.name to DIR"):
        resolve_model("someone/some-model-that-is-not-cached")


def test_hub_unreachable_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://127.0.0.1:9")
    with pytest.raises(TunesmithError, match="the Hugging Face hub cannot be reached"):
        resolve_model("someone/uncached-model")


def test_invalid_name_is_not_a_hub_id() -> None:
    with pytest.raises(TunesmithError, match="not an embedded alias"):
        resolve_model("bad name with spaces!")


def test_embedded_alias_whose_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = EmbeddedModel("ghost", "tunesmith_no_such_package", "model", "missing on purpose")
    monkeypatch.setitem(EMBEDDED, "ghost", fake)
    with pytest.raises(TunesmithError, match=r"package tunesmith-no-such-package is not installed"):
        resolve_model("ghost")


def test_task_and_architecture_must_agree(tiny_llama: Path, tiny_t5: Path) -> None:
    with pytest.raises(TunesmithError, match="is an encoder-decoder model .*use task: seq2seq"):
        load_model(resolve_model(str(tiny_t5)), ModelConfig(), "causal_lm")
    with pytest.raises(TunesmithError, match="is not an encoder-decoder model"):
        load_model(resolve_model(str(tiny_llama)), ModelConfig(), "seq2seq")
