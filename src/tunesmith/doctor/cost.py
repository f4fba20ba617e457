"""The doctor's cost estimate: a few real optimizer steps on real batches, timed at the run's precision.

A supervised step is one batch of rows; a GRPO step is sampling its answers (timed by the GRPO checks, see
``tunesmith.doctor.grpo``) and then the optimisation on them, timed here on the answers the doctor sampled.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from tunesmith.config import RunConfig, preference_beta
from tunesmith.data.prepare import PreparedData
from tunesmith.doctor.findings import TIMED_STEPS, Timing


@dataclass
class LoadedModel:
    """The model as training starts it (weights, method, training mode), on the device the estimate runs on."""

    model: Any
    device: str
    precision: str
    packing: bool


def load_model(cfg: RunConfig, resolved: Any, labels: list[str] | None = None) -> LoadedModel:
    """Load the weights, apply the method and prepare the model exactly as training does."""
    import torch
    from transformers import set_seed

    from tunesmith.methods import apply_method, get_method
    from tunesmith.models import head_kwargs
    from tunesmith.models.precision import resolve_precision
    from tunesmith.models.run_model import load_weights
    from tunesmith.train.runner import prepare_for_training

    precision, _ = resolve_precision(cfg.train.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_seed(cfg.train.seed)
    method = get_method(cfg.method.name)
    model = load_weights(resolved, cfg.model, cfg.task, **head_kwargs(labels))
    model = apply_method(model, cfg.method, cfg.task).to(device)
    model.train()
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if method.adapter:
            model.enable_input_require_grads()
    packing = prepare_for_training(cfg, model, method, precision)
    return LoadedModel(model, device, precision, packing)


def estimate_cost(cfg: RunConfig, resolved: Any, tokenizer: Any, prepared: PreparedData) -> Timing:
    """Load the model, apply the method and time a few optimizer steps on real batches at the run's precision.

    The first step runs on the longest rows (so the memory peak is the run's worst batch) and is not timed;
    the next ones, on the first batches, are. Evaluation and checkpointing are not included.
    """
    from tunesmith.data.collate import make_collator

    loaded = load_model(cfg, resolved, prepared.labels)
    collate = make_collator(tokenizer, loaded.packing, cfg.task, loaded.model)
    batches = _timing_batches(prepared.train, cfg.train.batch_size)
    durations = time_steps(loaded, collate, batches, cfg.train.learning_rate)
    per_step = _timed_median(durations)
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    run_steps = (
        cfg.train.max_steps * cfg.train.grad_accum if cfg.train.max_steps else steps_per_epoch * cfg.train.epochs
    )
    return _timing(cfg, loaded, len(durations) - 1, per_step, steps_per_epoch, run_steps)


def estimate_grpo_cost(
    cfg: RunConfig,
    loaded: LoadedModel,
    tokenizer: Any,
    sequences: list[tuple[list[int], list[int]]],
    generation: float,
    train_prompts: int,
) -> Timing:
    """A GRPO optimizer step: ``generation`` (seconds to sample one step's answers, measured by the caller) plus
    grad_accum batches of train.batch_size answers, timed on ``sequences`` (prompt ids, sampled answer ids).

    As for supervised runs, the first batch (the longest answers) is not timed. With train.beta > 0 each batch
    also runs a forward pass without gradients, the reference model's log-probabilities.
    """
    from datasets import Dataset

    from tunesmith.data.collate import make_collator
    from tunesmith.data.tokenize import IGNORE_INDEX

    rows = Dataset.from_list(
        [{"input_ids": p + a, "labels": [IGNORE_INDEX] * len(p) + a, "length": len(p) + len(a)} for p, a in sequences]
    )
    collate = make_collator(tokenizer, False, cfg.task, loaded.model)
    batches = _timing_batches(rows, cfg.train.batch_size)
    durations = time_steps(loaded, collate, batches, cfg.train.learning_rate, preference_beta(cfg.train) > 0)
    optimisation = _timed_median(durations) * cfg.train.grad_accum
    answers = cfg.train.batch_size * cfg.train.grad_accum
    prompts = answers // cfg.train.grpo.num_generations
    steps_per_epoch = math.ceil(train_prompts / prompts)
    run_steps = cfg.train.max_steps or math.ceil(steps_per_epoch * cfg.train.epochs)
    timing = _timing(cfg, loaded, len(durations) - 1, generation + optimisation, steps_per_epoch, run_steps)
    timing.generation_seconds = round(generation, 3)
    timing.prompts_per_step, timing.answers_per_step, timing.answers_sampled = prompts, answers, len(sequences)
    return timing


def time_steps(
    loaded: LoadedModel,
    collate: Any,
    batches: list[list[dict[str, Any]]],
    learning_rate: float,
    reference: bool = False,
) -> list[float]:
    """Seconds of each optimizer step (forward, backward, AdamW) on each batch; with ``reference``, plus a
    forward pass without gradients (a reference model's log-probabilities)."""
    import time

    import torch

    from tunesmith.data.collate import packed_response_loss

    model, device = loaded.model, loaded.device
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(loaded.precision)
    durations = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for rows in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(rows).items()}
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            if reference:
                with torch.no_grad():
                    model(**batch, use_cache=False)
            if loaded.packing:
                labels = batch.pop("labels")
                loss = packed_response_loss(model(**batch, use_cache=False), labels)
            else:
                loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return durations


def _timed_median(durations: list[float]) -> float:
    # The first step (the longest rows, warming up) is not timed, unless it is the only one.
    return statistics.median(durations[1:]) if len(durations) > 1 else durations[0]


def _timing(
    cfg: RunConfig, loaded: LoadedModel, timed: int, per_step: float, steps_per_epoch: int, run_steps: float
) -> Timing:
    import torch

    cuda = loaded.device == "cuda"
    return Timing(
        device=loaded.device,
        precision=loaded.precision,
        batch_size=cfg.train.batch_size,
        packing=loaded.packing,
        steps_timed=timed,
        seconds_per_step=round(per_step, 4),
        steps_per_epoch=steps_per_epoch,
        seconds_per_epoch=round(per_step * steps_per_epoch, 1),
        seconds_for_run=round(per_step * run_steps, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        peak_gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    )


def timing_summary(timing: Timing) -> str:
    """One line: the estimate, labelled as one."""
    if timing.generation_seconds is not None:
        return _grpo_summary(timing)
    gpu = f", peak GPU memory {timing.peak_gpu_mb:,.0f} MB" if timing.peak_gpu_mb is not None else ""
    return (
        f"estimate from {timing.steps_timed} timed steps ({timing.device}, {timing.precision}, "
        f"batch {timing.batch_size}{', packed' if timing.packing else ''}): {timing.seconds_per_step:.2f} s/step, "
        f"~{_duration(timing.seconds_per_epoch)} per epoch ({timing.steps_per_epoch} steps), "
        f"~{_duration(timing.seconds_for_run)} for the run; peak memory (process RSS) {timing.peak_rss_mb:,.0f} MB"
        f"{gpu}; evaluation and checkpoints not included, other load on this machine skews it"
    )


def _grpo_summary(timing: Timing) -> str:
    generation = timing.generation_seconds or 0.0
    optimisation = timing.seconds_per_step - generation
    accumulation = timing.answers_per_step // timing.batch_size
    gpu = f", peak GPU memory {timing.peak_gpu_mb:,.0f} MB" if timing.peak_gpu_mb is not None else ""
    return (
        f"estimate ({timing.device}, {timing.precision}): {timing.seconds_per_step:.1f} s/step = generation "
        f"{generation:.1f} s ({timing.answers_per_step} answers: {timing.prompts_per_step} prompts x "
        f"{timing.answers_per_step // max(1, timing.prompts_per_step)}, measured on {timing.answers_sampled} "
        f"base-model answers) + optimisation {optimisation:.1f} s ({accumulation} x batch {timing.batch_size}, "
        f"from {timing.steps_timed} timed batches); ~{_duration(timing.seconds_per_epoch)} per epoch "
        f"({timing.steps_per_epoch} steps), ~{_duration(timing.seconds_for_run)} for the run; peak memory (process "
        f"RSS) {timing.peak_rss_mb:,.0f} MB{gpu}; rewards, evaluation and checkpoints not included, other load on "
        "this machine skews it"
    )


def _timing_batches(dataset: Any, batch_size: int) -> list[list[dict[str, Any]]]:
    lengths = list(dataset["length"])
    longest = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)[:batch_size]
    timed = [[(i * batch_size + j) % len(lengths) for j in range(batch_size)] for i in range(TIMED_STEPS)]
    return [
        [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in dataset.select(indices)]
        for indices in [longest, *timed]
    ]


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
