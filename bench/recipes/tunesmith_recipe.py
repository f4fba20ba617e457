"""(c, d) tunesmith through its public API, with its defaults: ``train(validate_config({...}), output_dir)``.

The recipe name picks the method: ``tunesmith-lora`` (the default method) or ``tunesmith-full``. Only what
the benchmark fixes is set: data, templates, max_length, steps and rows per step. The held-out rows are a
separate file, so tunesmith's own split is turned off (eval_fraction 0) and every recipe trains on the same rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from recipes.measure import HeldOut, StepTimer, emit, every_trainer_gets
from recipes.spec import Spec
from tunesmith.config import validate_config
from tunesmith.train.runner import train


def build_config(spec: Spec, method: str) -> Any:
    """The run config: tunesmith defaults plus what every recipe shares."""
    length = {"epochs": spec.epochs} if spec.epochs else {"max_steps": spec.steps}
    return validate_config(
        {
            "name": f"bench-{method}",
            "model": {"name": "smollm2-135m-instruct"},
            "data": {
                "train": spec.train_csv,
                "eval_fraction": 0,
                "prompt": spec.prompt,
                "response": spec.response,
                "max_length": spec.max_length,
            },
            "method": {"name": method},
            "train": {**length, "batch_size": spec.rows_per_step, "seed": spec.seed},
        }
    )


def main(spec: Spec) -> None:
    """Train through tunesmith and print the measurements."""
    method = spec.recipe.removeprefix("tunesmith-")
    tokenizer = AutoTokenizer.from_pretrained(spec.model_dir)
    timer = StepTimer(HeldOut.build(tokenizer, spec), spec.warmup_steps)
    with every_trainer_gets(timer):
        result = train(build_config(spec, method), Path(spec.work_dir) / "runs")
    run = json.loads((result.run_dir / "run.json").read_text())
    batches = "packed, no padding" if run["packing"] else "padded"
    emit(spec.recipe, timer, full=method == "full", method=method, precision=run["precision"]["value"], batches=batches)


if __name__ == "__main__":
    main(Spec.load(sys.argv[1]))
