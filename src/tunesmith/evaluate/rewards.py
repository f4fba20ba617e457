"""``tunesmith eval`` of a GRPO run: each reward's mean on the eval prompts, base against tuned.

The eval prompts are the run's held-out split (re-created as training made it) or a ``--data`` file; both
models answer greedily, up to train.grpo.max_new_tokens (the length training sampled), and every answer is
scored by the run's own train.rewards. ``reward`` is their weighted sum, as GRPO maximised it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.console import say
from tunesmith.data.prompts import prompt_records, read_prompt_tables, reward_columns, split_records
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.generation import Decoding, generate
from tunesmith.evaluate.progress import Progress
from tunesmith.evaluate.references import EvalExample
from tunesmith.evaluate.report import EvalReport, write_eval_outputs
from tunesmith.models.run_model import LoadedRun, base_model_view, load_run_model
from tunesmith.rewards import Reward, build_rewards, reward_columns_of, reward_metric_names
from tunesmith.rundir import Stopwatch
from tunesmith.track.registry import record_run


def evaluate_rewards(
    run_dir: Path,
    config: RunConfig,
    data: Path | None,
    limit: int | None,
    base: bool,
    tuned_model: Callable[[LoadedRun], Any],
) -> EvalReport:
    """Score the base and the tuned model's answers to the eval prompts with the run's rewards."""
    records, description = _eval_records(config, data)
    records = records[:limit]
    if not records:
        raise TunesmithError(f"run {config.name!r}: no eval prompts", hint="evaluate on a file with --data FILE")
    rewards = build_rewards(config)
    watch = Stopwatch()
    with watch.measure("load"):
        run = load_run_model(run_dir)
    decoding = Decoding(max_new_tokens=config.train.grpo.max_new_tokens)
    prompts = [str(r["prompt"]) for r in records]
    say(f"eval: {len(prompts)} prompts, rewards {', '.join(r.name for r in rewards)}")

    def answer(model: Any, label: str) -> list[str]:
        with watch.measure(f"{label} generation"):
            progress = Progress(f"eval {label} generation")
            return generate(
                model, run.tokenizer, config, prompts, decoding, config.eval.batch_size, run.precision, progress
            )

    base_outputs = None
    if base:  # first, while the adapter is still separate from the base weights
        with base_model_view(run) as base_weights:
            base_outputs = answer(base_weights, "base")
    tuned_outputs = answer(tuned_model(run), "tuned")
    columns = reward_columns_of(records)
    report = EvalReport(
        run_dir=run_dir,
        data=description | {"inputs": len(records), "limit": limit},
        decoding=decoding.as_dict() | {"batch_size": config.eval.batch_size, "timings": watch.timings},
        metric_names=["reward", *(f"reward_{n}" for n in reward_metric_names([r.name for r in rewards]))],
        examples=[EvalExample(str(r["prompt"]), (str(r["reference"]),)) for r in records],
        tuned=reward_means(rewards, prompts, tuned_outputs, columns),
        tuned_outputs=tuned_outputs,
        base=reward_means(rewards, prompts, base_outputs, columns) if base_outputs is not None else None,
        base_outputs=base_outputs,
    )
    write_eval_outputs(report)
    record_run(run_dir)
    return report


def reward_means(
    rewards: list[Reward], prompts: list[str], answers: list[str], columns: dict[str, list[Any]]
) -> dict[str, float]:
    """``reward`` (the weighted sum's mean) and ``reward_<name>`` (each reward's mean) over the answers."""
    names = reward_metric_names([r.name for r in rewards])
    scores = {name: reward(prompts, answers, columns) for reward, name in zip(rewards, names, strict=True)}
    for reward in rewards:
        if reward.failures:
            raise TunesmithError(reward.failures[0].message())
    total = [sum(r.weight * scores[n][i] for r, n in zip(rewards, names, strict=True)) for i in range(len(answers))]
    return {"reward": statistics.fmean(total), **{f"reward_{n}": statistics.fmean(s) for n, s in scores.items()}}


def _eval_records(config: RunConfig, data: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if data is not None:
        from tunesmith.cache import file_sha256

        frame = read_table(data, "--data")
        check_columns({"data.prompt": config.data.prompt, "data.response": config.data.response}, frame.columns, data)
        for key, column in reward_columns(config).items():
            if column not in frame.columns:
                raise TunesmithError(f"--data {data}: {key} names column {column!r}, which the file lacks")
        return prompt_records(frame, config)[0], {"source": "file", "path": str(data), "sha256": file_sha256(data)}
    if config.data.eval is None and config.data.eval_fraction == 0:
        raise TunesmithError(
            f"run {config.name!r} has no eval split (data.eval unset, data.eval_fraction 0)",
            hint="evaluate on a file with --data FILE",
        )
    tables = read_prompt_tables(config)
    records, _ = prompt_records(tables.train, config)
    held = split_records(records, tables, config)[1]
    path = config.data.eval if config.data.eval is not None else config.data.train
    return held, {"source": "eval_split", "path": str(path), "sha256": tables.sha256}
