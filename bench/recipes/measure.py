"""Measurements shared by every recipe: step timing, peak memory, held-out loss, FLOPs per token.

A recipe adds one :class:`StepTimer` to its Trainer and prints :func:`emit`'s JSON line when done. The timer
only reads the trainer's state, so it measures a recipe without changing how it trains.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from recipes.spec import IGNORE_INDEX, Spec, encode_masked, read_rows

HELDOUT_BATCH = 8


@dataclass
class HeldOut:
    """A fixed held-out set, scored the same way for every recipe: mean cross-entropy per response token."""

    batches: list[dict[str, torch.Tensor]]

    @classmethod
    def build(cls, tokenizer: Any, spec: Spec) -> HeldOut | None:
        """Tokenise the held-out rows (prompt masked) into right-padded batches; None when the spec skips them."""
        if not spec.score_heldout:
            return None
        rows = [encode_masked(tokenizer, row, spec) for row in read_rows(spec.heldout_csv)]
        chunks = [rows[i : i + HELDOUT_BATCH] for i in range(0, len(rows), HELDOUT_BATCH)]
        return cls([_pad(chunk, tokenizer.pad_token_id) for chunk in chunks])

    @torch.no_grad()
    def loss(self, model: Any) -> float:
        """Token-weighted mean loss of ``model`` on the held-out rows, in fp32 and eval mode."""
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with _without_autocast_wrapper(model):
            for batch in self.batches:
                total, count = total + _loss_sum(model, batch), count + int((batch["labels"] != IGNORE_INDEX).sum())
        model.train(was_training)
        return total / count


def _loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> float:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(logits, batch["labels"][:, 1:].reshape(-1), reduction="sum").item()


@contextlib.contextmanager
def _without_autocast_wrapper(model: Any) -> Iterator[None]:
    # With bf16=True, accelerate wraps model.forward in autocast and keeps the original as _original_forward;
    # score every recipe in plain fp32 by calling the original while measuring, then put the wrapper back.
    saved = {key: model.__dict__[key] for key in ("forward", "_original_forward") if key in model.__dict__}
    if "_original_forward" in saved:
        model.forward = saved["_original_forward"]
    try:
        yield
    finally:
        model.__dict__.pop("forward", None)
        model.__dict__.update(saved)


def _pad(rows: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {key: torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows]) for key, value in fill.items()}


@dataclass
class StepTimer(TrainerCallback):
    """Time and token marks at every step end; held-out loss before and after; peak RSS at the end."""

    heldout: HeldOut | None
    warmup_steps: int
    marks: list[tuple[float, int]] = field(default_factory=list)
    rss_gib: list[float] = field(default_factory=list)  # resident memory at each step end
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    params: tuple[int, int] = (0, 0)
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    peak_rss_gib: float = 0.0
    started: float = 0.0  # when training began (after the untimed scoring)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Count parameters and score the untouched model (not timed)."""
        self.params = parameter_counts(model)
        if self.heldout is not None:
            self.loss_before = self.heldout.loss(model)
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Mark the wall clock, the real (attended) tokens seen so far and the resident memory."""
        self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))
        self.rss_gib.append(current_rss_gib())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Keep the logged training losses."""
        if logs and "loss" in logs:
            self.train_losses.append((state.global_step, float(logs["loss"])))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Peak memory first (the evaluation must not count), then the held-out loss of the trained model."""
        self.peak_rss_gib = peak_rss_gib()
        if self.heldout is not None:
            self.loss_after = self.heldout.loss(model)

    def summary(self) -> dict[str, Any]:
        """Throughput over the steps after warm-up, plus the losses and memory."""
        if not 1 <= self.warmup_steps < len(self.marks):
            raise RuntimeError(f"{len(self.marks)} steps ran; need 1 <= warm-up steps ({self.warmup_steps}) < steps")
        (t0, n0), (t1, n1) = self.marks[self.warmup_steps - 1], self.marks[-1]
        timed_steps = len(self.marks) - self.warmup_steps
        return {
            "steps": len(self.marks),
            "timed_steps": timed_steps,
            "tokens_timed": n1 - n0,
            "seconds_timed": round(t1 - t0, 3),
            "tokens_per_second": round((n1 - n0) / (t1 - t0), 2),
            "seconds_per_step": round((t1 - t0) / timed_steps, 3),
            "tokens_per_step": round(n1 / len(self.marks), 1),
            "tokens_seen": n1,
            "train_seconds": round(t1 - self.started, 3),
            "tokens_per_second_all": round(n1 / (t1 - self.started), 1),
            "step_seconds": [round(b[0] - a[0], 2) for a, b in zip(self.marks, self.marks[1:], strict=False)],
            "peak_rss_gib": round(self.peak_rss_gib, 3),
            "heldout_loss_before": round(self.loss_before, 4),
            "heldout_loss_after": round(self.loss_after, 4),
            "train_loss_last_logged": self.train_losses[-1][1] if self.train_losses else None,
            "train_losses_logged": self.train_losses,
            "params_trainable": self.params[0],
            "params_total": self.params[1],
            **self.long_run(),
        }

    def long_run(self, share: float = 0.1, settled_step: int = 20) -> dict[str, Any]:
        """Does a long run stay fast and flat: tokens/s over the first and last ``share`` of the steps (after
        warm-up), and peak memory against the memory after step ``settled_step``. Empty for short runs."""
        if len(self.marks) < 5 * settled_step:
            return {}
        timed = self.marks[self.warmup_steps - 1 :]
        window = max(2, round(len(timed) * share))
        first, last = _rate(timed[: window + 1]), _rate(timed[-window - 1 :])
        settled = self.rss_gib[settled_step - 1]
        return {
            "long_tokens_per_second_first": round(first, 1),
            "long_tokens_per_second_last": round(last, 1),
            "long_last_vs_first": round(last / first, 3),
            "long_rss_gib_after_step": [settled_step, round(settled, 3)],
            "long_peak_rss_vs_settled": round(self.peak_rss_gib / settled, 3),
            "rss_gib_every_10_steps": [round(v, 3) for v in self.rss_gib[::10]],
        }


def _rate(marks: list[tuple[float, int]]) -> float:
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters; tied weights count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def current_rss_gib() -> float:
    """This process's resident set size now, in GiB (from /proc: one small read, cheap enough per step)."""
    import os
    from pathlib import Path

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def schedule(spec: Spec) -> dict[str, Any]:
    """TrainingArguments for how long to train: ``spec.epochs`` epochs, or ``spec.steps`` steps."""
    if spec.epochs:
        return {"num_train_epochs": spec.epochs, "max_steps": -1}
    return {"max_steps": spec.steps}


