"""Ray Tune wiring: the sampler, the memory gate in front of it, ASHA, and the recorder of finished trials.

Only this module and study.py touch Ray, and both import it lazily (``tunesmith --help`` stays instant).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from tunesmith.config import TuneConfig
from tunesmith.rundir import RunRecord
from tunesmith.tune.record import StudyLog, TrialRow
from tunesmith.tune.space import Param, optuna_point, sample
from tunesmith.tune.trial import run_trial
from tunesmith.tune.trial_setup import TRIAL_KEY, TrialSetup, mark_stopped_early, plain_error_line
from tunesmith.tune.workers import DRIVER_CPU, run_distributed_trial

Admit = Callable[[int, dict[str, Any]], TrialRow | None]


class MemoryGate(Searcher):
    """Wraps the sampler: a sample that cannot fit in memory (or is no valid config) is recorded, not launched.

    It also numbers the trials and stops the study after ``num_trials`` samples, skipped ones included.
    """

    def __init__(self, inner: Searcher, admit: Admit, log: StudyLog, num_trials: int) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.admit, self.log = inner, admit, log
        self.remaining = num_trials
        self.next_index = log.next_index()
        self.values: dict[str, tuple[int, dict[str, Any]]] = {}  # Ray trial id -> (number, sampled values)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray returns FINISHED too
        attempt = 0
        while self.remaining > 0:
            inner_id = trial_id if attempt == 0 else f"{trial_id}-{attempt}"
            values = self.inner.suggest(inner_id)
            if values is None or values == Searcher.FINISHED:
                return values
            index, self.next_index, self.remaining = self.next_index, self.next_index + 1, self.remaining - 1
            rejected = self.admit(index, values)
            if rejected is None:
                self.values[trial_id] = (index, values)
                return {**values, TRIAL_KEY: index}
            self.log.add(rejected)
            self.inner.on_trial_complete(inner_id, None, error=True)
            attempt += 1
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a study's state lives in trials.jsonl and optuna.db, which --resume reads."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore (see save)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result, error=error)


class Recorder(tune.Callback):
    """Driver side: keeps each trial's metric history and writes its row to trials.jsonl when it ends."""

    def __init__(self, gate: MemoryGate, log: StudyLog, setup: TrialSetup, say: Callable[[str], None]) -> None:
        self.gate, self.log, self.study, self.say = gate, log, setup, say
        self.history: dict[str, list[float]] = {}
        self.interrupted = False

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        """Chain onto Ray's Ctrl-C handler (installed just before this runs): trials it ends are not ASHA's."""
        if threading.current_thread() is not threading.main_thread():
            return
        ray_handler = signal.getsignal(signal.SIGINT)

        def interrupted(signum: int, frame: Any) -> None:
            self.interrupted = True
            self.say("stopping the study: running trials end now, finished ones are kept (Ctrl-C again to abort)")
            if callable(ray_handler):
                ray_handler(signum, frame)

        signal.signal(signal.SIGINT, interrupted)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.history.setdefault(trial.trial_id, []).append(float(result[self.study.metric]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        index, _ = self.gate.values[trial.trial_id]
        run_dir = self._run_dir(trial)
        if run_dir is not None and RunRecord(run_dir).status == "completed":
            self._add(trial, "completed", run_dir=run_dir)
        elif not self.interrupted:
            self._add(trial, "stopped-early", run_dir=mark_stopped_early(self.study, index))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.interrupted:
            return  # ended by Ctrl-C, not by its own error: --resume runs a trial in its place
        self._add(trial, "failed", run_dir=self._run_dir(trial), error=_error_line(trial))

    def _add(self, trial: Any, status: Any, run_dir: Path | None, error: str = "") -> None:
        index, values = self.gate.values[trial.trial_id]
        history = self.history.get(trial.trial_id, [])
        row = TrialRow(index, status, values, history, error=error, run_dir=str(run_dir or ""))
        self.log.add(row)
        last = f"{self.study.metric} {history[-1]:.4f} after {len(history)} evaluations" if history else "no evaluation"
        self.say(f"trial {index}: {status}, {last}" + (f": {error}" if error else ""))

    def _run_dir(self, trial: Any) -> Path | None:
        index, _ = self.gate.values[trial.trial_id]
        found = sorted(self.study.trials_dir.glob(f"{self.study.run_name(index)}-*"))
        return found[-1] if found else None


def _error_line(trial: Any) -> str:
    # The trial's exception, without Ray's wrapping and traceback: its last non-empty line.
    local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    text = local.read_text() if local is not None and local.is_file() else str(trial.get_error() or "")
    return plain_error_line(text) or "the trial failed"


@dataclass
class Engine:
    """Everything a study run needs from Ray."""

    tuner: Any
    recorder: Recorder


def build_engine(
    tune_cfg: TuneConfig,
    params: list[Param],
    setup: TrialSetup,
    log: StudyLog,
    admit: Admit,
    mode: str,
    say: Callable[[str], None],
    callbacks: list[Any] | None = None,
) -> Engine:
    """A Tuner for the trials still to run: Optuna (TPE or random) behind the memory gate, ASHA or FIFO."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    remaining = tune_cfg.num_trials - len(log.rows)
    sampler = (
        optuna.samplers.TPESampler(seed=tune_cfg.seed)
        if tune_cfg.search == "optuna"
        else optuna.samplers.RandomSampler(seed=tune_cfg.seed)
    )
    points = [
        optuna_point(params, p) for p in tune_cfg.points[len(log.rows) :]
    ]  # a resumed study does not retry the points it already tried
    inner = OptunaSearch(
        space=lambda trial: sample(params, trial),
        metric=setup.metric,
        mode=mode,
        sampler=sampler,
        points_to_evaluate=points or None,
        # A resumed study's sampler remembers the trials before it.
        storage=optuna.storages.RDBStorage(f"sqlite:///{setup.study_dir / 'optuna.db'}"),
        study_name="tunesmith",
    )
    gate = MemoryGate(inner, admit, log, remaining)
    recorder = Recorder(gate, log, setup, say)
    distributed = tune_cfg.resources_per_trial.workers > 1
    trial_function = run_distributed_trial if distributed else run_trial
    trainable = tune.with_resources(tune.with_parameters(trial_function, setup=setup), trial_resources(tune_cfg))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=setup.metric,
            mode=mode,
            search_alg=gate,
            scheduler=_scheduler(tune_cfg),
            num_samples=remaining,
            max_concurrent_trials=tune_cfg.max_concurrent,
            # A worker that already imported torch and transformers starts the next trial. Not so for Ray Train
            # trials: their Tune actor only waits, and ending it is what ends a stopped trial's workers.
            reuse_actors=not distributed,
        ),
        run_config=tune.RunConfig(
            name=f"ray-{len(log.rows)}",
            storage_path=str((setup.study_dir / "ray").resolve()),
            verbose=0,
            callbacks=[recorder, *(callbacks or [])],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    return Engine(tuner, recorder)


def trial_resources(tune_cfg: TuneConfig) -> dict[str, float]:
    """What one Tune trial reserves: all of it, or (Ray Train trials) a sliver while its workers hold the rest."""
    r = tune_cfg.resources_per_trial
    return {"cpu": r.cpu, "gpu": r.gpu} if r.workers == 1 else {"cpu": DRIVER_CPU}


def _scheduler(tune_cfg: TuneConfig) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = tune_cfg.scheduler
    if s.name == "fifo":
        return FIFOScheduler()
    # max_t: every evaluation, plus the closing one when max_steps is not a multiple of eval_steps.
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=tune_cfg.evaluations + 1,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )
