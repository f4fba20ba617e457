"""Turn the recipes' measurements into bench/results/latest.json and latest.md (machine, table, targets)."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

NOTE = (
    "Timing covers the steps after the warm-up steps (wall clock between step ends: data loading, forward, backward, "
    "optimizer, callbacks). tokens/s counts real (attended) tokens only. MFU = tokens/s x FLOPs per token / matmul "
    "peak; FLOPs per token: full fine-tune 6N, LoRA 4N + 2T (N all parameters incl. adapters, T trainable), "
    "attention-score FLOPs left out. Held-out loss: mean cross-entropy per response token of the same held-out rows, "
    "scored in fp32 by the same code in every process, before and after training. Peak RSS: ru_maxrss of the recipe "
    "process at the end of training (before the held-out scoring). The CPU is shared with other jobs: see the load "
    "averages; treat differences under ~10% as noise."
)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, library versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "").split()
    return {
        "cpu": model or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags],
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "transformers", "peft")},
    }


def add_mfu(results: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """Model FLOP utilisation of each recipe against the measured bf16 and fp32 matmul peaks."""
    for result in results:
        if "tokens_per_second" not in result:
            continue
        achieved = result["tokens_per_second"] * result["flops_per_token"]
        result["achieved_gflops"] = round(achieved / 1e9, 2)
        for dtype in ("bf16", "fp32"):
            if dtype in peaks:
                result[f"mfu_{dtype}"] = round(achieved / peaks[dtype], 4)


def check_targets(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The goals tunesmith aims at, each with the measured value and whether it is met."""
    checks: list[dict[str, Any]] = []
    for part, label in (("steady", "marketing rows"), ("short", "short rows")):
        checks += _steady_checks(_by_recipe(results.get(part, [])), label)
    whole = _by_recipe(results.get("whole", []))
    if {"careful", "tunesmith-cli"} <= whole.keys():
        careful, ours = whole["careful"], whole["tunesmith-cli"]
        checks.append(_check("whole process, one epoch: careful time / tunesmith time",
                             careful["wall_seconds"] / ours["wall_seconds"], ">=", 1.5))  # fmt: skip
    if (long := _by_recipe(results.get("long", [])).get("tunesmith-lora")) and "long_last_vs_first" in long:
        checks.append(_check("long run: tokens/s of the last 10% / first 10%", long["long_last_vs_first"], ">=", 0.95))
        checks.append(_check("long run: peak RSS / RSS after step 20", long["long_peak_rss_vs_settled"], "<=", 1.25))
    checks += _eval_checks(_by_recipe(results.get("eval", [])))
    return checks


def _by_recipe(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["recipe"]: r for r in results if "error" not in r}


def _steady_checks(by: dict[str, dict[str, Any]], label: str) -> list[dict[str, Any]]:
    lora, careful, seed, full = (by.get(n) for n in ("tunesmith-lora", "careful", "seed", "tunesmith-full"))
    checks = []
    if lora and careful:
        checks.append(
            _check(f"{label}: LoRA tokens/s vs careful", _ratio(lora, careful, "tokens_per_second"), ">=", 2.0)
        )
        checks.append(_check(f"{label}: LoRA peak RSS vs careful", _ratio(lora, careful, "peak_rss_gib"), "<=", 0.8))
        gap = abs(_ratio(lora, careful, "heldout_loss_after") - 1)
        checks.append(_check(f"{label}: LoRA held-out loss, relative gap to careful", gap, "<=", 0.02))
    if lora and seed:
        checks.append(_check(f"{label}: LoRA tokens/s vs seed", _ratio(lora, seed, "tokens_per_second"), ">=", 3.0))
    if full and "mfu_bf16" in full:
        checks.append(_check(f"{label}: full fine-tune MFU vs bf16 matmul peak", full["mfu_bf16"], ">=", 0.6))
    return checks


