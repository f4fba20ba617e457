"""Speed benchmark: tunesmith against plain Hugging Face recipes, each recipe in its own process, one after another.

    .venv/bin/python bench/run.py [--steps N] [--rows-per-step 8] [--max-length 128] [--only a,b,c,d]

Recipes: a=seed, b=careful, c=tunesmith-lora, d=tunesmith-full. Results: bench/results/latest.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recipes import RECIPES
from recipes.spec import DATA, Spec, resolve_model_dir, split_data
from report import build_report, write_report

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LETTERS = dict(zip("abcd", RECIPES, strict=True))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per recipe (first 2 untimed)")
    parser.add_argument("--rows-per-step", type=int, default=8, help="rows per optimizer step (batch size)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per row (longer rows are truncated)")
    parser.add_argument("--only", default="a,b,c,d", help="recipes to run: letters a-d or names, comma-separated")
    parser.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--heldout-rows", type=int, default=16, help="rows held out to score every recipe")
    parser.add_argument("--data", type=Path, default=DATA, help="the CSV every recipe trains on")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the data file to appear")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="where latest.json/.md go")
    args = parser.parse_args(argv)
    args.only = [LETTERS.get(name.strip(), name.strip()) for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from a-d or {', '.join(RECIPES)}")
    if not 1 <= args.warmup_steps < args.steps:
        parser.error("need 1 <= --warmup-steps < --steps")
    return args


def wait_for(path: Path, timeout: float) -> Path:
    """Return ``path`` once it exists and has stopped growing; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.is_file() or path.stat().st_size == 0:
        if time.monotonic() > deadline:
            sys.exit(f"{path}: not there after {timeout:.0f} s")
        print(f"waiting for {path} ...", file=sys.stderr)
        time.sleep(10)
    size = -1
    while size != path.stat().st_size:
        size = path.stat().st_size
        time.sleep(2)
    return path


def child_env() -> dict[str, str]:
    """The environment of every child: offline, bench modules importable, tokenizers single-process."""
    paths = [str(BENCH), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def run_child(name: str, command: list[str], log: Path) -> dict[str, Any]:
    """Run one child process; return the JSON object on its last stdout line (or an error record)."""
    load_before, start = os.getloadavg()[0], time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, check=False)
    wall = round(time.perf_counter() - start, 1)
    log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    context = {"wall_seconds": wall, "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"recipe": name, "error": f"exit {done.returncode}: {tail[0]}", "log": str(log), **context}
    return {**json.loads(lines[-1]), **context}


def run_recipe(name: str, spec: Spec, work_dir: Path, logs: Path) -> dict[str, Any]:
    """Write the spec and run the recipe in its own process."""
    spec_path = work_dir / f"{name}.spec.json"
    spec.save(spec_path)
    print(f"running {name} ...", file=sys.stderr, flush=True)
    result = run_child(name, [sys.executable, "-m", RECIPES[name], str(spec_path)], logs / f"{name}.log")
    print(f"  {name}: {result.get('tokens_per_second', result.get('error'))} tok/s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    """Measure the matmul peak, run every selected recipe, write the report."""
    args = parse_args()
    data = wait_for(args.data, args.wait)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    try:
        train_csv, heldout_csv = split_data(data, work_dir, args.heldout_rows, seed=42)
        model_dir = resolve_model_dir()
        peaks = run_child("peak", [sys.executable, str(BENCH / "peak.py")], logs / "peak.log")
        results = []
        for name in args.only:
            spec = Spec(
                name, model_dir, str(train_csv), str(heldout_csv), str(work_dir), args.steps,
                args.rows_per_step, args.max_length, args.warmup_steps,
            )  # fmt: skip
            results.append(run_recipe(name, spec, work_dir, logs))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report = build_report(args, data, model_dir, peaks, results)
    print(write_report(report, args.out))


if __name__ == "__main__":
    main()
