"""Packing must not change what is learnt: same per-example loss, gradients and logits as rows alone."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.collate import make_collator, supports_packing
from tunesmith.data.tokenize import IGNORE_INDEX

EXAMPLES = [
    {"input_ids": [5, 17, 33, 41, 8, 9, 60], "labels": [IGNORE_INDEX] * 3 + [41, 8, 9, 60]},
    {"input_ids": [7, 22, 90, 14, 3], "labels": [IGNORE_INDEX] * 2 + [90, 14, 3]},
]


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    shifted_logits, shifted_labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    return torch.nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")


def load(model_dir: Path, attention: str) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention)
    # As the Trainer does: with a KV cache, transformers ignores packed position ids and attends across rows.
    model.config.use_cache = False
    return model.eval()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_match_rows_alone(tiny_llama: Path, attention: str) -> None:
    model = load(tiny_llama, attention)
    packed = make_collator(None, packing=True)(EXAMPLES)  # type: ignore[arg-type]
    assert packed["input_ids"].shape == (1, 12)
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]]

    packed_out = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"])
    packed_loss = summed_loss(packed_out.logits, packed["labels"])
    packed_loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    alone_loss = torch.zeros(())
    for i, example in enumerate(EXAMPLES):
        ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
        out = model(input_ids=ids)
        alone_loss = alone_loss + summed_loss(out.logits, labels)
        start = sum(len(e["input_ids"]) for e in EXAMPLES[:i])
        # No token attends across the boundary: the second row's logits are exactly its logits alone.
        torch.testing.assert_close(packed_out.logits[:, start : start + ids.shape[1]], out.logits, atol=1e-5, rtol=1e-4)
    alone_loss.backward()

    torch.testing.assert_close(packed_loss, alone_loss, atol=1e-5, rtol=1e-5)
    for packed_grad, parameter in zip(packed_grads, model.parameters(), strict=True):
        torch.testing.assert_close(packed_grad, parameter.grad, atol=1e-5, rtol=1e-4)


def test_loss_mask_survives_packing() -> None:
    labels = make_collator(None, packing=True)(EXAMPLES)["labels"][0].tolist()  # type: ignore[arg-type]
    # Prompt tokens keep their mask; the first token of the second row is masked so no loss spans the boundary.
    assert labels == [IGNORE_INDEX] * 3 + [41, 8, 9, 60] + [IGNORE_INDEX] * 2 + [90, 14, 3]


def test_padded_batches_pad_labels_with_the_ignore_index(tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    batch = make_collator(tokenizer, packing=False)(EXAMPLES)
    assert batch["input_ids"].shape == (2, 7)
    assert batch["labels"][1].tolist()[-2:] == [IGNORE_INDEX, IGNORE_INDEX]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0]


def test_llama_supports_packing_and_t5_does_not(tiny_llama: Path, tiny_t5: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    assert supports_packing(load(tiny_llama, "sdpa"))
    assert not supports_packing(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5))
