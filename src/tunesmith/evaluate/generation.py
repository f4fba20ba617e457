"""Batched generation from a run's model, greedy by default.

The built-in engine (tunesmith.engine) answers where it runs the model: ``batch_size`` rows decode together
and a finished row's place goes to the next prompt at once. Other models (encoder-decoder, other adapter
kinds) and repetition penalties go through transformers' ``generate`` in left-padded batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.progress import Progress
from tunesmith.models.precision import autocast
from tunesmith.models.run_model import base_model_view, load_run_model


@dataclass(frozen=True)
class Decoding:
    """Decoding settings; the same settings give the same outputs."""

    max_new_tokens: int = 96
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For eval.json and logs."""
        return asdict(self)


def generate(
    model: Any,
    tokenizer: Any,
    config: RunConfig,
    prompts: list[str],
    decoding: Decoding,
    batch_size: int,
    precision: str,
    progress: Progress | None = None,
) -> list[str]:
    """Answer each (already rendered from the template) prompt; batches are left-padded for the KV cache.
    ``progress``: shown answer by answer as they finish."""
    from tunesmith.data.tokenize import prompt_text

    # Encoder-decoder models read the source as is (their tokenizer adds the end marker) and answer in a
    # separate decoder sequence; decoder-only models continue the rendered prompt, so we cut the prompt off.
    if config.task == "seq2seq":
        return _transformers_answers(
            model, tokenizer, prompts, decoding, batch_size, precision, encoder_decoder=True, progress=progress
        )
    texts = [prompt_text(tokenizer, config.data, p) for p in prompts]
    return continue_texts(model, tokenizer, texts, decoding, batch_size, precision, progress)


def continue_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    decoding: Decoding,
    batch_size: int,
    precision: str,
    progress: Progress | None = None,
) -> list[str]:
    """A decoder-only model's continuation of each text, read exactly as given (a conversation rendered up to
    its generation prompt, say): no template applied, no special tokens added."""
    answers = engine_answers(model, tokenizer, texts, decoding, batch_size, precision, progress)
    if answers is not None:
        return answers
    return _transformers_answers(
        model, tokenizer, texts, decoding, batch_size, precision, encoder_decoder=False, progress=progress
    )


def _transformers_answers(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    decoding: Decoding,
    batch_size: int,
    precision: str,
    encoder_decoder: bool,
    progress: Progress | None = None,
) -> list[str]:
    import torch

    if progress is not None:
        progress.begin(len(texts), "answers")
    outputs: list[str] = []
    for start in range(0, len(texts), batch_size):
        # Left padding, passed per call: the tokenizer is shared with training's collators (right padding).
        batch = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=encoder_decoder,
        )
        torch.manual_seed(decoding.seed)
        with torch.inference_mode(), autocast(precision):
            # Only what every generating model reads: BERT-style tokenizers add token_type_ids, which
            # encoder-decoder and decoder-only models refuse.
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            generated = model.generate(**inputs, **generate_kwargs(tokenizer, decoding))
        new_tokens = generated if encoder_decoder else generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        if progress is not None:
            progress.advance(len(new_tokens))
    return outputs


def engine_answers(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    decoding: Decoding,
    batch_size: int,
    precision: str,
    progress: Progress | None = None,
) -> list[str] | None:
    """The built-in engine's answers to rendered prompts, or None where it does not run this model."""
    from tunesmith.engine import Unsupported, build_engine, generate_tokens

    if decoding.repetition_penalty != 1.0 or tokenizer.eos_token_id is None:
        return None
    try:
        engine = build_engine(model, precision)
    except Unsupported:
        return None
    ids = [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    settings = {"sample": decoding.do_sample, "temperature": decoding.temperature, "top_p": decoding.top_p}
    if progress is not None:
        progress.begin(len(ids), "answers")
    eos = {int(tokenizer.eos_token_id)}
    finished = progress.advance if progress is not None else None
    tokens = generate_tokens(
        engine, ids, decoding.max_new_tokens, batch_size, eos, finished, seed=decoding.seed, **settings
    )
    return [t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True)]


def generate_kwargs(tokenizer: Any, decoding: Decoding) -> dict[str, Any]:
    """``model.generate`` settings for ``decoding`` (shared by tunesmith generate/eval and the server)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": decoding.max_new_tokens,
        "do_sample": decoding.do_sample,
        "repetition_penalty": decoding.repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "use_cache": True,
    }
    if decoding.do_sample:
        kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def prompts_from_file(path: Path, config: RunConfig) -> list[str]:
    """Render every row of ``path`` with the run's prompt template."""
    from tunesmith.data.tables import read_table
    from tunesmith.data.templates import check_columns, render

    assert config.data.prompt is not None
    frame = read_table(path, "--input")
    check_columns({"data.prompt": config.data.prompt}, frame.columns, path)
    return [render(config.data.prompt, {str(k): v for k, v in row.items()}) for row in frame.to_dict(orient="records")]


def answer(
    run_dir: Path, prompts: list[str] | None, input_file: Path | None, decoding: Decoding, compare_base: bool
) -> tuple[list[str], list[str], list[str] | None]:
    """(prompts, tuned outputs, base outputs or None) for ``tunesmith generate``."""
    run = load_run_model(run_dir)
    if input_file is not None:
        prompts = prompts_from_file(input_file, run.config)
    if not prompts:
        raise TunesmithError("generate: give --prompt TEXT or --input FILE")
    batch = run.config.eval.batch_size
    tuned = generate(run.model, run.tokenizer, run.config, prompts, decoding, batch, run.precision)
    base = None
    if compare_base:
        with base_model_view(run) as base_model:
            base = generate(base_model, run.tokenizer, run.config, prompts, decoding, batch, run.precision)
    return prompts, tuned, base
