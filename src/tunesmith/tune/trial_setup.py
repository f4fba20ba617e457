"""What every trial shares, whichever way it trains: the picklable ``TrialSetup``, the trial's config, reporting.

A trial function (``tune/trial.py`` for one process, ``tune/workers.py`` for several Ray Train workers) runs on a
Ray worker, so everything it needs travels in a ``TrialSetup``; ``ReportCallback`` reports each evaluation to
Ray, which lets ASHA stop a weak trial between evaluations.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesmith.config import RunConfig, TrackConfig
from tunesmith.errors import TunesmithError
from tunesmith.track.trackers import end_abandoned_run
from tunesmith.tune.space import trial_config

TRIAL_KEY = "_trial"  # the trial's number, added to the sampled values by the study's searcher


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the base config, where runs go, what to report."""

    base: dict[str, Any]
    study_dir: Path
    study_id: str
    metric: str  # the Trainer's name, e.g. eval_loss, eval_bleu
    evaluations: int
    train_rows: int
    cache_dir: str
    task_metric: str | None  # the eval.metrics entry that produces `metric`, when it is a task metric
    workers: int = 1  # training processes per trial; above 1, a Ray Train run (see tune/workers.py)
    worker_cpu: float = 1.0
    worker_gpu: float = 0.0

    @property
    def trials_dir(self) -> Path:
        """Where the trials' run directories are created."""
        return self.study_dir / "trials"

    @property
    def track(self) -> TrackConfig:
        """The trials' tracker settings (the driver settled them: one store, one experiment)."""
        return TrackConfig.model_validate(self.base.get("track", {}))

    def run_name(self, index: int) -> str:
        """The trial's run name: its run directory is <run_name>-<timestamp>."""
        return f"{self.base['name']}-t{index:03d}"


def build_trial(setup: TrialSetup, values: dict[str, Any], index: int) -> RunConfig:
    """The config a trial trains: the sample applied, evaluations spread over the run, no checkpoints kept."""
    cfg = trial_config(setup.base, values, source=f"trial {index}")
    steps = planned_steps(cfg, setup.train_rows, setup.workers)
    eval_steps = max(1, steps // setup.evaluations)
    cfg.name = setup.run_name(index)
    if setup.task_metric and setup.task_metric not in (cfg.eval.metrics or []):
        cfg.eval.metrics = [*(cfg.eval.metrics or []), setup.task_metric]
    cfg.train.eval_steps = eval_steps
    if not cfg.train.early_stopping_patience and cfg.train.select_by == "eval_loss":
        cfg.train.save_steps = steps + 1  # a trial is never resumed: checkpoints would only cost time
    return cfg


def planned_steps(cfg: RunConfig, train_rows: int, processes: int = 1) -> int:
    """Optimizer steps the run will take (max_steps, or epochs over the training rows split among processes).

    Where answers are sampled (grpo), a batch row is one answer: each training prompt fills num_generations rows.
    """
    from tunesmith.train.objectives import objective_for

    if cfg.train.max_steps:
        return cfg.train.max_steps
    sampled = objective_for(cfg).generations
    rows = train_rows * (sampled(cfg) if sampled else 1)
    per_epoch = math.ceil(math.ceil(rows / (cfg.train.batch_size * processes)) / cfg.train.grad_accum)
    return max(1, math.ceil(per_epoch * cfg.train.epochs))


def trial_values(config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(the trial's number, its sampled values) from the config Ray Tune hands a trial function."""
    return int(config[TRIAL_KEY]), {k: v for k, v in config.items() if k != TRIAL_KEY}


def plain_error_line(text: str) -> str:
    """An exception's last non-empty line, without module paths or Ray's wrapping ("" when there is none)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return re.sub(r"^(?:\w+\.)+(\w+: )", r"\1", lines[-1]).removeprefix("TunesmithError: ")


def use_driver_environment(setup: TrialSetup) -> None:
    """Set what the study's driver decided; workers may have started before it (a shared Ray, a cluster)."""
    os.environ["TUNESMITH_CACHE"] = setup.cache_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def mark_stopped_early(setup: TrialSetup, index: int) -> Path | None:
    """Record in the trial's run.json that the study stopped it early (it is not a failed run)."""
    from tunesmith.rundir import RunRecord

    found = sorted(setup.trials_dir.glob(f"{setup.run_name(index)}-*"))
    if not found:
        return None
    record = RunRecord(found[-1])
    if record.status != "completed":
        record.set_status("interrupted", error=None, stopped_early=f"by ASHA in study {setup.study_id}")
        end_abandoned_run(setup.track, found[-1])
    return found[-1]


class ReportCallback(TrainerCallback):
    """Report every evaluation's metrics to Ray Tune; a non-finite loss fails the trial with a clear error."""

    def __init__(self, metric: str, report: Callable[[dict[str, float]], None] | None = None) -> None:
        self.metric = metric
        self.report = report  # None: Ray Tune's tune.report; a Ray Train worker passes ray.train.report
        self.reported_step = -1

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            raise TunesmithError(f"training loss is {loss} at step {state.global_step} (lower train.learning_rate?)")

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        # The run's closing evaluation repeats the last periodic one when they fall on the same step.
        if not metrics or state.global_step == self.reported_step:
            return
        value = metrics.get(self.metric)
        if value is None:
            raise TunesmithError(f"tune.metric: the evaluation did not produce {self.metric}")
        if not math.isfinite(value):
            raise TunesmithError(f"{self.metric} is {value} at step {state.global_step} (the run diverged)")
        self.reported_step = state.global_step
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
        report = self.report
        if report is None:
            from ray import tune

            report = tune.report
        report({**numbers, "step": state.global_step})
