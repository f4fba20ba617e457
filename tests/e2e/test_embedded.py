"""The real embedded SmolLM2-135M-Instruct: GGUF -> cached safetensors -> two training steps -> generate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.cache import cache_root

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "marketing-copy" / "config.yaml"


@pytest.fixture()
def shared_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    # The conversion is content-keyed and slow: share the user's cache instead of a per-test one.
    default = Path.home() / ".cache" / "tunesmith"
    monkeypatch.setenv("TUNESMITH_CACHE", os.environ.get("TUNESMITH_TEST_CACHE", str(default)))
    return cache_root()


def test_embedded_model_trains_two_steps_and_answers(tunesmith, tmp_path: Path, shared_cache: Path):  # type: ignore[no-untyped-def]
    tunesmith.env["TUNESMITH_CACHE"] = str(shared_cache)
    done = tunesmith(
        "train", str(EXAMPLE), "--output-dir", "runs",
        "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--set", "data.eval_fraction=0.02",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "smollm2-135m-instruct (embedded)" in done.stderr
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["parameters"]["total"] > 130_000_000
    assert next(shared_cache.glob("gguf/SmolLM2-135M-Instruct.Q4_1-*/model.safetensors"))

    answer = tunesmith("generate", str(run), "--prompt", "Say hello.", "--max-new-tokens", "8")
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr


def test_conversion_happens_once(shared_cache: Path) -> None:
    from tunesmith.config import ModelConfig
    from tunesmith.models import load_model, resolve_model

    first = Path(resolve_model("smollm2-135m-instruct").location)  # converts if this machine never has
    written = (first / "model.safetensors").stat().st_mtime_ns
    again = resolve_model("smollm2-135m-instruct")
    assert Path(again.location) == first and (first / "model.safetensors").stat().st_mtime_ns == written
    assert load_model(again, ModelConfig(), "causal_lm").config.model_type == "llama"
