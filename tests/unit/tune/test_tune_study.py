"""Studies on the tiny model with a real (local, 2-CPU) Ray: ASHA, failures, best.yaml, Ctrl-C and --resume.

One Ray session serves the whole module. Trials are 8 steps evaluated 4 times; the configurations come
from tune.points, so which trial is good, hopeless or broken is fixed in advance.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.rundir import RunRecord

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GOOD = {"train.learning_rate": 0.05, "method.target_modules": "all-linear"}
HOPELESS = {"train.learning_rate": 1e-7, "method.target_modules": "all-linear"}  # the loss does not move
BROKEN = {"train.learning_rate": 0.05, "method.target_modules": ["no_such_proj"]}  # peft refuses it at load


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # The dashboard serves the state API, through which Ray Train frees the workers of a stopped trial.
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield
    ray.shutdown()


def _study_config(tmp_path: Path, model: Path, table: Path, points: list[dict[str, Any]], **tune: Any) -> Path:
    space = {
        "train.learning_rate": {"choice": [0.05, 1e-7]},
        "method.target_modules": {"choice": ["all-linear", ["no_such_proj"]]},
    }
    section = {"space": space, "num_trials": 4, "max_concurrent": 2, "search": "random", "points": points}
    return write_config(
        tmp_path / "study.yaml",
        model,
        table,
        train={"max_steps": 8, "batch_size": 4, "logging_steps": 2, "learning_rate": 1e-3},
        tune=section | tune,
    )


def _rows(study_dir: Path) -> list[dict[str, str]]:
    with (study_dir / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_study_stops_weak_trials_records_failures_and_writes_a_trainable_best(
    ray_session: None, tiny_llama: Path, ads_csv: Path, tmp_path: Path
) -> None:
    from tunesmith.train.runner import train
    from tunesmith.tune.study import tune_from_file

    config = _study_config(tmp_path, tiny_llama, ads_csv, [GOOD, BROKEN, HOPELESS, HOPELESS])
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = tune_from_file(config, ["track.mlflow=true", f"track.mlflow_tracking_uri={store}"], tmp_path / "tune")

    rows = {int(r["trial"]): r for r in _rows(result.study_dir)}
    assert sorted(rows) == [1, 2, 3, 4] and not result.interrupted
    assert rows[1]["status"] == "completed" and rows[1]["iterations"] == "4"
    assert rows[2]["status"] == "failed" and "no_such_proj" in rows[2]["error"]
    stopped = [r for r in rows.values() if r["status"] == "stopped-early"]
    assert stopped and all(int(r["iterations"]) < 4 for r in stopped)
    assert result.best is not None and result.best.trial == 1
    # Every trial found the data the driver tokenised: none tokenised it again.
    for row in rows.values():
        if row["run_dir"]:
            record = json.loads((Path(row["run_dir"]) / "run.json").read_text())
            assert record["data"]["stats"]["cached"] is True and record["parent"] == result.study_dir.name
            assert record["status"] in ("completed", "interrupted")
    assert (result.study_dir / "plot.png").stat().st_size > 0
    # Each trial that started training is its own MLflow run in the study's experiment, ended as it ended.
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    ended = {"completed": "FINISHED", "stopped-early": "KILLED"}
    assert {Path(r["run_dir"]).name: ended[r["status"]] for r in rows.values() if r["run_dir"]} == {
        name: run.info.status for name, run in runs.items()
    }
    assert {run.data.tags["tunesmith.study"] for run in runs.values()} == {result.study_dir.name}

    best = load_config(result.study_dir / "best.yaml", ["train.max_steps=2"])
    assert best.tune is None and best.train.learning_rate == 0.05 and best.name == "tiny"
    assert train(best, tmp_path / "runs").run_dir.is_dir()


def test_interrupted_study_keeps_finished_trials_and_resumes_to_num_trials(
    ray_session: None, tiny_llama: Path, ads_csv: Path, tmp_path: Path
) -> None:
    from ray import tune

    from tunesmith.tune.study import tune_from_file

    class CtrlCAfterTwo(tune.Callback):
        def __init__(self) -> None:
            self.ended = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.ended += 1
            if self.ended == 2:
                os.kill(os.getpid(), signal.SIGINT)

    config = _study_config(tmp_path, tiny_llama, ads_csv, [GOOD, GOOD, GOOD, GOOD], scheduler={"name": "fifo"})
    first = tune_from_file(config, [], tmp_path / "tune", callbacks=[CtrlCAfterTwo()])
    assert first.interrupted
    assert [r["status"] for r in _rows(first.study_dir)] == ["completed", "completed"]

    resumed = tune_from_file(config, [], tmp_path / "tune", resume=first.study_dir)
    rows = _rows(resumed.study_dir)
    assert not resumed.interrupted and resumed.study_dir == first.study_dir
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert len({r["trial"] for r in rows}) == 4


def test_trials_on_two_ray_train_workers_report_to_asha_and_write_one_run_each(
    ray_session: None, tiny_llama: Path, ads_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.tune.study import tune_from_file

    # Two workers of half a CPU each, so the trial and its workers fit in the module's 2-CPU Ray.
    resources = {"cpu": 0.5, "workers": 2}
    points = [GOOD, HOPELESS, BROKEN]
    config = _study_config(
        tmp_path, tiny_llama, ads_csv, points, num_trials=3, max_concurrent=1, resources_per_trial=resources
    )
    monkeypatch.chdir(tmp_path)  # a relative --output-dir, as users type it (Ray runs trials elsewhere)
    result = tune_from_file(config, [], Path("tune"))

    assert result.study_dir.parent == tmp_path / "tune"
    rows = {int(r["trial"]): r for r in _rows(result.study_dir)}
    assert rows[1]["status"] == "completed" and rows[1]["iterations"] == "4"
    assert rows[2]["status"] == "stopped-early" and int(rows[2]["iterations"]) < 4
    assert rows[3]["status"] == "failed" and rows[3]["error"].startswith("worker 0: ")
    assert "no_such_proj" in rows[3]["error"]
    assert result.best is not None and result.best.trial == 1
    completed = Path(rows[1]["run_dir"])
    record = json.loads((completed / "run.json").read_text())
    assert record["status"] == "completed" and record["batch"]["processes"] == 2 and record["batch"]["global"] == 8
    assert RunRecord(Path(rows[2]["run_dir"])).status == "interrupted"
    # Rank 0 alone wrote: one run directory per trial, each evaluation logged once.
    assert len(list((result.study_dir / "trials").iterdir())) == 3
    evaluations = [json.loads(line) for line in (completed / "metrics.jsonl").read_text().splitlines()]
    eval_steps = [e["step"] for e in evaluations if "eval_loss" in e]
    assert eval_steps == [2, 4, 6, 8]  # 4 evaluations, each written once; the last one is the result (no re-scoring)


def test_a_grpo_study_maximises_the_mean_reward(ray_session: None, tiny_llama: Path, tmp_path: Path) -> None:
    from tunesmith.tune.study import tune_from_file

    table = write_ads_csv(tmp_path / "ads.csv", repeat=1)  # 6 training prompts, 2 held out
    # Longer answers score higher (words / 30), so the trial allowed 12 new tokens must beat the one allowed 2.
    train = {"objective": "grpo", "max_steps": 2, "batch_size": 4, "logging_steps": 1}
    train |= {"rewards": [{"name": "length", "min_words": 30}], "grpo": {"num_generations": 2}}
    points = [{"train.grpo.max_new_tokens": 2}, {"train.grpo.max_new_tokens": 12}]
    space = {"train.grpo.max_new_tokens": {"choice": [2, 12]}}
    tune = {"space": space, "num_trials": 2, "evaluations": 2, "points": points, "scheduler": {"name": "fifo"}}
    config = write_config(tmp_path / "grpo.yaml", tiny_llama, table, train=train, tune=tune | {"max_concurrent": 2})
    result = tune_from_file(config, [], tmp_path / "tune")

    assert (result.metric, result.mode) == ("eval_reward", "max")  # no tune.metric: GRPO's mean reward
    assert json.loads((result.study_dir / "study.json").read_text())["metric"] == "eval_reward"
    rows = _rows(result.study_dir)
    assert [r["status"] for r in rows] == ["completed", "completed"] and all(r["iterations"] == "2" for r in rows)
    for row in rows:  # what the study ranked is what each GRPO run logged as its evaluations' mean reward
        logged = [json.loads(line) for line in (Path(row["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert float(row["best_eval_reward"]) == pytest.approx(
            max(x["eval_reward"] for x in logged if "eval_reward" in x)
        )
    short, long = sorted(rows, key=lambda r: int(r["train.grpo.max_new_tokens"]))
    assert float(long["best_eval_reward"]) > float(short["best_eval_reward"])
    assert result.best is not None and result.best.params["train.grpo.max_new_tokens"] == 12