def _eval_checks(by: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ours, plain = by.get("tunesmith-eval"), by.get("plain-generate")
    if not (ours and plain):
        return []
    checks = [_check("eval, whole process: plain loop time / tunesmith eval time",
                     plain["wall_seconds"] / ours["wall_seconds"], ">=", 1.0)]  # fmt: skip
    if metrics_only := by.get("tunesmith-eval --no-loss"):
        checks.append(_check("eval --no-loss (no teacher-forced loss, as the plain loop): plain time / tunesmith time",
                             plain["wall_seconds"] / metrics_only["wall_seconds"], ">=", 1.0))  # fmt: skip
    if "same_answers_as_plain" in ours:
        same, total = (int(n) for n in ours["same_answers_as_plain"].split("/"))
        checks.append(_check("eval: greedy answers equal to the plain loop's (fp32)", same / total, ">=", 1.0))
    return checks


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float(a[key]) / float(b[key])


def _check(name: str, value: float, op: str, target: float) -> dict[str, Any]:
    met = value >= target if op == ">=" else value <= target
    return {"check": name, "value": round(value, 3), "target": f"{op} {target}", "met": met}


def build_report(
    args: argparse.Namespace,
    data: Path,
    model_dir: str,
    peaks: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Everything latest.json holds."""
    for part in ("steady", "short"):
        add_mfu(results.get(part, []), peaks)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "parts": args.parts,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "rows_per_step": args.rows_per_step,
            "max_length": args.max_length,
            "heldout_rows": args.heldout_rows,
            "data": str(data),
            "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
            "short_rows": args.short_rows,
            "long_steps": args.long_steps,
            "eval_prompts": args.eval_prompts,
            "eval_references": args.eval_references,
            "eval_batch": args.eval_batch,
            "model": model_dir,
        },
        "matmul_peak": peaks,
        "results": results,
        "targets": check_targets(results),
        "notes": NOTE,
    }


COLUMNS = [
    ("recipe", "recipe", "{}"),
    ("method", "method", "{}"),
    ("precision", "precision", "{}"),
    ("batches", "batches", "{}"),
    ("trainable params", "params_trainable", "{:,}"),
    ("tokens/s", "tokens_per_second", "{:.0f}"),
    ("s/step", "seconds_per_step", "{:.2f}"),
    ("tokens/step", "tokens_per_step", "{:.0f}"),
    ("peak RSS GiB", "peak_rss_gib", "{:.2f}"),
    ("held-out loss before", "heldout_loss_before", "{:.4f}"),
    ("held-out loss after", "heldout_loss_after", "{:.4f}"),
    ("last logged train loss", "train_loss_last_logged", "{:.4f}"),
    ("FLOPs/token", "flops_formula", "{}"),
    ("MFU bf16", "mfu_bf16", "{:.1%}"),
    ("MFU fp32", "mfu_fp32", "{:.1%}"),
    ("load avg before/after", "load", "{}"),
]


def _cell(result: dict[str, Any], key: str, fmt: str) -> str:
    if key == "load":
        return f"{result.get('loadavg_1min_before', 0):.2f} / {result.get('loadavg_1min_after', 0):.2f}"
    value = result.get(key)
    return "n/a" if value is None else fmt.format(value)


WHOLE_COLUMNS = [
    ("recipe", "recipe", "{}"),
    ("start to exit, s", "wall_seconds", "{:.1f}"),
    ("training tokens", "tokens_seen", "{:,}"),
    ("training s", "train_seconds", "{:.1f}"),
    ("training tokens/s", "tokens_per_second_all", "{:.0f}"),
    ("tunesmith phases, s", "phases", "{}"),
]
LONG_COLUMNS = [
    ("recipe", "recipe", "{}"),
    ("steps", "steps", "{}"),
    ("tokens/s, first 10%", "long_tokens_per_second_first", "{:.0f}"),
    ("tokens/s, last 10%", "long_tokens_per_second_last", "{:.0f}"),
    ("last / first", "long_last_vs_first", "{:.3f}"),
    ("RSS after step 20, GiB", "settled_rss", "{:.2f}"),
    ("peak RSS, GiB", "peak_rss_gib", "{:.2f}"),
    ("peak / after step 20", "long_peak_rss_vs_settled", "{:.3f}"),
]
EVAL_COLUMNS = [
    ("what", "recipe", "{}"),
    ("start to exit, s", "wall_seconds", "{:.1f}"),
    ("prompts", "prompts", "{}"),
    ("batch", "batch_size", "{}"),
    ("time per part, s", "parts", "{}"),
    ("greedy answers equal to the plain loop's", "same_answers_as_plain", "{}"),
]


def _derived(result: dict[str, Any]) -> dict[str, Any]:
    # Cells built from nested values: tunesmith's phase timings, the eval's parts, the settled memory.
    extra: dict[str, Any] = {}
    if timings := result.get("timings"):
        extra["phases"] = extra["parts"] = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    if "generate_seconds" in result:
        extra["parts"] = f"generation {result['generate_seconds']:.1f}"
        extra["batch_size"] = result.get("batch_size", "")
    if settled := result.get("long_rss_gib_after_step"):
        extra["settled_rss"] = settled[1]
    return {**result, **extra}


def _table(results: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['recipe']} | failed: {result['error']} (log: {result.get('log', '')}) |")
            continue
        row = _derived(result)
        lines.append("| " + " | ".join(_cell(row, key, fmt) for _, key, fmt in columns) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """latest.md: machine, settings, one table per part, the targets and how to read them."""
    m, s, peaks, results = report["machine"], report["settings"], report["matmul_peak"], report["results"]
    bf16_peak = (
        f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s, " if "bf16" in peaks else "bf16 not measured (no bf16 instructions), "
    )
    lines = [
        f"# tunesmith speed benchmark ({report['date']})",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores (bf16 instructions: {', '.join(m['cpu_bf16']) or 'none'}); "
        f"torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}, Python {m['python']}",
        f"- matmul peak ({peaks.get('size')}x{peaks.get('size')}): {bf16_peak}"
        f"fp32 {peaks.get('fp32', 0) / 1e9:.1f} GFLOP/s",
        f"- {s['rows_per_step']} rows per step, max_length {s['max_length']}, {s['heldout_rows']} held-out rows",
    ]
    sections = {
        "steady": (f"Steady steps, marketing rows ({s['steps']} steps, {s['warmup_steps']} untimed; data "
                   f"{s['data']}, sha256 {s['data_sha256'][:12]})", COLUMNS),
        "short": (f"Steady steps, short rows ({s['steps']} steps, {s['warmup_steps']} untimed)", COLUMNS),
        "whole": (f"Whole process: one epoch of {s['short_rows']} short rows, start to exit", WHOLE_COLUMNS),
        "long": (f"Long run: {s['long_steps']} steps on short rows", LONG_COLUMNS),
        "eval": (f"Evaluation: {s['eval_prompts']} prompts x {s['eval_references']} references, tuned model only",
                 EVAL_COLUMNS),
    }  # fmt: skip
    for part, (title, columns) in sections.items():
        if part in results:
            lines += ["", f"## {title}", "", *_table(results[part], columns)]
    lines += ["", "## Targets", "", "| check | measured | target | met |", "|---|---|---|---|"]
    lines += [
        f"| {c['check']} | {c['value']} | {c['target']} | {'yes' if c['met'] else 'NO'} |" for c in report["targets"]
    ]
    return "\n".join([*lines, "", "## How to read this", "", report["notes"], ""])


def write_report(report: dict[str, Any], out_dir: Path) -> str:
    """Write latest.json and latest.md under ``out_dir``; return the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(report)
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "latest.md").write_text(markdown)
    return markdown
