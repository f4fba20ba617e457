"""``tunesmith doctor`` on GRPO prompts (train.objective grpo): the rewards, computed on the reference answers.

A reward the reference answers do not satisfy is a warning: either the reward asks for something the data
does not show (a length limit the references break, a column they never mention), or it is configured wrong;
GRPO would push the model away from the references. Each reward's mean and spread on the references are
listed as information, and the first prompts are shown as the model reads them.

Unless timing is off (``--no-timing``), the starting model then answers a few prompts as training will (the
built-in engine, num_generations answers each at train.grpo's temperature and length): each reward's mean and
spread on those answers say whether the rewards can tell answers apart, and a prompt group whose answers all
score the same teaches nothing (every group so: a warning, GRPO would not move). Drawing them is also the
generation half of the step-time estimate; the optimisation half is timed on the same answers (``cost.py``).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from dataclasses import dataclass
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.prompts import prompt_records, read_prompt_tables, split_records
from tunesmith.doctor.cost import LoadedModel, estimate_grpo_cost, load_model, timing_summary
from tunesmith.doctor.findings import LISTED, SHOWN_EXAMPLES, Diagnosis, Example, Token, load_tokenizer_for
from tunesmith.rewards import build_rewards, reward_columns_of, reward_metric_names

SATISFIED = 0.999  # a reference scoring below this fails the reward
SAMPLED_PROMPTS = 4  # training prompts the starting model answers (num_generations answers each)


@dataclass
class Samples:
    """Answers the starting model sampled, num_generations per prompt, as training samples them."""

    records: list[dict[str, Any]]  # each answer's prompt record (a prompt's record repeated per answer)
    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]  # an answer that ended keeps its end token, as in training
    answers: list[str]
    seconds_per_step: float  # sampling one training step's answers


def diagnose_prompts(report: Diagnosis, cfg: RunConfig, timing: bool = False) -> Diagnosis:
    """Every GRPO check on ``cfg``'s data; adds to ``report``. With ``timing``, the starting model also answers a
    few prompts: the rewards are scored on its answers and a training step is timed."""
    tables = read_prompt_tables(cfg)  # a reward naming a missing column stops here, before the tokenizer loads
    records, dropped = prompt_records(tables.train, cfg)
    held = prompt_records(tables.eval, cfg)[0] if tables.eval is not None else []
    report.rows = {"read": len(tables.train) + (len(tables.eval) if tables.eval is not None else 0)}
    report.rows |= {"usable": len(records) + len(held)}
    if dropped:
        report.add("warning", "empty", f"{dropped} rows have an empty prompt; training drops them")
    if not records:
        report.add("blocking", "prepare", "training would stop: no usable rows")
        return report
    check_rewards_on_references(report, cfg, records + held)
    tokenizer, resolved = load_tokenizer_for(cfg)
    report.examples = [_example(r["row"], r["prompt"], tokenizer, cfg) for r in records[:SHOWN_EXAMPLES]]
    if not timing:
        report.add(
            "info",
            "estimate",
            "the rewards on base-model answers and the time per step: skipped with --no-timing (no model loaded)",
        )
        return report
    train = split_records(records, tables, cfg)[0]
    check_base_answers(report, cfg, train, tokenizer, resolved)
    return report


def check_base_answers(
    report: Diagnosis, cfg: RunConfig, train: list[dict[str, Any]], tokenizer: Any, resolved: Any
) -> None:
    """Sample answers from the starting model, score the rewards on them, and estimate a step's time."""
    from tunesmith.engine import Unsupported

    loaded = load_model(cfg, resolved)
    try:
        samples = draw_samples(loaded, tokenizer, cfg, train[:SAMPLED_PROMPTS])
    except Unsupported as err:
        report.add(
            "info",
            "estimate",
            f"no base-model answers and no time estimate: the built-in engine does not run this model ({err}); "
            "training samples with transformers' generate",
        )
        return
    score_samples(report, cfg, samples)
    sequences = list(zip(samples.prompt_ids, samples.answer_ids, strict=True))
    report.timing = estimate_grpo_cost(cfg, loaded, tokenizer, sequences, samples.seconds_per_step, len(train))
    report.add("info", "estimate", timing_summary(report.timing))