def peak_rss_gib() -> float:
    """This process's peak resident set size in GiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def flops_per_token(total: int, trainable: int, full: bool) -> tuple[float, str]:
    """Training FLOPs per token and the formula used (attention score FLOPs are left out).

    Full fine-tune: forward 2N + backward 4N = 6N. Adapters: forward 2N + activation gradients 2N + weight
    gradients of the trainable part 2T = 4N + 2T, N counting the adapter weights too.
    """
    if full:
        return 6.0 * total, "6N"
    return 4.0 * total + 2.0 * trainable, "4N + 2T"


def emit(recipe: str, timer: StepTimer, full: bool, **extra: Any) -> None:
    """Print the recipe's measurements as one JSON line (the last line of stdout)."""
    result = {"recipe": recipe, **extra, **timer.summary()}
    result["flops_per_token"], result["flops_formula"] = flops_per_token(
        result["params_total"], result["params_trainable"], full
    )
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result), flush=True)


@contextlib.contextmanager
def every_trainer_gets(callback: Any) -> Iterator[None]:
    """Every Trainer built inside gets ``callback`` too: measurement only, training is unchanged.

    For code that builds its Trainer out of reach (tunesmith's runner); it must import Trainer inside.
    """
    import transformers

    original = transformers.Trainer

    class MeasuredTrainer(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(callback)

    transformers.Trainer = MeasuredTrainer
    try:
        yield
    finally:
        transformers.Trainer = original
