"""``tunesmith eval``'s loss: per target token over every row, the same for any batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from tunesmith.config import PromptTuningMethod
from tunesmith.evaluate.loss import teacher_forced_loss
from tunesmith.methods import apply_method


def _rows(shift: bool) -> list[dict[str, list[int]]]:
    # Lengths 3..13 and prompts of 1..4 tokens: rows differ in how many targets they carry.
    rows = []
    for i in range(11):
        ids = [(7 * i + 3 * t) % 300 + 10 for t in range(3 + i)]
        prompt = 1 + i % 4 if shift else 0
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def _direct(model: Any, rows: list[dict[str, list[int]]], shift: bool) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row["labels"]])
            targets = int((labels[:, 1:] if shift else labels).ne(-100).sum())
            nll += float(model(input_ids=torch.tensor([row["input_ids"]]), labels=labels).loss) * targets
            count += targets
    return nll / count


@pytest.mark.parametrize("kind", ["causal_lm", "packed", "prompt_tuning", "seq2seq"])
def test_teacher_forced_loss_is_per_target_token(tiny_llama: Path, tiny_t5: Path, kind: str) -> None:
    if kind == "seq2seq":
        model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), AutoTokenizer.from_pretrained(tiny_t5)
    else:
        model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama)
    if kind == "prompt_tuning":  # virtual tokens in front of every row: logits longer than the labels
        model = apply_method(model, PromptTuningMethod(num_virtual_tokens=3), "causal_lm")
    model.eval()
    shift = kind != "seq2seq"
    rows = _rows(shift)
    packed = kind == "packed"
    losses = [teacher_forced_loss(model, tokenizer, rows, n, "fp32", packed).compute()["loss"] for n in (1, 3, 8)]
    assert losses == pytest.approx([_direct(model, rows, shift)] * 3, rel=1e-5)


@pytest.mark.parametrize(("pack_tokens", "attention"), [(512, "sdpa"), (20, "sdpa"), (512, "eager")])
def test_references_of_one_prompt_share_its_positions_and_lose_nothing(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch, pack_tokens: int, attention: str
) -> None:
    from tunesmith.evaluate import loss

    monkeypatch.setattr(loss, "PACK_TOKENS", pack_tokens)  # 20: several packs, a group never split
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=attention).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    rows = []
    for i in range(4):  # per prompt: two answers that share their first tokens, one apart, and a repeat
        prompt = [(11 * i + t) % 300 + 5 for t in range(4 + i)]
        answers = [[40, 41, 42, 43 + i], [40, 41, 99], [7 + i, 8], [40, 41, 99]]
        rows += [{"input_ids": prompt + a, "labels": [-100] * len(prompt) + a} for a in answers]
    packs = loss._packs(rows)
    assert sum(len(pack.ids) for pack in packs) < sum(len(row["input_ids"]) for row in rows)
    assert (len(packs) > 1) == (pack_tokens == 20)
    shared = teacher_forced_loss(model, tokenizer, rows, 8, "fp32", packing=True).compute()["loss"]
    assert shared == pytest.approx(_direct(model, rows, shift=True), rel=1e-5)
