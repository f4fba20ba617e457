"""The doctor's cost estimate: a few real optimizer steps on real batches, timed at the run's precision."""

from __future__ import annotations

import math
import statistics
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.prepare import PreparedData
from tunesmith.doctor.findings import TIMED_STEPS, Timing


def estimate_cost(cfg: RunConfig, resolved: Any, tokenizer: Any, prepared: PreparedData) -> Timing:
    """Load the model, apply the method and time a few optimizer steps on real batches at the run's precision.

    The first step runs on the longest rows (so the memory peak is the run's worst batch) and is not timed;
    the next ones, on the first batches, are. Evaluation and checkpointing are not included.
    """
    import time

    import torch
    from transformers import set_seed

    from tunesmith.data.collate import make_collator, packed_response_loss
    from tunesmith.methods import apply_method, get_method
    from tunesmith.models import head_kwargs
    from tunesmith.models.precision import resolve_precision
    from tunesmith.models.run_model import load_weights
    from tunesmith.train.runner import prepare_for_training

    precision, _ = resolve_precision(cfg.train.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_seed(cfg.train.seed)
    method = get_method(cfg.method.name)
    model = load_weights(resolved, cfg.model, cfg.task, **head_kwargs(prepared.labels))
    model = apply_method(model, cfg.method, cfg.task).to(device)
    model.train()
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if method.adapter:
            model.enable_input_require_grads()
    packing = prepare_for_training(cfg, model, method, precision)
    collate = make_collator(tokenizer, packing, cfg.task, model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    batches = _timing_batches(prepared.train, cfg.train.batch_size)
    durations = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for rows in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(rows).items()}
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            if packing:
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
    per_step = statistics.median(durations[1:]) if len(durations) > 1 else durations[0]
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    run_steps = (
        cfg.train.max_steps * cfg.train.grad_accum if cfg.train.max_steps else steps_per_epoch * cfg.train.epochs
    )
    return Timing(
        device=device,
        precision=precision,
        batch_size=cfg.train.batch_size,
        packing=packing,
        steps_timed=len(durations) - 1,
        seconds_per_step=round(per_step, 4),
        steps_per_epoch=steps_per_epoch,
        seconds_per_epoch=round(per_step * steps_per_epoch, 1),
        seconds_for_run=round(per_step * run_steps, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        peak_gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
    )


def timing_summary(timing: Timing) -> str:
    """One line: the estimate, labelled as one."""
    gpu = f", peak GPU memory {timing.peak_gpu_mb:,.0f} MB" if timing.peak_gpu_mb is not None else ""
    return (
        f"estimate from {timing.steps_timed} timed steps ({timing.device}, {timing.precision}, "
        f"batch {timing.batch_size}{', packed' if timing.packing else ''}): {timing.seconds_per_step:.2f} s/step, "
        f"~{_duration(timing.seconds_per_epoch)} per epoch ({timing.steps_per_epoch} steps), "
        f"~{_duration(timing.seconds_for_run)} for the run; peak memory (process RSS) {timing.peak_rss_mb:,.0f} MB"
        f"{gpu}; evaluation and checkpoints not included, other load on this machine skews it"
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
