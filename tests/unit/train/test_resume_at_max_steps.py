"""A run stopped right after its checkpoint at step N, resumed with train.max_steps N, trains no further step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.train.runner import train


class InterruptAfterSave(TrainerCallback):
    """Stops the run like Ctrl-C right after the first checkpoint is written."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


def test_resume_from_the_last_step_saves_without_training_another(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_ads_csv(tmp_path / "ads.csv")
    config = write_config(tmp_path / "c.yaml", tiny_llama, table, train={"max_steps": 4, "save_steps": 2})
    with pytest.raises(KeyboardInterrupt):
        train(load_config(config), output_dir=tmp_path / "runs", callbacks=[InterruptAfterSave()])
    (run_dir,) = (tmp_path / "runs").glob("tiny-*")
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()

    result = train(load_config(config, ["train.max_steps=2"]), resume=run_dir)

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]  # no step 3 after the resume
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["train"]["steps"] == 2
    assert (result.run_dir / "model" / "adapter_model.safetensors").is_file()
