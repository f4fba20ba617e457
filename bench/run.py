"""Speed benchmark: tunesmith against plain Hugging Face recipes, each recipe in its own process, one after another.

    .venv/bin/python bench/run.py [--parts steady,short,whole,long,eval] [--steps N] [--only a,b,c,d] ...

Parts (all by default):
  steady  N steady steps of every recipe on the marketing rows (a=seed, b=careful, c=tunesmith-lora,
          d=tunesmith-full; --only picks)
  short   the same for careful and tunesmith-lora on the short rows (20-100 tokens, bench/recipes/short_rows.py)
  whole   one epoch of ~250 short rows, start to exit: the careful script against `tunesmith train`
  long    ~400 steps of tunesmith-lora on short rows: tokens/s and memory, first 10% against last 10%
  eval    `tunesmith eval --no-base` on the whole part's run against a plain batched generate loop
Results: bench/results/latest.{json,md}; child logs in bench/results/logs/.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from recipes import RECIPES
from recipes.short_rows import PROMPT as SHORT_PROMPT
from recipes.short_rows import RESPONSE as SHORT_RESPONSE
from recipes.short_rows import write_evaluation_rows, write_short_rows
from recipes.spec import DATA, Spec, resolve_model_dir, split_data
from report import build_report, write_report

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LETTERS = dict(zip("abcd", RECIPES, strict=True))
PARTS = ("steady", "short", "whole", "long", "eval")
TUNESMITH = Path(sys.executable).parent / "tunesmith"  # the console script a user runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help="parts to run, comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per recipe (first 2 untimed)")
    parser.add_argument("--rows-per-step", type=int, default=8, help="rows per optimizer step (batch size)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per row (longer rows are truncated)")
    parser.add_argument("--only", default="a,b,c,d", help="steady recipes: letters a-d or names, comma-separated")
    parser.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--heldout-rows", type=int, default=16, help="rows held out to score every recipe")
    parser.add_argument("--data", type=Path, default=DATA, help="the CSV the steady part trains on")
    parser.add_argument("--short-rows", type=int, default=250, help="rows of the whole part's epoch")
    parser.add_argument("--long-steps", type=int, default=400, help="steps of the long part (one epoch)")
    parser.add_argument("--eval-prompts", type=int, default=105, help="prompts of the eval part")
    parser.add_argument("--eval-references", type=int, default=8, help="references per eval prompt")
    parser.add_argument("--eval-batch", type=int, default=16, help="batch size of the plain generate loop")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the data file to appear")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="where latest.json/.md go")
    args = parser.parse_args(argv)
    args.only = [LETTERS.get(name.strip(), name.strip()) for name in args.only.split(",") if name.strip()]
    args.parts = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from a-d or {', '.join(RECIPES)}")
    if bad := [name for name in args.parts if name not in PARTS]:
        parser.error(f"unknown part {bad[0]!r}; choose from {', '.join(PARTS)}")
    if "eval" in args.parts and "whole" not in args.parts:
        parser.error("the eval part scores the whole part's run: add whole to --parts")
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
    """Run one child process; return the JSON object on its last stdout line (or an error record).

    ``wall_seconds`` is the whole process, start to exit, as the user waits for it.
    """
    load_before, start = os.getloadavg()[0], time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, check=False)
    wall = round(time.perf_counter() - start, 1)
    log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    context = {"wall_seconds": wall, "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"recipe": name, "error": f"exit {done.returncode}: {tail[0]}", "log": str(log), **context}
    return {"recipe": name, **(json.loads(lines[-1]) if lines else {}), **context}


def run_recipe(spec: Spec, logs: Path, label: str = "") -> dict[str, Any]:
    """Write the spec and run the recipe in its own process."""
    name = spec.recipe
    tag = f"{label}-{name}" if label else name
    spec_path = Path(spec.work_dir) / f"{tag}.spec.json"
    spec.save(spec_path)
    print(f"running {tag} ...", file=sys.stderr, flush=True)
    result = run_child(name, [sys.executable, "-m", RECIPES[name], str(spec_path)], logs / f"{tag}.log")
    print(f"  {tag}: {result.get('tokens_per_second', result.get('error'))} tok/s", file=sys.stderr, flush=True)
    return result


class Bench:
    """The parts of one benchmark run, sharing a scratch directory, the model and the logs."""

    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args, self.work_dir = args, work_dir
        self.logs = args.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.model_dir = resolve_model_dir()
        self.heldout_short = work_dir / "short-heldout.csv"
        write_short_rows(self.heldout_short, args.heldout_rows, seed=99)
        self.whole_run: Path | None = None

    def spec(self, recipe: str, train_csv: Path, heldout_csv: Path, **changes: Any) -> Spec:
        """A recipe spec with the benchmark's shared settings."""
        a = self.args
        base = Spec(
            recipe, self.model_dir, str(train_csv), str(heldout_csv), str(self.work_dir), a.steps,
            a.rows_per_step, a.max_length, a.warmup_steps,
        )  # fmt: skip
        return replace(base, **changes)

    def short_spec(self, recipe: str, train_csv: Path, **changes: Any) -> Spec:
        """A spec on the short rows (their templates and held-out rows)."""
        return self.spec(recipe, train_csv, self.heldout_short, prompt=SHORT_PROMPT, response=SHORT_RESPONSE, **changes)

    def steady(self, data: Path) -> list[dict[str, Any]]:
        """Every selected recipe, ``--steps`` steps on the marketing rows."""
        train_csv, heldout_csv = split_data(data, self.work_dir, self.args.heldout_rows, seed=42)
        return [run_recipe(self.spec(name, train_csv, heldout_csv), self.logs) for name in self.args.only]

    def short(self) -> list[dict[str, Any]]:
        """careful and tunesmith-lora, ``--steps`` steps on the short rows."""
        rows = write_short_rows(self.work_dir / "short-steady.csv", self.args.steps * self.args.rows_per_step * 2)
        return [run_recipe(self.short_spec(name, rows), self.logs, "short") for name in ("careful", "tunesmith-lora")]

    def whole(self) -> list[dict[str, Any]]:
        """One epoch of the short rows, start to exit: the careful script, then ``tunesmith train``."""
        rows = write_short_rows(self.work_dir / "short-epoch.csv", self.args.short_rows)
        careful = self.short_spec(
            "careful", rows, epochs=1, score_heldout=False, save_to=str(self.work_dir / "careful-model")
        )
        results = [run_recipe(careful, self.logs, "whole")]
        results.append(self.tunesmith_train(rows))
        return results

    def tunesmith_train(self, rows: Path) -> dict[str, Any]:
        """``tunesmith train`` on a config file, as a user runs it; its figures come from the run's run.json."""
        config = self.work_dir / "whole.yaml"
        config.write_text(json.dumps(whole_config(rows, self.args)))  # JSON is YAML
        runs = self.work_dir / "whole-runs"  # the recipes' runs go to work_dir/runs
        print("running whole-tunesmith ...", file=sys.stderr, flush=True)
        command = [str(TUNESMITH), "train", str(config), "--output-dir", str(runs)]
        result = run_child("tunesmith-cli", command, self.logs / "whole-tunesmith.log")
        if "error" not in result:
            (self.whole_run,) = [path.parent for path in runs.glob("*/run.json")]
            result |= run_figures(self.whole_run)
        print(f"  whole-tunesmith: {result['wall_seconds']} s", file=sys.stderr, flush=True)
        return result

    def long(self) -> list[dict[str, Any]]:
        """tunesmith-lora for ``--long-steps`` steps (one epoch of fresh rows), memory and speed per step."""
        rows = write_short_rows(self.work_dir / "short-long.csv", self.args.long_steps * self.args.rows_per_step)
        spec = self.short_spec("tunesmith-lora", rows, epochs=1, score_heldout=False)
        return [run_recipe(spec, self.logs, "long")]

    def evaluate(self) -> list[dict[str, Any]]:
        """`tunesmith eval --no-base` on the whole part's run, then the plain generate loop on the same prompts."""
        if self.whole_run is None:
            return [{"recipe": "tunesmith-eval", "error": "the whole part's tunesmith run failed"}]
        a = self.args
        rows = write_evaluation_rows(self.work_dir / "eval.csv", a.eval_prompts, a.eval_references)
        ours = self.tunesmith_eval(rows)
        metrics_only = self.tunesmith_eval(rows, "--no-loss")
        job = self.work_dir / "plain.json"
        job.write_text(json.dumps(plain_job(self, rows, ours.get("max_new_tokens", 96))))
        print("running eval-plain ...", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "recipes.plain_generate", str(job)]
        plain = run_child("plain-generate", command, self.logs / "eval-plain.log")
        answers = plain.pop("answers", None)
        for result in (ours, metrics_only):
            if answers is not None and "tuned_outputs" in result:
                same = sum(a == b for a, b in zip(answers, result.pop("tuned_outputs"), strict=True))
                result["same_answers_as_plain"] = f"{same}/{plain['prompts']}"
        return [ours, metrics_only, plain]

    def tunesmith_eval(self, rows: Path, *flags: str) -> dict[str, Any]:
        """``tunesmith eval --no-base`` (plus ``flags``) on the whole part's run, as a user runs it."""
        assert self.whole_run is not None
        name = " ".join(["tunesmith-eval", *flags])
        print(f"running {name} ...", file=sys.stderr, flush=True)
        command = [str(TUNESMITH), "eval", str(self.whole_run), "--data", str(rows), "--no-base", *flags]
        result = run_child(name, command, self.logs / f"eval-{name.replace(' --', '-')}.log")
        return result | eval_figures(self.whole_run) if "error" not in result else result


