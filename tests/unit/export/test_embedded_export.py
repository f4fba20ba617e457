"""The real embedded SmolLM2-135M-Instruct with a LoRA adapter, exported to q8_0 GGUF and read back by transformers.

Training would add ~10 s and teach nothing the tiny run does not: the adapter here is initialised with random
(non-zero) B matrices instead, so folding it in changes every targeted weight, as a trained one would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from export_checks import TOLERANCES, logit_gap

from fixtures import write_ads_csv, write_config

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_embedded_model_exports_to_q8_0_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.config import load_config
    from tunesmith.data.tokenize import prompt_text
    from tunesmith.export import export_loaded
    from tunesmith.models import load_model, load_tokenizer, resolve_model
    from tunesmith.models.run_model import LoadedRun

    # The GGUF -> safetensors conversion of the base is content-keyed and slow: share the user's cache.
    default = Path.home() / ".cache" / "tunesmith"
    monkeypatch.setenv("TUNESMITH_CACHE", os.environ.get("TUNESMITH_TEST_CACHE", str(default)))
    table = write_ads_csv(tmp_path / "ads.csv", repeat=1)
    config = load_config(
        write_config(tmp_path / "c.yaml", "smollm2-135m-instruct", table, data={"system": "You write ads."}),  # type: ignore[arg-type]
        [],
    )
    clock = _Clock()
    resolved = resolve_model(config.model.name)
    tokenizer = load_tokenizer(resolved, config.model)
    base = load_model(resolved, config.model, "causal_lm")
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(0)
    model = get_peft_model(base, lora).eval()
    clock.lap("load SmolLM2 + LoRA")
    texts = [prompt_text(tokenizer, config.data, "Write an ad for tea aimed at retirees."), "The sea is"]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    reference = _Frozen(model, ids)  # the adapter model's logits, before the export folds it in place
    with model.disable_adapter():
        base = _Frozen(model, ids)

    result = export_loaded(LoadedRun(tmp_path, config, model, tokenizer, True, "fp32"), "gguf", "q8_0")
    clock.lap("export")
    (path,) = [p for p in result.files if p.suffix == ".gguf"]
    assert path == tmp_path / "export" / "gguf-q8_0" / "tiny-q8_0.gguf"
    # The tokenizer's round trip is checked on the tiny run (transformers needs ~5 s more to rebuild this one).
    exported = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    clock.lap(f"transformers reads the {path.stat().st_size / 1e6:.0f} MB file")
    relative, top1 = logit_gap(reference, exported, ids)
    print(f"q8_0: max |diff| / max |logit| {relative:.2e}, top-1 agreement {top1:.3f}")
    assert relative <= TOLERANCES["q8_0"][0] and top1 >= TOLERANCES["q8_0"][1]
    # The adapter was not a no-op: without it the logits differ well beyond the q8_0 rounding.
    assert logit_gap(reference, base, ids)[0] > 2 * relative


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
