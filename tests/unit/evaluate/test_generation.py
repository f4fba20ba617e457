"""tunesmith generate/eval answer through the built-in engine: the same fp32 greedy answers as transformers'
generate loop, alone and in batches, for a LoRA model and for its base."""

from __future__ import annotations

from typing import Any

import pytest

from fixtures import build_llama

PROMPTS = ["Write an ad for tea aimed at retirees.", "hi there", "Summarize: the agent approved it.", "coffee"]


@pytest.fixture(scope="module")
def lora_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """The tiny Llama with large random weights and a LoRA adapter with non-zero B; its tokenizer; a config."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.config import RunConfig

    path = build_llama(tmp_path_factory.mktemp("gen-llama"))
    model = AutoModelForCausalLM.from_pretrained(path)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    config = RunConfig.model_validate(
        {"model": {"name": str(path)}, "data": {"train": "x.csv", "prompt": "{p}", "response": "{r}"}}
    )
    return peft_model.eval(), AutoTokenizer.from_pretrained(path), config


@pytest.mark.parametrize("batch", [1, 3])
def test_engine_answers_equal_the_generate_loop(
    lora_model: tuple[Any, Any, Any], batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.evaluate import generation

    model, tokenizer, config = lora_model
    decoding = generation.Decoding(max_new_tokens=12)

    def both(target: Any) -> tuple[list[str], list[str]]:
        ours = generation.generate(target, tokenizer, config, PROMPTS, decoding, batch, "fp32")
        assert generation.engine_answers(target, tokenizer, PROMPTS[:1], decoding, 1, "fp32") is not None
        with monkeypatch.context() as patch:
            patch.setattr(generation, "engine_answers", lambda *args: None)  # the generate loop answers
            theirs = generation.generate(target, tokenizer, config, PROMPTS, decoding, batch, "fp32")
        return ours, theirs

    tuned, expected = both(model)
    assert tuned == expected and len(set(expected)) == len(PROMPTS)
    with model.disable_adapter():  # tunesmith eval's base view
        base_ours, base_theirs = both(model)
    assert base_ours == base_theirs and base_ours != tuned
