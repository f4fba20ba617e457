"""The benchmark's own parts that run without training: its short-row data, its tunesmith config, its report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from recipes.short_rows import PROMPT, RESPONSE, evaluation_rows, training_rows  # noqa: E402
from report import check_targets, render_markdown  # noqa: E402
from run import parse_args, whole_config  # noqa: E402


@pytest.mark.embedded  # resolves (and on a fresh cache converts) the real SmolLM2
def test_short_rows_are_short_and_the_same_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    from tunesmith.models import resolve_model

    # The embedded model's conversion is content-keyed and slow: share the user's cache, as the e2e tests do.
    default = Path.home() / ".cache" / "tunesmith"
    monkeypatch.setenv("TUNESMITH_CACHE", os.environ.get("TUNESMITH_TEST_CACHE", str(default)))

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").location)
    rows = training_rows(200)
    assert rows == training_rows(200)
    prompts = [len(tokenizer(PROMPT.format(**row))["input_ids"]) for row in rows]
    answers = [len(tokenizer(RESPONSE.format(**row))["input_ids"]) for row in rows]
    assert min(prompts) >= 20 and max(prompts) <= 60
    assert min(answers) >= 10 and max(answers) <= 40
    assert all(20 <= p + a <= 100 for p, a in zip(prompts, answers, strict=True))


def test_evaluation_rows_give_each_prompt_distinct_references() -> None:
    rows = evaluation_rows(prompts=5, references=4)
    by_prompt: dict[str, set[str]] = {}
    for row in rows:
        by_prompt.setdefault(PROMPT.format(**row), set()).add(RESPONSE.format(**row))
    assert len(by_prompt) == 5 and all(len(refs) == 4 for refs in by_prompt.values())


def test_the_whole_process_config_is_a_valid_tunesmith_config(tmp_path: Path) -> None:
    from tunesmith.config import validate_config

    cfg = validate_config(whole_config(tmp_path / "rows.csv", parse_args(["--parts", "whole"])))
    assert cfg.method.name == "lora" and cfg.train.epochs == 1 and cfg.data.eval_fraction == 0


def test_the_report_checks_each_target_and_shows_each_part() -> None:
    steady = [
        {"recipe": "careful", "tokens_per_second": 100, "peak_rss_gib": 4.0, "heldout_loss_after": 3.0},
        {"recipe": "tunesmith-lora", "tokens_per_second": 150, "peak_rss_gib": 3.0, "heldout_loss_after": 3.03},
    ]
    results = {
        "steady": steady,
        "whole": [{"recipe": "careful", "wall_seconds": 90.0}, {"recipe": "tunesmith-cli", "wall_seconds": 60.0}],
        "long": [{"recipe": "tunesmith-lora", "long_last_vs_first": 0.97, "long_peak_rss_vs_settled": 1.3}],
        "eval": [
            {"recipe": "tunesmith-eval", "wall_seconds": 30.0, "same_answers_as_plain": "104/105"},
            {"recipe": "plain-generate", "wall_seconds": 45.0, "generate_seconds": 40.0},
        ],
    }
    met = {c["check"]: (c["value"], c["met"]) for c in check_targets(results)}
    assert met["marketing rows: LoRA tokens/s vs careful"] == (1.5, False)
    assert met["marketing rows: LoRA held-out loss, relative gap to careful"] == (0.01, True)
    assert met["whole process, one epoch: careful time / tunesmith time"] == (1.5, True)
    assert met["long run: tokens/s of the last 10% / first 10%"] == (0.97, True)
    assert met["long run: peak RSS / RSS after step 20"] == (1.3, False)
    assert met["eval, whole process: plain loop time / tunesmith eval time"] == (1.5, True)
    assert met["eval: greedy answers equal to the plain loop's (fp32)"] == (pytest.approx(0.99, abs=0.01), False)

    settings = vars(parse_args([])) | {"data_sha256": "0" * 64, "data": "ads.csv"}
    report = {
        "date": "today",
        "machine": {"cpu": "cpu", "cores": 2, "cpu_bf16": [], "torch": "t", "transformers": "x", "peft": "p",
                    "python": "3"},
        "settings": settings,
        "matmul_peak": {"size": 2048, "fp32": 1e11},
        "results": results,
        "targets": check_targets(results),
        "notes": "",
    }  # fmt: skip
    text = render_markdown(report)
    for title in ("Steady steps, marketing rows", "Whole process", "Long run", "Evaluation"):
        assert f"## {title}" in text
    assert "bf16 not measured" in text and "| tunesmith-cli | 60.0 |" in text


def test_the_eval_part_needs_the_whole_part() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--parts", "eval"])
