"""Trainer callbacks: a progress bar with loss, tokens/s and ETA, metrics.jsonl and live.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class ProgressCallback(TrainerCallback):
    """One progress bar: step, loss, tokens/s (non-pad tokens), ETA."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.loss: float | None = None
        self.start_time = 0.0
        self.start_tokens = 0
        self.tokens_per_second = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        if not state.is_world_process_zero:
            return
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step", mininterval=1.0)
        self.start_time, self.start_tokens = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.start_time
        if elapsed > 0:
            self.tokens_per_second = (state.num_input_tokens_seen - self.start_tokens) / elapsed
        postfix = {"tok/s": f"{self.tokens_per_second:.0f}"}
        if self.loss is not None:
            postfix = {"loss": f"{self.loss:.4f}", **postfix}
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsFileCallback(TrainerCallback):
    """Append every log event (training loss, evaluations) to metrics.jsonl as one JSON object."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3)}
        record["tokens_seen"] = state.num_input_tokens_seen
        record.update({k: v for k, v in logs.items() if isinstance(v, int | float | str)})
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


class LiveStatusCallback(TrainerCallback):
    """``live.json``: what the training process is doing now, for whoever watches the run (the UI).

    metrics.jsonl gets a row per logging step; this file is rewritten (atomically) as the run goes: the step
    of every optimizer step, whether an evaluation is running and how far it got, and where this process's
    own training began (so rates after a resume count only the resumed process's time, not the pause). It
    sits before GenerationMetricsCallback, so it can say "answering samples" while that one generates.
    """

    MIN_INTERVAL = 0.5  # seconds between rewrites within one phase; a phase change is written at once

    def __init__(self, path: Path, samples: int = 0) -> None:
        self.path, self.samples = path, samples
        self.data: dict[str, Any] = {}
        self.written_at = 0.0
        self.ended = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        now = time.time()
        session = {"started": now, "step": state.global_step, "tokens_seen": state.num_input_tokens_seen}
        self.data = {"pid": os.getpid(), "phase": "train", "step": state.global_step, "max_steps": state.max_steps,
                     "tokens_seen": state.num_input_tokens_seen, "time": now, "session": session}  # fmt: skip
        self._write(force=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.data:
            return
        now = time.time()
        session = self.data["session"]
        if "first_step_time" not in session:  # the first step pays for warm-up: rates start after it
            session.update(first_step_time=now, first_step=state.global_step, first_tokens=state.num_input_tokens_seen)
        changed = self.data["phase"] != "train"
        self.data.update(phase="train", step=state.global_step, tokens_seen=state.num_input_tokens_seen, time=now)
        self.data.pop("eval", None)
        self._write(force=changed)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.data:
            return
        loader = kwargs.get("eval_dataloader")
        starting = self.data["phase"] != "eval"
        if starting:
            self.data["eval"] = {"at_step": state.global_step, "started": time.time(), "batches": 0,
                                 "total": _length(loader), "final": self.ended}  # fmt: skip
        self.data["phase"] = "eval"
        self.data["eval"]["batches"] += 1
        self._write(force=starting)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The loss is computed; a GenerationMetricsCallback (after this one) now answers its samples.
        if self.data and self.samples and "eval" in self.data:
            self.data["phase"] = "generate"
            self.data["eval"]["samples"] = self.samples
            self._write(force=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # What follows is the run's closing work: an evaluation of the final weights (unless one already
        # scored them) and saving the model.
        self.ended = True
        if self.data:
            self.data.update(phase="closing", step=state.global_step, time=time.time())
            self.data.pop("eval", None)
            self._write(force=True)

    def _write(self, force: bool) -> None:
        from tunesmith.rundir import atomic_write

        now = time.monotonic()
        if force or now - self.written_at >= self.MIN_INTERVAL:
            self.written_at = now
            atomic_write(self.path, json.dumps(self.data) + "\n")


def _length(loader: Any) -> int | None:
    try:
        return len(loader) if loader is not None else None
    except TypeError:  # an iterable dataset has no length
        return None


class EvaluationClock(TrainerCallback):
    """Seconds spent in evaluations during training (the eval loop's own runtime), and each one's metrics.

    The metrics are kept by step so the run can reuse the evaluation of the weights it ends with instead of
    scoring them a second time. The dict is the Trainer's own: callbacks after this one (generation metrics)
    add to it in place, so it is complete once the evaluation has finished.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.by_step: dict[int, dict[str, float]] = {}

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        runtime = (metrics or {}).get("eval_runtime")
        if isinstance(runtime, int | float):
            self.seconds += float(runtime)
        if metrics is not None:
            self.by_step[state.global_step] = metrics


class GracefulStopCallback(TrainerCallback):
    """First Ctrl-C / SIGTERM: finish the step, save a checkpoint, stop. A second one aborts at once."""

    # A launcher and a terminal may deliver the same Ctrl-C twice within moments; only a later one aborts.
    ABORT_AFTER_SECONDS = 2.0

    def __init__(self) -> None:
        self.requested = False
        self.requested_at = 0.0

    def request(self, signum: int, frame: Any) -> None:
        """Signal handler."""
        if self.requested:
            if time.monotonic() - self.requested_at > self.ABORT_AFTER_SECONDS:
                raise KeyboardInterrupt
            return
        self.requested, self.requested_at = True, time.monotonic()
        from tunesmith.console import say

        say("\nstopping after this step and saving a checkpoint (press Ctrl-C again to abort now)")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.requested = _any_rank(self.requested)
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


def _any_rank(flag: bool) -> bool:
    # Every process must stop after the same step, or the next collective waits forever.
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    shared = torch.tensor([int(flag)])
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    return bool(shared.item())
