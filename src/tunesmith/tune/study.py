"""``tunesmith tune``: check the space -> prepare the data once -> run the trials on Ray -> write the outputs.

Everything that can fail because of user input (space keys, values, metric, data, --address) fails before
the first trial, in one TunesmithError line. Once trials run, each finished trial is on disk at once
(trials.jsonl), so Ctrl-C keeps what finished and ``--resume`` continues the study up to num_trials.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.cache import cache_root
from tunesmith.config import RunConfig, TuneConfig, dump_config, load_config
from tunesmith.console import quiet_libraries, say
from tunesmith.errors import TunesmithError
from tunesmith.metric_specs import direction, score_keys, task_metrics
from tunesmith.rundir import atomic_write, new_run_dir, now_iso
from tunesmith.track.trackers import check_trackers, end_abandoned_run, settle_for_trials
from tunesmith.tune.memory import MemoryEstimate, available_memory, estimate_memory, model_shape
from tunesmith.tune.outputs import write_outputs
from tunesmith.tune.record import StudyLog, TrialRow
from tunesmith.tune.space import Param, check_space, trial_config
from tunesmith.tune.trial_setup import TrialSetup, build_trial


@dataclass
class StudyResult:
    """A finished (or interrupted) study."""

    study_dir: Path
    rows: list[TrialRow]
    metric: str
    mode: str
    best: TrialRow | None
    interrupted: bool
    outputs: dict[str, Path] = field(default_factory=dict)


def tune_from_file(
    config_path: Path,
    overrides: list[str],
    output_dir: Path = Path("tune"),
    address: str | None = None,
    resume: Path | None = None,
    callbacks: list[Any] | None = None,
) -> StudyResult:
    """Load a config with a tune section and run (or, with ``resume``, continue) its study."""
    cfg = load_config(config_path, overrides)
    return run_study(cfg, str(config_path), output_dir, address, resume, callbacks)


def run_study(
    cfg: RunConfig,
    source: str,
    output_dir: Path = Path("tune"),
    address: str | None = None,
    resume: Path | None = None,
    callbacks: list[Any] | None = None,
) -> StudyResult:
    """Run the study ``cfg.tune`` describes; ``callbacks`` are extra Ray Tune callbacks (tests use them)."""
    quiet_libraries()
    tune_cfg = _tune_section(cfg, source)
    params = check_space(cfg, source)
    check_trackers(cfg.track)
    settle_for_trials(cfg)
    metric, task_metric = metric_key(cfg, tune_cfg.metric, source)
    mode = tune_cfg.mode or direction(metric)
    if address is not None:
        check_address(address)
    train_rows, shape = _prepare_once(cfg, params)
    # Absolute: Ray runs each trial in its own working directory, where a relative path would point elsewhere.
    study_dir = _study_dir(cfg, output_dir, resume).resolve()
    log = StudyLog(study_dir)
    setup = TrialSetup(
        base=_base(cfg),
        study_dir=study_dir,
        study_id=study_dir.name,
        metric=metric,
        evaluations=tune_cfg.evaluations,
        train_rows=train_rows,
        cache_dir=str(cache_root()),
        task_metric=task_metric,
        workers=tune_cfg.resources_per_trial.workers,
        worker_cpu=tune_cfg.resources_per_trial.cpu,
        worker_gpu=tune_cfg.resources_per_trial.gpu,
    )
    _write_study_json(study_dir, cfg, source, metric, mode)
    interrupted = _run_trials(cfg, tune_cfg, params, setup, log, mode, shape, address, callbacks)
    best = log.best(mode)
    outputs = write_outputs(study_dir, log.rows, metric, mode, best, setup.base)
    return StudyResult(study_dir, log.rows, metric, mode, best, interrupted, outputs)


def _tune_section(cfg: RunConfig, source: str) -> TuneConfig:
    if cfg.tune is None:
        raise TunesmithError(
            f"{source}: no tune section",
            hint="add tune: {space: {train.learning_rate: {loguniform: [1e-5, 1e-3]}}, num_trials: 8}",
        )
    return cfg.tune


def metric_key(cfg: RunConfig, name: str | None, source: str) -> tuple[str, str | None]:
    """(the Trainer's name of the metric, the eval.metrics entry that produces it or None for the loss).

    ``name`` None (tune.metric unset): the objective's own score, eval_loss or, for grpo, the mean reward.
    """
    from tunesmith.data.forms import form_for
    from tunesmith.train.objectives import objective_for

    name = name or objective_for(cfg).tune_metric
    bare = name.removeprefix("eval_")
    if bare in ("loss",):
        return "eval_loss", None
    reported = objective_for(cfg).eval_metrics(cfg)
    if reported:  # TRL's objectives report their own metrics at each evaluation (grpo: the mean reward)
        if bare in reported:
            return f"eval_{bare}", None
        raise TunesmithError(
            f"{source}: tune.metric: train.objective {cfg.train.objective} does not produce {name!r}",
            hint=f"choose eval_loss or one of {', '.join(reported)}",
        )
    produced = score_keys(task_metrics(cfg.task))
    if bare in produced:
        return f"eval_{bare}", (None if form_for(cfg).label_head else produced[bare])  # a head's metrics: always
    raise TunesmithError(
        f"{source}: tune.metric: task {cfg.task} does not produce {name!r}",
        hint=f"choose eval_loss or one of {', '.join(sorted(produced))}",
    )


def check_address(address: str) -> None:
    """Fail fast (seconds, not Ray's long retries) when --address names nothing that answers."""
    if address == "auto":
        return  # ray.init(address="auto") itself says at once when no cluster runs here
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TunesmithError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise TunesmithError(f"--address {address}: cannot reach the Ray cluster ({err.strerror or err})") from None


def _prepare_once(cfg: RunConfig, params: list[Param]) -> tuple[int, Any]:
    """Tokenise the data in the driver, so every trial finds it in the cache; also read the model's sizes."""
    from tunesmith.data.forms import prepare_form_data, read_data
    from tunesmith.models import load_tokenizer, resolve_model

    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    tokenizer = load_tokenizer(resolved, cfg.model)
    from tunesmith.train.objectives import objective_for

    if not objective_for(cfg).packs:  # TRL tokenises its rows in each trial; check and count them here
        from tunesmith.data.forms import prepare_form_data, read_data

        data = prepare_form_data(cfg, read_data(cfg), tokenizer)
        return data.stats.train_rows, model_shape(resolved.location, resolved.revision)
    data = prepare_form_data(cfg, read_data(cfg), tokenizer)  # the data form's own reader (conversations, ...)
    say(f"data: {data.stats.summary()}" + (" (tokenised cache)" if data.stats.cached else ""))
    # A searched data key with a few choices (max_length, a system prompt) gets each variant prepared too.
    base = _base(cfg)
    for param in params:
        if param.key.startswith("data.") and param.kind == "choice":
            for value in param.choices:
                variant = trial_config(base, {param.key: value})
                prepare_form_data(variant, read_data(variant), tokenizer)
    return data.stats.train_rows, model_shape(resolved.location, resolved.revision)


def _base(cfg: RunConfig) -> dict[str, Any]:
    from tunesmith.tune.space import base_mapping

    return base_mapping(cfg)


def _study_dir(cfg: RunConfig, output_dir: Path, resume: Path | None) -> Path:
    if resume is None:
        study_dir = new_run_dir(output_dir, cfg.name)
        say(f"study: {study_dir}")
        return study_dir
    if not (resume / "study.json").is_file():
        raise TunesmithError(f"--resume {resume}: not a tunesmith study directory (no study.json)")
    say(f"study: resuming {resume} ({len(StudyLog(resume).rows)} trials finished)")
    return resume


def _write_study_json(study_dir: Path, cfg: RunConfig, source: str, metric: str, mode: str) -> None:
    path = study_dir / "study.json"
    record = json.loads(path.read_text()) if path.is_file() else {"started_at": now_iso()}
    record |= {"config": source, "config_hash": cfg.config_hash(), "metric": metric, "mode": mode}
    record["runs"] = [*record.get("runs", []), now_iso()]
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    atomic_write(study_dir / "config.yaml", dump_config(cfg))


def _run_trials(
    cfg: RunConfig,
    tune_cfg: TuneConfig,
    params: list[Param],
    setup: TrialSetup,
    log: StudyLog,
    mode: str,
    shape: Any,
    address: str | None,
    callbacks: list[Any] | None,
) -> bool:
    """Run the trials still missing; True when the study stopped before num_trials (Ctrl-C)."""
    if len(log.rows) >= tune_cfg.num_trials:
        say(f"study: all {tune_cfg.num_trials} trials already finished")
        return False
    budget = trial_memory_budget(tune_cfg)

    def admit(index: int, values: dict[str, Any]) -> TrialRow | None:
        return admit_trial(setup, index, values, shape, budget)

    started_ray = _connect(tune_cfg, address)
    try:
        from tunesmith.tune.engine import build_engine

        # Ray's own progress tables would bury tunesmith's one line per trial.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        engine = build_engine(tune_cfg, params, setup, log, admit, mode, say, callbacks)
        try:
            engine.tuner.fit()
        except KeyboardInterrupt:
            engine.recorder.interrupted = True
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    interrupted = len(log.rows) < tune_cfg.num_trials
    if interrupted:
        _mark_unfinished(setup, log)
        say(
            f"study: stopped after {len(log.rows)} of {tune_cfg.num_trials} trials; "
            f"continue with --resume {setup.study_dir}"
        )
    return interrupted


def _mark_unfinished(setup: TrialSetup, log: StudyLog) -> None:
    # Trials Ctrl-C ended mid-way: their run directories must not look like they are still running.
    from tunesmith.rundir import RunRecord

    recorded = {row.run_dir for row in log.rows}
    for run_dir in setup.trials_dir.glob("*/"):
        record = RunRecord(run_dir)
        if str(run_dir) not in recorded and record.status == "running":
            record.set_status("interrupted", hint="the study was interrupted; tunesmith tune --resume runs a new trial")
            end_abandoned_run(setup.track, run_dir)


def trial_memory_budget(tune_cfg: TuneConfig) -> int:
    """Bytes one training process of a trial may use: free memory shared by the trials that run at once.

    On CPU, a trial's workers (one model copy each) share this machine's RAM; on GPUs each worker has its own.
    """
    r = tune_cfg.resources_per_trial
    processes_sharing = tune_cfg.max_concurrent * (r.workers if r.gpu == 0 else 1)
    return available_memory(r.gpu) // processes_sharing


def admit_trial(setup: TrialSetup, index: int, values: dict[str, Any], shape: Any, budget: int) -> TrialRow | None:
    """None when the sample may launch; else the row that records why not (invalid config, too big)."""
    try:
        cfg = build_trial(setup, values, index)
    except TunesmithError as err:
        return TrialRow(index, "failed", values, error=str(err))
    estimate: MemoryEstimate = estimate_memory(cfg, shape)
    if estimate.total > budget:
        say(f"trial {index}: skipped, needs about {estimate.describe()}, {budget / 1024**3:.2f} GiB free per trial")
        return TrialRow(
            index,
            "skipped",
            values,
            error=f"needs about {estimate.total / 1024**3:.2f} GiB, {budget / 1024**3:.2f} GiB free per trial",
            memory_estimate=estimate.describe(),
        )
    return None


def local_cluster_size(tune_cfg: TuneConfig) -> tuple[int, int]:
    """(CPUs, GPUs) a local Ray declares: enough for max_concurrent trials, each with all its workers."""
    from tunesmith.tune.engine import trial_resources

    r = tune_cfg.resources_per_trial
    per_trial_cpu = trial_resources(tune_cfg)["cpu"] + (r.workers * r.cpu if r.workers > 1 else 0)
    per_trial_gpu = r.workers * r.gpu
    cpus = max(1, math.ceil(tune_cfg.max_concurrent * per_trial_cpu - 1e-9))
    return cpus, math.ceil(tune_cfg.max_concurrent * per_trial_gpu - 1e-9)


def _connect(tune_cfg: TuneConfig, address: str | None) -> bool:
    """Connect to ``address``, or start a local Ray sized for max_concurrent trials; True when we started it."""
    import ray

    if ray.is_initialized():
        return False  # someone (a test session, a notebook) already holds one: use it, leave it running
    try:
        if address is not None:
            ray.init(address=address, log_to_driver=False)
            return True
        cpus, gpus = local_cluster_size(tune_cfg)
        # Ray Train frees a stopped trial's workers through Ray's state API, which the dashboard serves.
        dashboard = tune_cfg.resources_per_trial.workers > 1
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=dashboard, log_to_driver=False)
    except ConnectionError as err:
        raise TunesmithError(f"--address {address}: {err}") from None
    except Exception as err:
        if "dashboard" not in str(err):
            raise
        raise TunesmithError(
            "tune.resources_per_trial.workers: trials on several workers need Ray's dashboard, "
            f"which cannot start here ({err})",
            hint="pip install 'ray[default]'",
        ) from None
    return True
