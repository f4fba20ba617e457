"""TensorBoard and MLflow on real tiny runs: what each tracker holds afterwards, read back with its own reader."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fixtures import write_ads_csv, write_config
from tunesmith.config import RunConfig, TrackConfig, load_config
from tunesmith.errors import TunesmithError
from tunesmith.track.trackers import check_trackers, config_params, report_to, settle_for_trials
from tunesmith.train.runner import train


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> tuple[Any, str]:
    """One tiny run with both trackers on (read back by the two tests below), and its MLflow store."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    track = {"tensorboard": True, "mlflow": True, "mlflow_tracking_uri": uri}
    config = write_config(root / "c.yaml", tiny_llama, write_ads_csv(root / "ads.csv"), track=track)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_CACHE", str(root / "cache"))
        return train(load_config(config), output_dir=root / "runs"), uri


def test_tensorboard_events_in_the_run_directory_hold_the_train_loss(tracked_run: tuple[Any, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = tracked_run
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2, 3, 4]  # logging_steps 1, max_steps 4
    assert all(event.value > 0 for event in losses)
    assert "eval/loss" in events.Tags()["scalars"]
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ  # set for the run only
    # Closed after the closing evaluation too: no writer thread outlives the run.
    assert not [t for t in threading.enumerate() if type(t).__name__ == "_AsyncWriterThread"]


def test_mlflow_run_is_named_after_the_run_directory_with_config_params_and_eval_loss(
    tracked_run: tuple[Any, str], tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    result, uri = tracked_run

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")  # the config's name
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the closing evaluation went into the same run, not a second one
    run = runs[0]
    assert run.info.run_name == result.run_dir.name and run.info.status == "FINISHED"
    assert run.data.tags["tunesmith.run_dir"] == str(result.run_dir.resolve())
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.params["method.name"] == "lora" and run.data.params["model.name"] == str(tiny_llama)
    assert "per_device_train_batch_size" not in run.data.params  # the config's keys, not TrainingArguments'
    eval_loss = client.get_metric_history(run.info.run_id, "eval_loss")
    assert eval_loss and eval_loss[-1].value == pytest.approx(result.metrics["eval_loss"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert client.list_artifacts(run.info.run_id) == []  # no model upload


def test_a_store_mlflow_refuses_is_one_line_and_a_failed_run(tmp_path: Path, tiny_llama: Path, ads_csv: Path) -> None:
    import json

    track = {"mlflow": True, "mlflow_tracking_uri": "nosuchscheme://nowhere"}
    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, track=track)
    with pytest.raises(TunesmithError, match=r"^track.mlflow: MLflow refused the run: .*nosuchscheme"):
        train(load_config(config), output_dir=tmp_path / "runs")
    (run_dir,) = (tmp_path / "runs").glob("tiny-*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert "MLFLOW_MAX_LOG_PARAMS" not in os.environ


def test_a_studys_trials_share_its_experiment_and_an_absolute_store(
    tmp_path: Path, tiny_llama: Path, ads_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.tune.space import base_mapping
    from tunesmith.tune.trial_setup import TrialSetup, build_trial

    monkeypatch.chdir(tmp_path)  # Ray moves each trial to a directory of its own; the store must not move along
    space = {"train.learning_rate": {"choice": [1e-3, 1e-2]}}
    track = {"mlflow": True, "mlflow_tracking_uri": "sqlite:///mlflow.db"}
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, track=track, tune={"space": space}))
    settle_for_trials(cfg)
    assert cfg.track.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    setup = TrialSetup(base_mapping(cfg), tmp_path, "study", "eval_loss", 2, 18, str(tmp_path), None)
    trial = build_trial(setup, {"train.learning_rate": 1e-2}, 3)
    assert trial.name == "tiny-t003" and trial.track.mlflow_experiment == "tiny"
    from mlflow import MlflowClient

    assert MlflowClient(cfg.track.mlflow_tracking_uri).get_experiment_by_name("tiny") is not None  # made once


def test_config_params_are_dotted_text_without_the_track_section(tmp_path: Path) -> None:
    cfg = RunConfig.model_validate(
        {"data": {"train": "t.csv", "prompt": "{a}", "response": "{b}"}, "eval": {"metrics": ["bleu", "chrf"]}}
    )
    params = config_params(cfg)
    assert params["eval.metrics"] == '["bleu", "chrf"]' and params["train.max_steps"] == "None"
    assert not any(key.startswith("track.") for key in params)


def test_report_to_names_the_enabled_trackers() -> None:
    assert report_to(TrackConfig()) == "none"
    assert report_to(TrackConfig(tensorboard=True, mlflow=True)) == ["tensorboard", "mlflow"]


def _finder_without(*absent: str):  # type: ignore[no-untyped-def]
    import importlib.util

    return lambda name: None if name in absent else importlib.util.find_spec(name)


@pytest.mark.parametrize(
    ("track", "absent", "message"),
    [
        (
            {"mlflow": True, "mlflow_tracking_uri": "http://localhost:5000"},
            ("mlflow",),
            r"^track.mlflow: mlflow is not installed \(pip install mlflow-skinny\)$",
        ),
        (
            {"mlflow": True, "mlflow_tracking_uri": "sqlite:///mlflow.db"},
            ("sqlalchemy", "alembic"),
            r"^track.mlflow: sqlalchemy and alembic are not installed \(pip install sqlalchemy alembic\)$",
        ),
        (
            {"tensorboard": True},
            ("tensorboard", "tensorboardX"),
            r"^track.tensorboard: tensorboard is not installed \(pip install tensorboard\)$",
        ),
    ],
)
def test_a_missing_tracker_package_is_one_line_naming_the_key(
    track: dict[str, object], absent: tuple[str, ...], message: str
) -> None:
    with pytest.raises(TunesmithError, match=message):
        check_trackers(TrackConfig.model_validate(track), find_spec=_finder_without(*absent))


def test_installed_trackers_pass_the_check() -> None:
    check_trackers(TrackConfig(tensorboard=True), find_spec=_finder_without("tensorboard"))  # tensorboardX does
    check_trackers(TrackConfig(mlflow=True, mlflow_tracking_uri="http://localhost:5000"), _finder_without("alembic"))


def test_a_missing_package_fails_before_the_run_directory_exists(
    tmp_path: Path, ads_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules is Python's own "this module cannot be imported"; the model is never reached.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    config = write_config(tmp_path / "c.yaml", tmp_path / "no-model", ads_csv, track={"mlflow": True})
    with pytest.raises(TunesmithError, match="track.mlflow: mlflow is not installed"):
        train(load_config(config), output_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
