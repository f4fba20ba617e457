"""The built-in engine on a tiny Llama: fp32 greedy answers equal transformers' generate, alone and batched,
with LoRA adapters mixed per row, and with rows joining and leaving mid-decode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fixtures import build_llama

PROMPTS = [
    "Write an ad for coffee aimed at students.",
    "hi",
    "The quick brown fox jumps over the lazy dog",
    "Summarize: the customer asked for a refund",
    "great product",
]
MAX_NEW = 16


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The tiny Llama with large random weights (varied answers, clear argmaxes), and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_llama(tmp_path_factory.mktemp("engine-llama"))
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model, AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def two_adapters(noisy: tuple[Any, Any]) -> Any:
    """A peft model with two LoRA adapters whose B matrices are non-zero (they change the answers)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(noisy[0])
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets), adapter_name="one")
    peft_model.add_adapter("two", LoraConfig(r=2, lora_alpha=8, target_modules=targets[:2]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return peft_model.eval()


def _ids(tokenizer: Any) -> list[list[int]]:
    return [tokenizer(p)["input_ids"] for p in PROMPTS]


def _generate(model: Any, tokenizer: Any, ids: list[int]) -> list[int]:
    """transformers' greedy generate on one prompt, up to (not including) the end-of-text token."""
    import torch

    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False, temperature=None, top_p=None, top_k=None,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )[0, len(ids) :].tolist()  # fmt: skip
    return out[: out.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in out else out


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_fp32_greedy_answers_equal_generate(noisy: tuple[Any, Any], batch: int) -> None:
    from tunesmith.engine import build_engine, generate_tokens

    model, tokenizer = noisy
    ids = _ids(tokenizer)
    expected = [_generate(model, tokenizer, x) for x in ids]
    engine = build_engine(model, "fp32")
    assert generate_tokens(engine, ids, MAX_NEW, batch, {tokenizer.eos_token_id}) == expected
    assert len({tuple(e) for e in expected}) == len(expected)  # varied answers: the check means something


def test_adapters_mix_per_row_and_match_generate_with_each(two_adapters: Any, noisy: tuple[Any, Any]) -> None:
    from tunesmith.engine import Batch, Sequence, build_engine

    tokenizer = noisy[1]
    ids = _ids(tokenizer)
    expected: dict[str, list[list[int]]] = {}
    for name in ("one", "two"):
        two_adapters.set_adapter(name)
        expected[name] = [_generate(two_adapters, tokenizer, x) for x in ids]
    with two_adapters.disable_adapter():
        expected["base"] = [_generate(two_adapters, tokenizer, x) for x in ids]
    assert expected["one"] != expected["base"] and expected["two"] != expected["base"]
    engine = build_engine(two_adapters, "fp32", adapters=["one", "two"])
    rows = [(name, i) for i in range(len(ids)) for name in ("one", "two", "base")]
    batch = Batch(engine.decoder(), {tokenizer.eos_token_id})
    sequences = [Sequence(ids[i], MAX_NEW, adapter=engine.adapter_index(name)) for name, i in rows]
    _run(batch, sequences, join_every=0)
    assert [s.tokens for s in sequences] == [expected[name][i] for name, i in rows]


def test_rows_joining_and_leaving_mid_decode_answer_as_alone(noisy: tuple[Any, Any]) -> None:
    from tunesmith.engine import Batch, Sequence, build_engine

    model, tokenizer = noisy
    ids = _ids(tokenizer)
    expected = [_generate(model, tokenizer, x) for x in ids]
    engine = build_engine(model, "fp32")
    batch = Batch(engine.decoder(), {tokenizer.eos_token_id})
    # Budgets differ, so rows leave at different steps while others are still joining.
    sequences = [Sequence(x, MAX_NEW - 3 * (i % 3)) for i, x in enumerate(ids)]
    _run(batch, sequences, join_every=3)
    assert [s.tokens for s in sequences] == [e[: s.max_new_tokens] for e, s in zip(expected, sequences, strict=True)]
    assert batch.decoder.rows == 0


def test_sampling_depends_on_the_seed_only(noisy: tuple[Any, Any]) -> None:
    from tunesmith.engine import Batch, Sequence, build_engine

    model, tokenizer = noisy
    ids = _ids(tokenizer)
    engine = build_engine(model, "fp32")

    def sampled(seed: int, neighbours: int) -> list[int]:
        batch = Batch(engine.decoder(), {tokenizer.eos_token_id})
        mine = Sequence(ids[0], MAX_NEW, sample=True, temperature=1.0, top_p=0.9, seed=seed)
        _run(batch, [mine, *(Sequence(x, MAX_NEW) for x in ids[1 : 1 + neighbours])], join_every=0)
        return mine.tokens

    alone = sampled(7, 0)
    assert sampled(7, 3) == alone
    assert {tuple(sampled(seed, 0)) for seed in range(4)} != {tuple(alone)}


def test_models_it_cannot_run_are_refused(tiny_t5: Path, noisy: tuple[Any, Any]) -> None:
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    from tunesmith.engine import Unsupported, build_engine

    with pytest.raises(Unsupported):
        build_engine(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), "fp32")
    dora = get_peft_model(copy.deepcopy(noisy[0]), LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    with pytest.raises(Unsupported, match="LORA"):
        build_engine(dora, "fp32")


def _run(batch: Any, sequences: list[Any], join_every: int) -> None:
    """Decode ``sequences`` to the end: all at once, or one more joining every ``join_every`` steps."""
    waiting = list(sequences)
    steps = 0
    while waiting or batch.rows:
        if waiting and (join_every == 0 or steps % join_every == 0):
            batch.join(waiting if join_every == 0 else [waiting[0]])
            waiting = [] if join_every == 0 else waiting[1:]
        for sequence in [s for s in batch.rows if s.finished]:
            batch.leave(sequence)
        if batch.rows:
            batch.step()
            steps += 1
        for sequence in [s for s in batch.rows if s.finished]:
            batch.leave(sequence)