def draw_samples(loaded: LoadedModel, tokenizer: Any, cfg: RunConfig, records: list[dict[str, Any]]) -> Samples:
    """num_generations answers to each record's prompt, one training step's answers at a time (the engine built
    for each, as training builds it for each step); raises ``Unsupported`` where the engine does not run."""
    import time

    from tunesmith.data.tokenize import prompt_text

    group, step = cfg.train.grpo.num_generations, cfg.train.batch_size * cfg.train.grad_accum
    texts = [prompt_text(tokenizer, cfg.data, str(r["prompt"])) for r in records]
    ids = [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"] for _ in range(group)]
    eos, answers, per_step = end_tokens(loaded.model, tokenizer), [], []
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        began = time.perf_counter()
        answers += _sample(loaded, chunk, cfg, eos, start // step)
        per_step.append((time.perf_counter() - began) * step / len(chunk))
    texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
    repeated = [r for r in records for _ in range(group)]
    return Samples(repeated, ids, answers, texts, statistics.fmean(per_step))


def _sample(loaded: LoadedModel, prompt_ids: list[list[int]], cfg: RunConfig, eos: list[int], step: int) -> Any:
    from types import SimpleNamespace

    import torch

    from tunesmith.engine import build_engine
    from tunesmith.train.grpo import sample_with_engine

    g = cfg.train.grpo
    settings = SimpleNamespace(
        max_completion_length=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, seed=cfg.train.seed
    )
    with torch.no_grad():
        engine = build_engine(loaded.model, loaded.precision)
    return sample_with_engine(engine, prompt_ids, settings, eos, SimpleNamespace(global_step=step))


def end_tokens(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end an answer, as TRL's GRPOTrainer takes them: the tokenizer's end token first, then
    the model's generation config's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    return ids if tokenizer.eos_token_id in ids else [tokenizer.eos_token_id, *ids]


def score_samples(report: Diagnosis, cfg: RunConfig, samples: Samples) -> None:
    """Each reward's mean and spread on the sampled answers; then the prompt groups whose answers all score
    the same weighted sum (training logs their share as zero_variance_groups)."""
    group = cfg.train.grpo.num_generations
    rewards = build_rewards(cfg)
    prompts = [str(r["prompt"]) for r in samples.records]
    columns = reward_columns_of(samples.records)
    where = f"on {len(samples.answers)} base-model answers ({len(samples.answers) // group} prompts x {group})"
    totals = [0.0] * len(samples.answers)
    for reward, name in zip(rewards, reward_metric_names([r.name for r in rewards]), strict=True):
        scores = reward(prompts, samples.answers, columns)
        if reward.failures:
            report.add("warning", "reward", f"{reward.failures[0].message()} (scoring base-model answers)")
            return
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores)
        report.add("info", "reward", f"{reward.key} {name} {where}: mean {mean:.3f}, std {spread:.3f}")
        totals = [total + reward.weight * score for total, score in zip(totals, scores, strict=True)]
    shown = textwrap.shorten(samples.answers[0], 160, placeholder=" ...")
    report.add("info", "sample", f"a base-model answer to row {samples.records[0]['row']}: {shown!r}")
    _check_variance(report, totals, group)


def _check_variance(report: Diagnosis, totals: list[float], group: int) -> None:
    groups = [totals[i : i + group] for i in range(0, len(totals), group)]
    flat = sum(math.isclose(statistics.pstdev(g), 0.0, abs_tol=1e-6) for g in groups)
    message = (
        f"{flat} of {len(groups)} prompt groups ({flat / len(groups):.0%}) scored the same reward for every "
        "base-model answer: no learning signal from them"
    )
    if flat < len(groups):
        report.add("info", "zero-variance", message)
        return
    report.add(
        "warning",
        "zero-variance",
        message + "; with every group so, GRPO does not move: raise train.grpo.temperature or num_generations, "
        "or add a reward that grades (a share of facts, a length range) rather than passes or fails",
    )


def check_rewards_on_references(report: Diagnosis, cfg: RunConfig, records: list[dict[str, object]]) -> None:
    """Score each reward on the reference answers (data.response); a reward they fail is a warning."""
    if not cfg.data.response:
        report.add("info", "rewards", "no data.response: the rewards cannot be checked on reference answers")
        return
    rewards = build_rewards(cfg)
    prompts = [str(r["prompt"]) for r in records]
    answers = [str(r["reference"]) for r in records]
    columns = reward_columns_of(records)
    for reward, name in zip(rewards, reward_metric_names([r.name for r in rewards]), strict=True):
        scores = reward(prompts, answers, columns)
        if reward.failures:
            report.add("warning", "reward", f"{reward.failures[0].message()} (scoring the references)")
            continue
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores)
        report.add("info", "reward", f"{reward.key} {name} on the references: mean {mean:.3f}, std {spread:.3f}")
        failed = [int(str(r["row"])) for r, s in zip(records, scores, strict=True) if s < SATISFIED]
        if failed:
            listed = ", ".join(map(str, failed[:LISTED])) + (" ..." if len(failed) > LISTED else "")
            report.add(
                "warning",
                "reward",
                f"{reward.key} {name}: {len(failed)} of {len(records)} reference answers do not satisfy it "
                f"(rows {listed}); GRPO would move the model away from them",
            )


def _example(row: int, prompt: str, tokenizer: object, cfg: RunConfig) -> Example:
    from tunesmith.data.tokenize import prompt_text

    text = prompt_text(tokenizer, cfg.data, prompt)  # type: ignore[arg-type]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    tokens = [Token(i, tokenizer.decode([i]), False) for i in ids]  # type: ignore[attr-defined]
    return Example(row, tokens, len(ids), note="the prompt; answers are sampled and rewarded")
