"""Two real (tiny) training runs that differ in one key, shared by the track and review tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fixtures import write_ads_csv, write_config


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> tuple[Path, Path]:
    """Two completed runs (train.learning_rate 1e-3 and 5e-3), the first also evaluated."""
    from tunesmith.config import load_config
    from tunesmith.evaluate.runner import evaluate_run
    from tunesmith.train.runner import train

    base = tmp_path_factory.mktemp("trained")
    table = write_ads_csv(base / "ads.csv")
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_CACHE", str(base / "cache"))
        for rate in ("1e-3", "5e-3"):
            config = write_config(base / "c.yaml", tiny_llama, table, train={"max_steps": 2, "batch_size": 4})
            result = train(load_config(config, [f"train.learning_rate={rate}"]), output_dir=base / "runs")
            runs.append(result.run_dir)
        evaluate_run(runs[0], limit=2)
    return runs[0], runs[1]


@pytest.fixture()
def runs_copy(tmp_path: Path, trained_runs: tuple[Path, Path]) -> tuple[Path, Path]:
    """A private copy of the two runs in ``tmp_path/runs`` (tests may delete or corrupt things)."""
    target = tmp_path / "runs"
    target.mkdir()
    return shutil.copytree(trained_runs[0], target / trained_runs[0].name), shutil.copytree(
        trained_runs[1], target / trained_runs[1].name
    )
