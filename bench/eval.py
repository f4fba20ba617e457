"""`tunesmith eval` with its defaults against a plain batched `generate` loop on the same prompts, start to exit.

Both sides answer the same 105 short-row prompts (8 references each, bench/recipes/short_rows.py) with the same
run of the embedded SmolLM2, the same greedy decoding and answer length (the run's eval.max_new_tokens) and the
same batch size. Each is a whole process, timed from start to exit, as a user waits for it. The sides run
interleaved, in alternating order (ABBA), so that other work on the machine weighs on both alike; the load
average is recorded before and after each. Two pairings:

  tuned       `tunesmith eval RUN --data ROWS --no-base` against the loop with the run's adapter (peft, unmerged)
  base+tuned  `tunesmith eval RUN --data ROWS` (every default) against the loop answering with the adapter
              switched off, then on

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/eval.py [--run RUN_DIR] [--repeats 3] [--base-repeats 1]
Without --run it first trains a short LoRA run on the short rows (--train-steps). --all-references adds one
`tunesmith eval --no-base --loss-references all` per repeat. Writes bench/results/eval.json, prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recipes.short_rows import PROMPT, RESPONSE, write_evaluation_rows, write_short_rows
from recipes.spec import resolve_model_dir
from run import TUNESMITH, eval_figures, run_child

BENCH = Path(__file__).resolve().parent


def arguments() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a completed run to evaluate (default: train a short one)")
    parser.add_argument("--train-steps", type=int, default=20, help="steps of the run trained without --run")
    parser.add_argument("--prompts", type=int, default=105, help="eval prompts")
    parser.add_argument("--references", type=int, default=8, help="references per prompt")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved pairs, tuned model only")
    parser.add_argument("--base-repeats", type=int, default=1, help="interleaved pairs, base and tuned")
    parser.add_argument("--all-references", action="store_true", help="also --loss-references all, per repeat")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "eval.json")
    return parser.parse_args()


def train_run(work: Path, steps: int) -> Path:
    """``tunesmith train`` of a LoRA run on the short rows (what the plain loop's adapter is)."""
    rows = write_short_rows(work / "train.csv", 250)
    config = {
        "name": "eval-bench",
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"train": str(rows), "prompt": PROMPT, "response": RESPONSE, "eval_fraction": 0},
        "method": {"name": "lora"},
        "train": {"max_steps": steps, "batch_size": 8, "seed": 42},
    }
    (work / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    print(f"training a {steps}-step run ...", file=sys.stderr, flush=True)
    command = [str(TUNESMITH), "train", str(work / "config.yaml"), "--output-dir", str(work / "runs")]
    result = run_child("train", command, work / "train.log")
    if "error" in result:
        sys.exit(f"training failed: {result['error']} (log {work / 'train.log'})")
    (run_dir,) = [path.parent for path in (work / "runs").glob("*/run.json")]
    return run_dir


class Sides:
    """The two commands of a pairing, sharing the run, the rows and a scratch directory for logs and jobs."""

    def __init__(self, run_dir: Path, rows: Path, work: Path) -> None:
        self.run_dir, self.rows, self.work = run_dir, rows, work
        self.config = _run_eval_config(run_dir)

    def tunesmith(self, label: str, *flags: str) -> dict[str, Any]:
        """``tunesmith eval`` on the rows, plus ``flags``; its own figures from eval.json."""
        print(f"running {label} ...", file=sys.stderr, flush=True)
        command = [str(TUNESMITH), "eval", str(self.run_dir), "--data", str(self.rows), *flags]
        result = run_child(label, command, self.work / f"{label}.log")
        if "error" in result:
            return result
        figures = eval_figures(self.run_dir)
        report = json.loads((self.run_dir / "eval.json").read_text())
        figures["loss_references"] = report["decoding"].get("loss_references")
        figures["loss_pairs"] = report["data"].get("loss_pairs")
        return result | figures

    def plain(self, label: str, base_too: bool) -> dict[str, Any]:
        """The plain loop, with the adapter (and first without it when ``base_too``)."""
        job = {
            "base": resolve_model_dir(), "adapter": str(self.run_dir / "model"), "rows_csv": str(self.rows),
            "prompt": PROMPT, "batch_size": self.config["batch_size"], "max_new_tokens": self.config["max_new_tokens"],
            "base_too": base_too,
        }  # fmt: skip
        path = self.work / f"{label}.json"
        path.write_text(json.dumps(job))
        print(f"running {label} ...", file=sys.stderr, flush=True)
        return run_child(label, [sys.executable, "-m", "recipes.plain_generate", str(path)], self.work / f"{label}.log")


def _run_eval_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {"batch_size": resolved["eval"]["batch_size"], "max_new_tokens": resolved["eval"]["max_new_tokens"]}


def pairing(
    sides: Sides, name: str, repeats: int, all_references: bool, save: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    """``repeats`` interleaved rounds of one pairing, in ABBA order; each row one process, saved as it ends."""
    flags = ["--no-base"] if name == "tuned" else []
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        tag = {"pairing": name, "repeat": repeat}
        order = ("tunesmith", "plain") if repeat % 2 == 0 else ("plain", "tunesmith")
        for side in order:
            if side == "tunesmith":
                rows.append(sides.tunesmith(f"{name}-tunesmith-{repeat}", *flags) | tag)
            else:
                rows.append(sides.plain(f"{name}-plain-{repeat}", base_too=name != "tuned") | tag)
            save(rows)
        if all_references:
            label = f"{name}-tunesmith-all-{repeat}"
            rows.append(sides.tunesmith(label, *flags, "--loss-references", "all") | tag)
            save(rows)
    return rows


def compare(rows: list[dict[str, Any]]) -> None:
    """Mark each tunesmith answer list against the plain loop's of the same round, then drop the answer lists."""
    plain = {(r["pairing"], r["repeat"]): r.pop("answers", None) for r in rows if r["recipe"] == "plain-generate"}
    for row in rows:
        ours = row.pop("tuned_outputs", None)
        theirs = plain.get((row["pairing"], row["repeat"]))
        if ours is not None and theirs is not None:
            row["same_answers_as_plain"] = f"{sum(a == b for a, b in zip(ours, theirs, strict=True))}/{len(theirs)}"


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median start-to-exit seconds per pairing and side, and the loop / tunesmith ratio."""
    out = []
    for name in dict.fromkeys(r["pairing"] for r in rows):
        walls: dict[str, list[float]] = {}
        for r in rows:
            if r["pairing"] == name and "error" not in r:
                walls.setdefault(_side(r), []).append(r["wall_seconds"])
        medians = {side: statistics.median(values) for side, values in walls.items()}
        ratio = medians.get("plain") and medians.get("tunesmith") and medians["plain"] / medians["tunesmith"]
        out.append({"pairing": name, "median_wall_seconds": medians, "plain_over_tunesmith": _round(ratio)})
    return out


def _side(row: dict[str, Any]) -> str:
    if row["recipe"] == "plain-generate":
        return "plain"
    return "tunesmith" if row.get("loss_references") != "all" else "tunesmith --loss-references all"


def _round(value: float | None) -> float | None:
    return round(value, 3) if value else None


def table(rows: list[dict[str, Any]]) -> str:
    """Every process as one markdown row."""
    lines = [
        "| pairing | round | what | start to exit, s | time per part, s | answers equal to the loop's | load 1-min "
        "before/after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r.get("timings", {}).items()) or (
            f"generation {r['generate_seconds']:.1f}" if "generate_seconds" in r else r.get("error", "")
        )
        lines.append(
            f"| {r['pairing']} | {r['repeat']} | {_side(r)} | {r['wall_seconds']} | {parts} | "
            f"{r.get('same_answers_as_plain', 'n/a')} | {r['loadavg_1min_before']:.2f}/{r['loadavg_1min_after']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Train (or take) a run, run the pairings interleaved, write the results."""
    args = arguments()
    work = Path(tempfile.mkdtemp(prefix="tunesmith-eval-bench-"))
    run_dir = args.run or train_run(work, args.train_steps)
    rows_csv = write_evaluation_rows(work / "eval.csv", args.prompts, args.references)
    sides = Sides(run_dir, rows_csv, work)
    done: list[dict[str, Any]] = []

    def save(rows: list[dict[str, Any]]) -> None:
        # After every process, so a run stopped part way keeps what it measured.
        finished = [dict(row) for row in done + rows]
        compare(finished)
        result = {
            "machine": {"cpu_count": os.cpu_count(), "loadavg_now": os.getloadavg()},
            "run": str(run_dir),
            "prompts": args.prompts,
            "references": args.references,
            "batch_size": sides.config["batch_size"],
            "max_new_tokens": sides.config["max_new_tokens"],
            "summary": summary(finished),
            "processes": finished,
            "logs": str(work),
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    done += pairing(sides, "tuned", args.repeats, args.all_references, save)
    done += pairing(sides, "base+tuned", args.base_repeats, False, save)
    rows = [dict(row) for row in done]
    compare(rows)
    print(table(rows))
    print(json.dumps(summary(rows), indent=2))


if __name__ == "__main__":
    main()
