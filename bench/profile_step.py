"""Profile a few training steps of one recipe with torch.profiler; print the ops that dominate a step.

    .venv/bin/python bench/profile_step.py [--recipe tunesmith-lora] [--steps 4] [--warmup-steps 2]

The recipe runs in this process (not timed for the benchmark: the profiler slows it down); the table goes to
stdout and to bench/results/profile-<recipe>.txt.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from recipes import RECIPES
from recipes.measure import every_trainer_gets
from recipes.spec import DATA, Spec, resolve_model_dir, split_data
from transformers import TrainerCallback


class ProfilerSteps(TrainerCallback):
    """Advance the profiler's schedule at every step end."""

    def __init__(self, profiler: Any) -> None:
        self.profiler = profiler

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """One step done."""
        self.profiler.step()


def profile(spec: Spec, warmup: int) -> str:
    """Run the recipe under the profiler; the table of the steps after warm-up, by self CPU time."""
    schedule = torch.profiler.schedule(wait=warmup, warmup=0, active=spec.steps - warmup)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], schedule=schedule)
    with profiler, every_trainer_gets(ProfilerSteps(profiler)):
        importlib.import_module(RECIPES[spec.recipe]).main(spec)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)


def main() -> None:
    """Parse options, profile, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tunesmith-lora", choices=list(RECIPES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--rows-per-step", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="tunesmith-profile-"))
    try:
        train_csv, heldout_csv = split_data(DATA, work_dir, 8, seed=42)
        spec = Spec(
            args.recipe, resolve_model_dir(), str(train_csv), str(heldout_csv), str(work_dir), args.steps,
            args.rows_per_step, args.max_length, args.warmup_steps,
        )  # fmt: skip
        table = profile(spec, args.warmup_steps)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(table)
    (Path(__file__).resolve().parent / "results" / f"profile-{args.recipe}.txt").write_text(table + "\n")


if __name__ == "__main__":
    main()
