"""Inputs and their references: grouping by rendered prompt, list columns, bad eval files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fixtures import build_tokenizer, write_config
from tunesmith.config import RunConfig, load_config
from tunesmith.data.render import Pair
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.references import EvalExample, build_eval_set, group_references, read_source


@pytest.fixture()
def config(tmp_path: Path) -> RunConfig:
    data = tmp_path / "train.csv"
    data.write_text("product,audience,ad_text\ncoffee,students,Grab a cup!\ntea,retirees,Steep a pot.\n")
    return load_config(write_config(tmp_path / "config.yaml", tmp_path / "model", data))


def _eval_set(config: RunConfig, path: Path, limit: int | None = None) -> list[EvalExample]:
    source = read_source(config, path)
    return build_eval_set(source, config, build_tokenizer(), limit).examples


def test_rows_with_the_same_prompt_share_their_references(config: RunConfig, tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text(
        "product,audience,ad_text\n"
        "coffee,students,Grab a cup!\n"
        "tea,retirees,Steep a pot.\n"
        "coffee,students,Stay sharp with coffee.\n"
        "coffee, students ,Grab a cup!\n"  # renders to the same prompt; a duplicate reference counts once
        'bike,commuters,"[""Beat the traffic."", ""Ride to work.""]"\n'
    )
    examples = _eval_set(config, path)
    assert examples == [
        EvalExample("Write an ad for coffee aimed at students.", ("Grab a cup!", "Stay sharp with coffee.")),
        EvalExample("Write an ad for tea aimed at retirees.", ("Steep a pot.",)),
        EvalExample("Write an ad for bike aimed at commuters.", ("Beat the traffic.", "Ride to work.")),
    ]


def test_list_column_in_jsonl_and_parquet(config: RunConfig, tmp_path: Path) -> None:
    rows = [
        {"product": "lamp", "audience": "students", "ad_text": ["Study late.", "Kind to tired eyes."]},
        {"product": "desk", "audience": "remote workers", "ad_text": "Stand up for your back."},
    ]
    jsonl = tmp_path / "eval.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parquet = tmp_path / "eval.parquet"
    pd.DataFrame(
        [{**r, "ad_text": r["ad_text"] if isinstance(r["ad_text"], list) else [r["ad_text"]]} for r in rows]
    ).to_parquet(parquet)
    expected = [
        EvalExample("Write an ad for lamp aimed at students.", ("Study late.", "Kind to tired eyes.")),
        EvalExample("Write an ad for desk aimed at remote workers.", ("Stand up for your back.",)),
    ]
    assert _eval_set(config, jsonl) == expected
    assert _eval_set(config, parquet) == expected


@pytest.mark.parametrize(("choice", "loss_pairs"), [("first", 1), ("all", 2)])
def test_the_loss_pairs_are_the_first_reference_or_all_and_limit_counts_inputs(
    config: RunConfig, tmp_path: Path, choice: str, loss_pairs: int
) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("product,audience,ad_text\ncoffee,students,A\ncoffee,students,B\ntea,retirees,C\n")
    config.eval.loss_references = choice  # type: ignore[assignment]
    eval_set = build_eval_set(read_source(config, path), config, build_tokenizer(), limit=1)
    assert [e.references for e in eval_set.examples] == [("A", "B")]
    assert len(eval_set.tokenized) == loss_pairs
    keys = ("source", "inputs", "pairs", "limit", "loss_references", "loss_pairs")
    counts = {key: eval_set.description[key] for key in keys}
    assert counts == {
        "source": "file", "inputs": 1, "pairs": 2, "limit": 1, "loss_references": choice, "loss_pairs": loss_pairs
    }  # fmt: skip


def test_the_default_loss_pair_is_each_inputs_first_reference(config: RunConfig, tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("product,audience,ad_text\ncoffee,students,A\ncoffee,students,B\ntea,retirees,C\n")
    first = tmp_path / "first.csv"
    first.write_text("product,audience,ad_text\ncoffee,students,A\ntea,retirees,C\n")
    assert config.eval.loss_references == "first"
    tokenizer = build_tokenizer()
    default = build_eval_set(read_source(config, path), config, tokenizer, None)
    assert default.tokenized == build_eval_set(read_source(config, first), config, tokenizer, None).tokenized


def test_group_references_keeps_first_seen_order() -> None:
    pairs = [Pair("p2", "x"), Pair("p1", "y"), Pair("p2", "z")]
    assert group_references(pairs) == [EvalExample("p2", ("x", "z")), EvalExample("p1", ("y",))]


def test_eval_file_missing_a_template_column(config: RunConfig, tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("product,ad_text\ncoffee,Grab a cup!\n")
    with pytest.raises(TunesmithError, match=r"data\.prompt: column 'audience' is not in .*eval\.csv"):
        read_source(config, path)


def test_two_list_columns_are_refused(config: RunConfig, tmp_path: Path) -> None:
    config.data.response = "{ad_text} {audience}"
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"product": "p", "audience": ["a", "b"], "ad_text": ["c", "d"]}) + "\n")
    with pytest.raises(TunesmithError, match="only one column may hold a list"):
        _eval_set(config, path)


def test_no_eval_split_points_to_data_option(config: RunConfig) -> None:
    config.data.eval_fraction = 0.0
    with pytest.raises(TunesmithError, match="has no eval split") as caught:
        read_source(config, None)
    assert caught.value.hint == "evaluate on a file with --data FILE"


def test_eval_file_whose_rows_are_all_empty(config: RunConfig, tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("product,audience,ad_text\ncoffee,students,\n")
    with pytest.raises(TunesmithError, match="no usable rows"):
        _eval_set(config, path)
