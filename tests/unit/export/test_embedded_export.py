"""The real embedded SmolLM2-135M-Instruct: one LoRA step, exported to q8_0 GGUF, read back by transformers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from export_checks import TOLERANCES, logit_gap

from fixtures import write_ads_csv, write_config

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_embedded_model_exports_to_q8_0_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.config import load_config
    from tunesmith.data.tokenize import prompt_text
    from tunesmith.export import export_loaded
    from tunesmith.models.run_model import load_run_model
    from tunesmith.train.runner import train

    # The GGUF -> safetensors conversion of the base is content-keyed and slow: share the user's cache.
    default = Path.home() / ".cache" / "tunesmith"
    monkeypatch.setenv("TUNESMITH_CACHE", os.environ.get("TUNESMITH_TEST_CACHE", str(default)))
    table = write_ads_csv(tmp_path / "ads.csv", repeat=1)
    config = write_config(
        tmp_path / "c.yaml",
        "smollm2-135m-instruct",  # type: ignore[arg-type]
        table,
        data={"system": "You write ads.", "max_length": 64, "eval_fraction": 0.25},
        train={"max_steps": 1, "batch_size": 2, "save_steps": 10},
    )
    clock = _Clock()
    run_dir = train(load_config(config, []), output_dir=tmp_path / "runs").run_dir
    clock.lap("train 1 step")
    loaded = load_run_model(run_dir)
    tokenizer = loaded.tokenizer
    texts = [prompt_text(tokenizer, loaded.config.data, "Write an ad for tea aimed at retirees."), "The sea is"]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    reference = _Frozen(loaded.model, ids)  # the adapter model's logits, before the export merges it in place

    clock.lap("load the run")
    result = export_loaded(loaded, "gguf", "q8_0")
    clock.lap("export")
    (path,) = [p for p in result.files if p.suffix == ".gguf"]
    # The tokenizer's round trip is checked on the tiny run (transformers needs ~5 s more to rebuild this one).
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    clock.lap(f"transformers reads the {path.stat().st_size / 1e6:.0f} MB file")
    relative, top1 = logit_gap(reference, model, ids)
    print(f"q8_0: max |diff| / max |logit| {relative:.2e}, top-1 agreement {top1:.3f}")
    assert relative <= TOLERANCES["q8_0"][0] and top1 >= TOLERANCES["q8_0"][1]


class _Clock:
    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        print(f"{what}: {now - self.last:.1f} s")
        self.last = now


class _Frozen:
    """Logits computed once per input, answered again by ``logit_gap`` as if from a model."""

    def __init__(self, model: object, ids_list: list[list[int]]) -> None:
        import torch

        self.logits = {}
        for ids in ids_list:
            with torch.inference_mode():
                self.logits[tuple(ids)] = model(torch.tensor([ids])).logits  # type: ignore[operator]

    def __call__(self, batch: object) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.logits[tuple(batch[0].tolist())])  # type: ignore[index]
