from pathlib import Path

import pytest

from tunesmith.models import precision


def test_auto_picks_fp32_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert precision.resolve_precision("auto")[0] == "fp32"


def test_auto_picks_bf16_on_a_capable_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.resolve_precision("auto") == ("bf16", "auto: the CPU has AVX512-BF16/AMX")


def test_explicit_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.resolve_precision("fp32") == ("fp32", "set in the config")


def test_frozen_weights_go_bf16_and_trainable_stay_fp32(tiny_llama: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.config import LoraMethod
    from tunesmith.methods import apply_method

    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraMethod(r=2), "causal_lm")
    assert precision.cast_frozen_weights(model) > 0
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
