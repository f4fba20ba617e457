"""Packing must not change what is learnt: same per-example loss, gradients and logits as rows alone."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.collate import make_collator, packed_response_loss, supports_packing
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.models.attention import VARLEN, use_varlen_attention

EXAMPLES = [
    {"input_ids": [5, 17, 33, 41, 8, 9, 60], "labels": [IGNORE_INDEX] * 3 + [41, 8, 9, 60]},
    {"input_ids": [7, 22, 90, 14, 3], "labels": [IGNORE_INDEX] * 2 + [90, 14, 3]},
]


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    shifted_logits, shifted_labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    return torch.nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")


def load(model_dir: Path, attention: str) -> torch.nn.Module:
    loaded_as = "sdpa" if attention == VARLEN else attention
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=loaded_as)
    if attention == VARLEN:
        use_varlen_attention(model)
    # As the Trainer does: with a KV cache, transformers ignores packed position ids and attends across rows.
    model.config.use_cache = False
    return model.eval()


@pytest.mark.parametrize("attention", ["sdpa", "eager", VARLEN])
def test_packed_rows_match_rows_alone(tiny_llama: Path, attention: str) -> None:
    model = load(tiny_llama, attention)
    packed = make_collator(None, packing=True).flatten(EXAMPLES)  # type: ignore[arg-type]
    assert packed["input_ids"].shape == (1, 12)
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]]

    packed_out = model(**{k: v for k, v in packed.items() if k != "labels"})
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
    collator = make_collator(None, packing=True)  # type: ignore[arg-type]
    labels = collator.flatten(EXAMPLES)["labels"][0].tolist()
    # Prompt tokens keep their mask; the first token of the second row is masked so no loss spans the boundary.
    assert labels == [IGNORE_INDEX] * 3 + [41, 8, 9, 60] + [IGNORE_INDEX] * 2 + [90, 14, 3]
    batch = collator(EXAMPLES)
    # Only positions that predict a loss token get logits; their labels are those tokens, already shifted.
    assert batch["logits_to_keep"].tolist() == [2, 3, 4, 5, 8, 9, 10]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 41, 8, 9, 60, 90, 14, 3]]


def test_response_only_logits_give_the_same_loss_and_gradients(tiny_llama: Path) -> None:
    model = load(tiny_llama, "sdpa")
    collator = make_collator(None, packing=True)  # type: ignore[arg-type]
    full = collator.flatten(EXAMPLES)
    reference = summed_loss(
        model(input_ids=full["input_ids"], position_ids=full["position_ids"]).logits, full["labels"]
    )
    reference = reference / (full["labels"][:, 1:] != IGNORE_INDEX).sum()
    reference.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    batch = collator(EXAMPLES)
    outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert outputs.logits.shape[1] == 7
    loss = packed_response_loss(outputs, batch["labels"])
    loss.backward()
    torch.testing.assert_close(loss, reference, atol=1e-6, rtol=1e-5)
    for grad, parameter in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(parameter.grad, grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("attention", ["sdpa", VARLEN])
def test_shape_rounding_pads_to_the_multiple_and_changes_no_loss_or_gradient(tiny_llama: Path, attention: str) -> None:
    from tunesmith.data.collate import SHAPE_PADDING

    model = load(tiny_llama, attention)
    exact, rounded = make_collator(None, packing=True), make_collator(None, packing=True, shape_multiple=8)  # type: ignore[arg-type]
    results = []
    for batch in (exact(EXAMPLES), rounded(EXAMPLES)):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", SHAPE_PADDING)}
        loss = packed_response_loss(model(**inputs), batch["labels"])
        loss.backward()
        results.append((batch, loss.detach(), [p.grad.clone() for p in model.parameters()]))
        model.zero_grad()
    (plain, plain_loss, plain_grads), (padded, padded_loss, padded_grads) = results
    assert SHAPE_PADDING not in plain and padded[SHAPE_PADDING] == 4  # 12 tokens -> 16
    assert padded["input_ids"].shape == (1, 16) and padded["position_ids"][0, 12:].tolist() == [0, 1, 2, 3]
    assert padded["logits_to_keep"].numel() == 8 and plain["logits_to_keep"].numel() == 7
    torch.testing.assert_close(padded_loss, plain_loss, atol=1e-6, rtol=1e-5)
    for grad, expected in zip(padded_grads, plain_grads, strict=True):
        torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)


def test_padded_batches_pad_labels_with_the_ignore_index(tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    batch = make_collator(tokenizer, packing=False)(EXAMPLES)
    assert batch["input_ids"].shape == (2, 7)
    assert batch["labels"][1].tolist()[-2:] == [IGNORE_INDEX, IGNORE_INDEX]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("task", ["causal_lm", "seq2seq"])
def test_padded_batches_stay_right_padded_after_generation_shares_the_tokenizer(
    tiny_llama: Path, tiny_t5: Path, task: str
) -> None:
    # Bug: generation set tokenizer.padding_side = "left" for good, and the collators read it on every call, so
    # after an in-training evaluation with eval.metrics every unpacked training batch was left-padded.
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tunesmith.config import RunConfig
    from tunesmith.evaluate.generation import Decoding, generate

    model_dir = tiny_llama if task == "causal_lm" else tiny_t5
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load(tiny_llama, "sdpa") if task == "causal_lm" else AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    collate = make_collator(tokenizer, packing=False, task=task, model=model)  # type: ignore[arg-type]
    config = RunConfig.model_validate(
        {"task": task, "model": {"name": str(model_dir)}, "data": _task_data(task), "method": {"name": "full"}}
    )
    generate(model, tokenizer, config, ["Write an ad", "Hi"], Decoding(max_new_tokens=2), 2, "fp32")
    batch = collate(EXAMPLES)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert batch["labels"][1].tolist()[-2:] == [IGNORE_INDEX, IGNORE_INDEX]
    assert batch["input_ids"][1].tolist()[:5] == EXAMPLES[1]["input_ids"]


def _task_data(task: str) -> dict[str, str]:
    if task == "seq2seq":
        return {"train": "t.csv", "source": "{a}", "target": "{b}"}
    return {"train": "t.csv", "prompt": "{a}", "response": "{b}"}


def test_llama_supports_packing_and_t5_does_not(tiny_llama: Path, tiny_t5: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    assert supports_packing(load(tiny_llama, "sdpa"))
    assert not supports_packing(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5))


def test_varlen_kernel_falls_back_to_sdpa_for_padded_generation(tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.padding_side = "left"
    batch = tokenizer(["Write an ad for tea", "Hi"], return_tensors="pt", padding=True)
    expected = load(tiny_llama, "sdpa").generate(**batch, max_new_tokens=5, do_sample=False)
    assert torch.equal(load(tiny_llama, VARLEN).generate(**batch, max_new_tokens=5, do_sample=False), expected)
