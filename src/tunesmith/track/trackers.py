"""Experiment trackers for teams that already run them: TensorBoard and MLflow, through the Trainer's own callbacks.

The run directory stays the record; a tracker gets a copy of the same logs. The Hugging Face callbacks do the
logging (``report_to``). This module picks them, points TensorBoard at the run directory, and owns the MLflow
run: tunesmith starts it (named after the run directory, tagged with its path, the config as params) before the
Trainer exists and ends it after the closing evaluation, so that evaluation lands in the same run and the
callback never opens a second one. Only rank 0 talks to a tracker; the callbacks check the same.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig, TrackConfig
from tunesmith.console import say
from tunesmith.errors import TunesmithError
from tunesmith.track.runview import flatten

TRACKERS = ("tensorboard", "mlflow")  # config keys, which are also the Trainer's report_to names
# MLflow's SQL stores (its default is a sqlite file) need SQLAlchemy and Alembic, which mlflow-skinny leaves out.
SQL_STORE_MODULES = ("sqlalchemy", "alembic")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
PIP_NAMES = {"mlflow": "mlflow-skinny", "sqlalchemy": "sqlalchemy", "alembic": "alembic"}
TENSORBOARD_DIR = "tensorboard"
RUN_DIR_TAG = "tunesmith.run_dir"
STUDY_TAG = "tunesmith.study"

ModuleFinder = Callable[[str], Any]


def enabled(track: TrackConfig) -> list[str]:
    """The trackers the config turns on, by their report_to names."""
    return [name for name in TRACKERS if getattr(track, name)]


def report_to(track: TrackConfig) -> list[str] | str:
    """TrainingArguments.report_to for the config: the enabled trackers, or "none"."""
    return enabled(track) or "none"


def check_trackers(track: TrackConfig, find_spec: ModuleFinder = importlib.util.find_spec) -> None:
    """One TunesmithError line, before training starts, for an enabled tracker whose package is missing.

    ``find_spec`` says whether a module can be imported (importlib's, unless a test gives another).
    """

    def installed(module: str) -> bool:
        return find_spec(module) is not None

    # The Trainer's TensorBoard callback writes through torch.utils.tensorboard (tensorboard) or tensorboardX.
    if track.tensorboard and not (installed("tensorboard") or installed("tensorboardX")):
        raise TunesmithError("track.tensorboard: tensorboard is not installed", hint="pip install tensorboard")
    if track.mlflow:
        store = track.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        needed = ["mlflow", *(SQL_STORE_MODULES if _sql_store(store) else ())]
        missing = [module for module in needed if not installed(module)]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            hint = "pip install " + " ".join(PIP_NAMES[module] for module in missing)
            raise TunesmithError(f"track.mlflow: {' and '.join(missing)} {verb} not installed", hint=hint)


def _sql_store(uri: str | None) -> bool:
    # Unset means MLflow's default store, a sqlite file.
    return uri is None or uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


def settle_for_trials(cfg: RunConfig) -> None:
    """Fix, in the study's driver, what each trial would otherwise resolve on its own.

    Ray runs every trial in a working directory of its own, so a relative (or default) MLflow store would
    split the study over many files; and each trial has its own run name, while the study is one experiment.
    The experiment is made here, once: trials starting together would race to create it (and a new sqlite
    store's tables).
    """
    track = cfg.track
    if not track.mlflow:
        return
    import mlflow

    track.mlflow_tracking_uri = _absolute_sqlite(track.mlflow_tracking_uri or mlflow.get_tracking_uri())
    track.mlflow_experiment = track.mlflow_experiment or cfg.name
    with _refusals_as_errors(mlflow):
        _experiment_id(mlflow.MlflowClient(track.mlflow_tracking_uri), track.mlflow_experiment)


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    path = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or path.startswith("/") or path == ":memory:":
        return uri
    return prefix + str(Path(path).resolve())


@contextlib.contextmanager
def trackers_running(cfg: RunConfig, run_dir: Path, parent: str | None, main: bool) -> Iterator[Callable[[Any], None]]:
    """Around the Trainer's whole life: the trackers' settings in the environment, the MLflow run open.

    ``main`` is whether this process is rank 0, the only one that opens an MLflow run. It yields ``attach``:
    give it the Trainer, and what the Trainer's tracker callbacks leave open is closed on the way out.
    """
    settings = _environment(cfg.track, run_dir)
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    trainers: list[Any] = []
    try:
        with _mlflow_run(cfg, run_dir, parent) if cfg.track.mlflow and main else contextlib.nullcontext():
            yield trainers.append
    finally:
        for trainer in trainers:
            _close_tensorboard(trainer)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _close_tensorboard(trainer: Any) -> None:
    # The callback closes its writer when training ends, but the closing evaluation opens another (a file and a
    # writer thread that would outlive the run, one more per trial in a reused Ray worker); training that
    # fails never reaches the end at all.
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
            callback.tb_writer.close()
            callback.tb_writer = None


def _environment(track: TrackConfig, run_dir: Path) -> dict[str, str]:
    # The callbacks read these: TensorBoard when the Trainer builds it, MLflow when training begins.
    settings = {}
    if track.tensorboard:
        settings["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
    if track.mlflow:
        # The config goes in as tunesmith's own keys; the callback would add every TrainingArguments and
        # model-config field beside them (and, on --resume, clash with the values logged the first time).
        settings["MLFLOW_MAX_LOG_PARAMS"] = "0"
    return settings


@contextlib.contextmanager
def _mlflow_run(cfg: RunConfig, run_dir: Path, parent: str | None) -> Iterator[None]:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its notes (creating tables) are not for our users
    track = cfg.track
    previous_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    if track.mlflow_tracking_uri:
        mlflow.set_tracking_uri(track.mlflow_tracking_uri)  # process-wide: the callback logs through it
    try:
        with _open_run(mlflow, cfg, run_dir, parent):
            yield
    finally:
        # None unsets it (MLflow handles None, though its hint says str): back to the environment or the default.
        mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]


@contextlib.contextmanager
def _open_run(mlflow: Any, cfg: RunConfig, run_dir: Path, parent: str | None) -> Iterator[None]:
    track = cfg.track
    with _refusals_as_errors(mlflow):
        client = mlflow.MlflowClient()
        experiment_id = _experiment_id(client, track.mlflow_experiment or cfg.name)
        resumed = _run_of(client, experiment_id, run_dir)
        mlflow.start_run(
            run_id=resumed,
            experiment_id=experiment_id,
            run_name=run_dir.name,
            nested=mlflow.active_run() is not None,  # inside a caller's run: a child of it
            tags=_tags(run_dir, parent) if resumed is None else None,
        )
    status = "FAILED"
    try:
        if resumed is None:
            mlflow.log_params(config_params(cfg))
        yield
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"  # Ctrl-C, or a study stopping a weak trial
        raise
    finally:
        mlflow.end_run(status=status)


def end_abandoned_run(track: TrackConfig, run_dir: Path) -> None:
    """End as KILLED the MLflow run of a study's trial whose process Ray stopped before it could end it.

    Ray may end a trial from outside (ASHA stopping it, Ctrl-C); the study's driver then marks the trial's
    run.json, and this gives its MLflow run the same ending.
    """
    if not track.mlflow or track.mlflow_experiment is None:
        return  # settle_for_trials names the experiment of every study that uses MLflow
    import mlflow

    client = mlflow.MlflowClient(track.mlflow_tracking_uri)
    try:
        experiment = client.get_experiment_by_name(track.mlflow_experiment)
        run_id = _run_of(client, experiment.experiment_id, run_dir) if experiment is not None else None
        if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "KILLED")
    except mlflow.exceptions.MlflowException as err:
        say(f"mlflow: could not end the run of {run_dir.name}: {err.message}")  # the study goes on


@contextlib.contextmanager
def _refusals_as_errors(mlflow: Any) -> Iterator[None]:
    # A store MLflow cannot use (a bad URI, a server that does not answer) is a config problem: one line.
    try:
        yield
    except mlflow.exceptions.MlflowException as err:
        raise TunesmithError(f"track.mlflow: MLflow refused the run: {err.message}") from err


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        # Another trial of the study created it in between.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _run_of(client: Any, experiment_id: str, run_dir: Path) -> str | None:
    """The MLflow run an earlier start of this run directory opened (--resume continues it), if any."""
    path = str(run_dir.resolve())
    if "'" in path:
        return None  # not expressible in MLflow's filter syntax; a resumed run then gets a new MLflow run
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{path}'", max_results=1)
    return str(found[0].info.run_id) if found else None


def _tags(run_dir: Path, parent: str | None) -> dict[str, str]:
    tags = {RUN_DIR_TAG: str(run_dir.resolve())}
    if parent is not None:
        tags[STUDY_TAG] = parent
    return tags


def config_params(cfg: RunConfig) -> dict[str, str]:
    """The resolved config as MLflow params: dotted keys, values as text (lists as JSON), the track section left out."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    flat = flatten(cfg.model_dump(mode="json", exclude={"track"}))
    return {key: _param_text(value)[:MAX_PARAM_VAL_LENGTH] for key, value in flat.items()}


def _param_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
