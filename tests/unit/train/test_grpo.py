"""GRPO on the tiny Llama: two steps with LoRA and full fine-tuning, metrics, SFT then GRPO, a failing code reward."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.train.runner import train

REWARDS = [
    {"name": "chrf"},
    {"name": "contains_columns", "columns": ["product"], "weight": 0.5},
    {"name": "length", "max_words": 10},
]


def grpo_config(tmp: Path, model: Path | str, table: Path, **train_keys: Any) -> Any:
    section = {
        "objective": "grpo",
        "max_steps": 2,
        "batch_size": 4,
        "logging_steps": 1,
        "save_steps": 1,
        "rewards": REWARDS,
        "grpo": {"num_generations": 2, "max_new_tokens": 6},
        **train_keys,
    }
    path = write_config(tmp / "grpo.yaml", Path(str(model)), table, train=section)
    if train_keys.get("method") is not None:
        raw = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(raw | {"method": raw["train"].pop("method")}))
    return load_config(path)


def metric_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ads_csv(tmp_path_factory.mktemp("ads") / "ads.csv")


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path, ads: Path) -> Path:
    tmp = tmp_path_factory.mktemp("grpo")
    return train(grpo_config(tmp, tiny_llama, ads, beta=0.04), output_dir=tmp / "runs").run_dir


def test_grpo_with_lora_logs_each_reward_kl_and_the_step_time_split(grpo_run: Path) -> None:
    steps = [line for line in metric_lines(grpo_run) if "loss" in line]
    assert [line["step"] for line in steps] == [1, 2]
    for line in steps:
        assert {"reward", "reward_std", "reward_chrf", "reward_chrf_std", "reward_contains_columns"} <= set(line)
        assert {"reward_length", "zero_variance_groups", "completion_length", "kl"} <= set(line)
        assert 0 <= line["reward_chrf"] <= 1 and 0 <= line["zero_variance_groups"] <= 1
        assert line["time_generation"] > 0 and line["time_optimisation"] >= 0
        assert line["time_step"] >= line["time_generation"] + line["time_reward"]
    assert not [key for line in metric_lines(grpo_run) for key in line if "/" in key]  # TRL's names mapped
    record = json.loads((grpo_run / "run.json").read_text())
    assert record["status"] == "completed" and record["objective"] == "grpo"
    assert "eval_reward" in record["metrics"] and "eval_reward_chrf" in record["metrics"]
    assert (grpo_run / "model" / "adapter_config.json").is_file()
    samples = [json.loads(line) for line in (grpo_run / "grpo_samples.jsonl").read_text().splitlines()]
    assert samples and set(samples[0]["rewards"]) == {"chrf", "contains_columns", "length"}


def test_sft_then_grpo_from_a_run_directory(tmp_path: Path, grpo_run: Path, ads: Path, tiny_llama: Path) -> None:
    sft = train(
        load_config(write_config(tmp_path / "sft.yaml", tiny_llama, ads, train={"max_steps": 1})),
        output_dir=tmp_path / "runs",
    ).run_dir
    run = train(grpo_config(tmp_path, sft, ads, max_steps=1), output_dir=tmp_path / "runs").run_dir
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["model"]["source"] == "run"


def test_grpo_full_fine_tuning_with_beta_zero(tmp_path: Path, tiny_llama: Path, ads: Path) -> None:
    cfg = grpo_config(tmp_path, tiny_llama, ads, max_steps=1, method={"name": "full"})
    run = train(cfg, output_dir=tmp_path / "runs").run_dir
    line = next(line for line in metric_lines(run) if "loss" in line)
    assert "kl" not in line  # beta 0: no reference model, no KL
    assert (run / "model" / "model.safetensors").is_file()


def test_a_code_reward_that_raises_stops_after_the_step_naming_reward_and_row(
    tmp_path: Path, tiny_llama: Path, ads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_reward.py").write_text(
        "def score(prompts, completions, row, **columns):\n    return [1 / 0 if r == 3 else 0.5 for r in row]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rewards = [{"name": "python", "function": "my_reward:score"}]
    cfg = grpo_config(tmp_path, tiny_llama, ads, rewards=rewards, allow_code_rewards=True, max_steps=6)
    cfg.data.eval_fraction = 0.0
    with pytest.raises(TunesmithError, match=r"train.rewards.0: reward python failed on data row 3: ZeroDivision"):
        train(cfg, output_dir=tmp_path / "runs")
    run = next((tmp_path / "runs").glob("tiny-*"))
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "resume" in record.get("hint", "")
    assert list((run / "checkpoints").glob("checkpoint-*"))
    sys.modules.pop("my_reward", None)


def test_eval_reports_each_reward_base_against_tuned(tmp_path: Path, grpo_run: Path) -> None:
    import shutil

    from tunesmith.evaluate.runner import evaluate_run

    run = shutil.copytree(grpo_run, tmp_path / grpo_run.name)
    report = evaluate_run(run, limit=4)
    assert report.base is not None
    assert set(report.tuned) == {"reward", "reward_chrf", "reward_contains_columns", "reward_length"}
    assert report.tuned["reward"] == pytest.approx(
        report.tuned["reward_chrf"] + 0.5 * report.tuned["reward_contains_columns"] + report.tuned["reward_length"]
    )
    document = json.loads((run / "eval.json").read_text())
    assert document["rows"] == len(report.examples) <= 4 and set(document["delta"]) == set(report.tuned)
    assert len((run / "samples.jsonl").read_text().splitlines()) == len(report.examples)


def test_answers_are_sampled_by_the_built_in_engine_seeded_per_answer(tiny_llama: Path) -> None:
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.engine import build_engine
    from tunesmith.train.grpo import sample_with_engine

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    engine = build_engine(model, "fp32")
    args = SimpleNamespace(max_completion_length=6, temperature=1.0, top_p=1.0, seed=1, per_device_eval_batch_size=4)
    prompts = [[1, 5, 9, 12]] * 4  # one prompt, four generations (TRL repeats it)
    first = sample_with_engine(engine, prompts, args, [2], SimpleNamespace(global_step=0))
    again = sample_with_engine(engine, prompts, args, [2], SimpleNamespace(global_step=0))
    later = sample_with_engine(engine, prompts, args, [2], SimpleNamespace(global_step=1))
    assert first == again and first != later  # seeded by train.seed, step and index
    assert len({tuple(answer) for answer in first}) > 1  # a group's answers differ
    assert all(0 < len(answer) <= 6 for answer in first)
    ended = [answer for answer in first + later if len(answer) < 6]
    assert all(answer[-1] == 2 and 2 not in answer[:-1] for answer in ended)  # an ended answer keeps its end token


def test_the_batch_line_counts_prompts_and_answers(tmp_path: Path, ads: Path) -> None:
    from tunesmith.train.runner import batch_line

    grpo = grpo_config(tmp_path, "tiny", ads, batch_size=8, grad_accum=2, grpo={"num_generations": 4})
    assert batch_line(grpo) == (
        "batch: 8 answers per device x 1 processes x 2 accumulation = 16 answers per optimizer step: "
        "4 prompts x 4 answers each"
    )
    sft = load_config(write_config(tmp_path / "sft.yaml", Path("tiny"), ads, train={"batch_size": 4}))
    assert batch_line(sft) == "batch: 4 per device x 1 processes x 1 accumulation = 4 rows per optimizer step"


def test_every_built_in_reward_scores_a_tiny_model_step_and_fails_random_answers(
    tmp_path: Path, tiny_llama: Path
) -> None:
    """Each built-in reward runs in a real GRPO step on the tiny model's answers (a few random tokens, which
    satisfy none of them) and is logged; the doctor scores the text, column, regex and length rewards 1.0 on the
    reference answers, which satisfy them."""
    import csv

    from tunesmith.config import REWARD_OPTIONS
    from tunesmith.doctor import diagnose

    call = json.dumps({"name": "lookup_order", "arguments": {"order_id": "A17"}})
    table = tmp_path / "prompts.csv"
    with table.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product", "answer", "mood", "call"])
        for product in ("Lamp", "Desk", "Vase", "Mug"):  # the answer is the reference every reward below asks for
            writer.writerow([product, f"Buy the {product} now", "positive", call])
    rewards = [
        {"name": "chrf"},
        {"name": "bleu"},
        {"name": "rouge"},
        {"name": "exact_match"},
        {"name": "contains_columns", "columns": ["product"]},
        {"name": "regex", "must": ["^Buy "], "must_not": ["[0-9]"]},
        {"name": "json_schema", "schema": {"type": "object", "required": ["order_id"]}},
        {"name": "tool_call", "column": "call"},
        {"name": "label", "column": "mood", "labels": ["positive", "negative"]},
        {"name": "length", "min_words": 4, "max_words": 6},
    ]
    assert {r["name"] for r in rewards} == set(REWARD_OPTIONS) - {"python"}  # a new built-in joins this test
    path = write_config(
        tmp_path / "all.yaml",
        tiny_llama,
        table,
        data={"prompt": "Write the ad for {product}.", "response": "{answer}", "eval_fraction": 0},
        train={
            "objective": "grpo",
            "max_steps": 1,
            "batch_size": 4,
            "logging_steps": 1,
            "rewards": rewards,
            "grpo": {"num_generations": 2, "max_new_tokens": 4},
        },
    )
    run_dir = train(load_config(path), output_dir=tmp_path / "runs").run_dir
    (step,) = [line for line in metric_lines(run_dir) if "loss" in line]
    for name in REWARD_OPTIONS.keys() - {"python"}:
        assert 0 <= step[f"reward_{name}"] < 1, (name, step[f"reward_{name}"])  # random tokens fail every reward

    # The same rewards on answers that satisfy them: the reference for the text rewards, a call or JSON for the rest.
    report = diagnose(load_config(path), timing=False)
    scored = {
        p.message.split(" on the references")[0]: p.message for p in report.problems if "references:" in p.message
    }
    for index, reward in enumerate(rewards):
        message = scored.get(f"train.rewards.{index} {reward['name']}", "")
        if reward["name"] in {"json_schema", "tool_call", "label"}:
            continue  # the reference ad is no JSON, no call and no label: scored by the reward tests instead
        assert message.endswith("mean 1.000, std 0.000"), (reward["name"], message, report.problems)
