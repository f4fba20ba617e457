"""``tunesmith doctor`` on GRPO prompts (train.objective grpo): the rewards, computed on the reference answers.

A reward the reference answers do not satisfy is a warning: either the reward asks for something the data
does not show (a length limit the references break, a column they never mention), or it is configured wrong;
GRPO would push the model away from the references. Each reward's mean and spread on the references are
listed as information, and the first prompts are shown as the model reads them.
"""

from __future__ import annotations

import statistics

from tunesmith.config import RunConfig
from tunesmith.data.prompts import prompt_records, read_prompt_tables
from tunesmith.doctor.findings import LISTED, SHOWN_EXAMPLES, Diagnosis, Example, Token, load_tokenizer_for
from tunesmith.rewards import build_rewards, reward_columns_of, reward_metric_names

SATISFIED = 0.999  # a reference scoring below this fails the reward


def diagnose_prompts(report: Diagnosis, cfg: RunConfig, timing: bool = False) -> Diagnosis:
    """Every GRPO check on ``cfg``'s data; adds to ``report`` (timing is not estimated, whatever ``timing``)."""
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
    tokenizer, _ = load_tokenizer_for(cfg)
    report.examples = [_example(r["row"], r["prompt"], tokenizer, cfg) for r in records[:SHOWN_EXAMPLES]]
    report.add("info", "estimate", "timing is not estimated for train.objective grpo")
    return report


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