def whole_config(rows: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole part's tunesmith config: its defaults plus what the careful script is also given."""
    return {
        "name": "whole",
        "model": {"name": "smollm2-135m-instruct"},
        "data": {
            "train": str(rows), "prompt": SHORT_PROMPT, "response": SHORT_RESPONSE, "eval_fraction": 0,
            "max_length": args.max_length,
        },
        "method": {"name": "lora"},
        "train": {"epochs": 1, "batch_size": args.rows_per_step, "seed": 42},
    }  # fmt: skip


def run_figures(run_dir: Path) -> dict[str, Any]:
    """What run.json says of a tunesmith run: tokens trained, tokens/s and the time of each phase."""
    run = json.loads((run_dir / "run.json").read_text())
    timings = run.get("timings", {})
    tokens = run.get("train", {}).get("tokens_seen", 0)
    return {
        "tokens_seen": tokens,
        "train_seconds": timings.get("train"),
        "tokens_per_second_all": round(tokens / timings["train"], 1) if timings.get("train") else None,
        "timings": timings,
    }


def eval_figures(run_dir: Path) -> dict[str, Any]:
    """What eval.json and samples.jsonl say: time per part, batch size, the tuned answers."""
    report = json.loads((run_dir / "eval.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    decoding = report["decoding"]
    return {
        "prompts": report["rows"],
        "batch_size": decoding.get("batch_size"),
        "max_new_tokens": decoding.get("max_new_tokens"),
        "timings": decoding.get("timings", {}),
        "metrics": report["metrics"]["tuned"],
        "tuned_outputs": [row["tuned_output"] for row in samples],
    }


def plain_job(bench: Bench, rows: Path, max_new: int) -> dict[str, Any]:
    """The plain loop's job: the same prompts, the run's adapter, the answer length tunesmith eval used."""
    assert bench.whole_run is not None
    return {
        "base": bench.model_dir, "adapter": str(bench.whole_run / "model"), "rows_csv": str(rows),
        "prompt": SHORT_PROMPT, "batch_size": bench.args.eval_batch, "max_new_tokens": max_new,
    }  # fmt: skip


def main() -> None:
    """Measure the matmul peak, run every selected part, write the report."""
    args = parse_args()
    data = wait_for(args.data, args.wait)
    work_dir = Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        bench = Bench(args, work_dir)
        peaks = run_child("peak", [sys.executable, str(BENCH / "peak.py")], bench.logs / "peak.log")
        steps = {"steady": lambda: bench.steady(data), "short": bench.short, "whole": bench.whole,
                 "long": bench.long, "eval": bench.evaluate}  # fmt: skip
        for part in PARTS:
            if part in args.parts:
                results[part] = steps[part]()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report = build_report(args, data, bench.model_dir, peaks, results)
    print(write_report(report, args.out))


if __name__ == "__main__":
    main()
