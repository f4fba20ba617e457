"""A GRPO run from the New-run form over HTTP: the objective, the rewards and their options, refused bad rewards;
the run page charts a GRPO run's rewards."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from fixtures import write_ads_csv
from tunesmith.config import validate_config
from tunesmith.ui.app import UiSettings, create_app


@pytest.fixture()
def root(tmp_path: Path, tiny_llama: Path) -> Path:
    shutil.copytree(tiny_llama, tmp_path / "models" / "tiny")
    write_ads_csv(tmp_path / "ads.csv")
    return tmp_path


def client(root: Path) -> TestClient:
    return TestClient(create_app(UiSettings(root, root / "runs")), base_url="http://127.0.0.1:7860")


def grpo_form(**extra: str) -> dict[str, str]:
    return {
        "name": "ads-grpo",
        "task": "causal_lm",
        "train.objective": "grpo",
        "data.train": "ads.csv",
        "data.prompt": "Write an ad for {product} aimed at {audience}.",
        "data.response": "{ad_text}",
        "model.name": "models/tiny",
        "method.name": "lora",
        "train.max_steps": "2",
        "train.batch_size": "4",
        "train.grpo.num_generations": "4",
        "train.grpo.max_new_tokens": "16",
        "train.beta": "0",
        "rewards.contains_columns": "on",
        "rewards.contains_columns.columns": "product, audience",
        "rewards.contains_columns.weight": "2",
        "rewards.length": "on",
        "rewards.length.min_words": "3",
        "rewards.length.max_words": "30",
        "rewards.regex": "on",
        "rewards.regex.must": "[.!]$\n^[A-Z]",
        # An option of a reward that is not picked is no part of the config.
        "rewards.label.labels": "a, b",
        **extra,
    }


def field_error(html: str, field_id: str) -> str:
    found = re.search(rf'id="err-{field_id}" hx-swap-oob="true">([^<]*)<', html)
    return unescape(found.group(1)) if found else ""


def test_a_grpo_form_gives_the_yaml_the_cli_trains(root: Path) -> None:
    response = client(root).post("/new/config.yaml", data=grpo_form())
    assert response.status_code == 200, response.text
    raw = yaml.safe_load(response.text)
    train = raw["train"]
    assert train["objective"] == "grpo" and train["beta"] == 0
    assert train["grpo"] == {"num_generations": 4, "max_new_tokens": 16}
    assert train["rewards"] == [
        {"name": "contains_columns", "weight": 2, "columns": ["product", "audience"]},
        {"name": "regex", "must": ["[.!]$", "^[A-Z]"]},
        {"name": "length", "min_words": 3, "max_words": 30},
    ]
    assert "loss_on" not in raw["data"]  # an SFT-only key stays out of a GRPO config
    config = validate_config(raw)
    assert config.train.rewards[0].weight == 2.0
    # The same form with objective sft: no rewards, no GRPO keys.
    sft = yaml.safe_load(client(root).post("/new/config.yaml", data=grpo_form(**{"train.objective": "sft"})).text)
    assert "rewards" not in sft["train"] and "grpo" not in sft["train"] and "beta" not in sft["train"]


def test_the_preview_of_a_grpo_form_scores_the_references(root: Path) -> None:
    html = client(root).post("/new/preview", data=grpo_form()).text
    assert "Fix the form" not in html, html[:2000]
    text = unescape(html)
    assert "train.rewards.2 length on the references: mean 1.000" in text, text[:3000]
    # The fixture's ads never name the audience: the doctor says the references miss that reward.
    assert "contains_columns: 21 of 24 reference answers do not satisfy it" in text


@pytest.mark.parametrize(
    ("extra", "field_id", "message"),
    [
        ({"rewards.regex.must": "("}, "rewards-regex-must", "train.rewards.1: must: '(' is not a regular expression"),
        ({"rewards.contains_columns.columns": ""}, "rewards-contains_columns", "contains_columns needs columns"),
        ({"rewards.length.min_words": "many"}, "rewards-length-min_words", "train.rewards.2.min_words: Input"),
        ({"rewards.length.min_words": "40"}, "rewards-length", "min_words 40 is above max_words 30"),
        ({"train.batch_size": "6"}, "train-batch_size", "is not a multiple of train.grpo.num_generations (4)"),
        (
            {"rewards.contains_columns.columns": "product, price"},
            "rewards-contains_columns-columns",
            "column 'price' is not in",
        ),
    ],
)
def test_a_bad_reward_is_shown_at_its_field_and_never_launches(
    root: Path, extra: dict[str, str], field_id: str, message: str
) -> None:
    ui = client(root)
    preview = ui.post("/new/preview", data=grpo_form(**extra)).text
    assert message in field_error(preview, field_id), preview[:3000]
    launched = ui.post("/new/launch", data=grpo_form(**extra))
    assert launched.status_code == 422 and "Not launched" in launched.text
    assert not (root / "runs").exists() or not list((root / "runs").glob("*/launch.yaml"))


def test_two_bad_rewards_are_both_reported(root: Path) -> None:
    html = (
        client(root)
        .post("/new/preview", data=grpo_form(**{"rewards.regex.must": "(", "rewards.length.min_words": "x"}))
        .text
    )
    assert "is not a regular expression" in field_error(html, "rewards-regex-must")
    assert "min_words" in field_error(html, "rewards-length-min_words")


def test_the_new_run_page_offers_grpo_and_the_built_in_rewards(root: Path) -> None:
    page = client(root).get("/new").text
    assert '<option value="grpo"' in page
    for name in ("contains_columns", "regex", "length", "json_schema", "chrf"):
        assert f'name="rewards.{name}" value="on"' in page
    assert 'name="rewards.python"' not in page  # code rewards are for config files (train.allow_code_rewards)
    assert 'data-objectives="grpo"' in page and 'data-reward="length"' in page


def test_the_run_page_of_a_grpo_run_charts_its_rewards(root: Path) -> None:
    run = root / "runs" / "ads-grpo-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump({"name": "ads-grpo", "train": {"objective": "grpo", "max_steps": 2}})
    )
    (run / "run.json").write_text(json.dumps({"name": "ads-grpo", "status": "completed"}))
    rows = [
        {"step": 1, "time": 1.0, "loss": 0.01, "reward": 1.2, "reward_std": 0.3, "reward_length": 0.9,
         "reward_length_std": 0.1, "zero_variance_groups": 0.5},
        {"step": 2, "time": 2.0, "loss": -0.02, "reward": 1.6, "reward_std": 0.2, "reward_length": 1.0,
         "reward_length_std": 0.0, "zero_variance_groups": 0.0},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    ui = client(root)
    page = ui.get("/run", params={"id": run.name})
    assert page.status_code == 200, page.text
    assert 'id="reward-curves"' in page.text
    curves = ui.get("/run/curves", params={"id": run.name, "kind": "rewards"}).json()
    assert curves["x"] == [1, 2] and curves["label"] == "reward"
    assert curves["series"] == {"reward": [1.2, 1.6], "reward_length": [0.9, 1.0], "zero_variance_groups": [0.5, 0.0]}
    assert set(ui.get("/run/curves", params={"id": run.name}).json()["series"]) == {"loss"}
