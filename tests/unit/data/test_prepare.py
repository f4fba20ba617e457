from pathlib import Path

import pandas as pd
import pytest

from fixtures import build_tokenizer
from tunesmith.config import DataConfig
from tunesmith.data.prepare import prepare_data, read_tables
from tunesmith.data.tokenize import IGNORE_INDEX, prompt_text, response_text
from tunesmith.errors import TunesmithError


def data_config(train: Path, **overrides: object) -> DataConfig:
    values: dict[str, object] = {
        "train": train,
        "prompt": "Ad for {product}",
        "response": "{ad_text}",
        "max_length": 128,
    }
    values.update(overrides)
    return DataConfig.model_validate(values)


def table(tmp_path: Path, rows: list[tuple[str, str]], name: str = "ads.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows, columns=["product", "ad_text"]).to_csv(path, index=False)
    return path


ROWS = [(f"tea {i}", f"Calm mornings with tea number {i}!") for i in range(20)]


def test_chat_template_renders_and_masks_the_prompt(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0, system="Be brief.")
    prepared = prepare_data(cfg, read_tables(cfg), tokenizer)
    head = prompt_text(tokenizer, cfg, "Ad for tea 0")
    assert (
        head
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAd for tea 0<|im_end|>\n<|im_start|>assistant\n"
    )
    assert response_text(tokenizer, cfg, "Ad for tea 0", "Hi!") == "Hi!<|im_end|>\n"
    row = prepared.train[0]
    n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    assert row["labels"][:n_head] == [IGNORE_INDEX] * n_head
    assert row["labels"][n_head:] == row["input_ids"][n_head:]
    assert tokenizer.decode(row["input_ids"][n_head:]) == "Calm mornings with tea number 0!<|im_end|>\n"


def test_loss_on_all_keeps_every_label(tmp_path: Path) -> None:
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0, loss_on="all")
    prepared = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    assert prepared.train[0]["labels"] == prepared.train[0]["input_ids"]


def test_without_chat_template_prompt_and_response_are_joined_with_eos(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(chat_template=False)
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0)
    assert prompt_text(tokenizer, cfg, "Ad") == "Ad"
    assert response_text(tokenizer, cfg, "Ad", "Yes") == "Yes<|im_end|>"


def test_empty_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [*ROWS, ("", "orphan answer"), ("coffee", "")]
    cfg = data_config(table(tmp_path, rows), eval_fraction=0)
    prepared = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    assert prepared.stats.dropped_empty == 2
    assert prepared.stats.train_rows == 20


def test_long_rows_are_truncated_and_counted(tmp_path: Path) -> None:
    rows = [*ROWS, ("long", "word " * 200)]
    cfg = data_config(table(tmp_path, rows), eval_fraction=0, max_length=96)
    prepared = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    assert prepared.stats.truncated == 1
    assert max(prepared.train["length"]) == 96


def test_every_row_too_long_is_an_error(tmp_path: Path) -> None:
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0, max_length=8)
    with pytest.raises(TunesmithError, match=r"data.max_length: every row of data.train is longer than 8 tokens"):
        prepare_data(cfg, read_tables(cfg), build_tokenizer())


def test_no_usable_rows_is_an_error(tmp_path: Path) -> None:
    cfg = data_config(table(tmp_path, [("", "a"), ("b", "")]))
    with pytest.raises(TunesmithError, match="no usable rows"):
        prepare_data(cfg, read_tables(cfg), build_tokenizer())


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0.25, split_seed=3)
    first = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    again = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    other = prepare_data(data_config(cfg.train, eval_fraction=0.25, split_seed=4), read_tables(cfg), build_tokenizer())
    assert (first.stats.train_rows, first.stats.eval_rows) == (15, 5)
    assert first.eval_pairs == again.eval_pairs != other.eval_pairs
    train_prompts = {tuple(row) for row in first.train["input_ids"]}
    assert not train_prompts & {tuple(row) for row in first.eval["input_ids"]}


def test_separate_eval_file_and_its_columns_are_checked(tmp_path: Path) -> None:
    evaluation = table(tmp_path, ROWS[:3], "eval.csv")
    cfg = data_config(table(tmp_path, ROWS), eval=evaluation)
    prepared = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    assert (prepared.stats.train_rows, prepared.stats.eval_rows) == (20, 3)
    pd.DataFrame({"other": ["x"]}).to_csv(evaluation, index=False)
    with pytest.raises(TunesmithError, match=r"data.prompt: column 'product' is not in .*eval.csv"):
        read_tables(cfg)


def test_tokenised_data_is_cached_by_content(tmp_path: Path) -> None:
    cfg = data_config(table(tmp_path, ROWS), eval_fraction=0)
    first = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    second = prepare_data(cfg, read_tables(cfg), build_tokenizer())
    assert not first.stats.cached and second.stats.cached
    assert second.train["input_ids"] == first.train["input_ids"]
    changed = data_config(cfg.train, eval_fraction=0, system="New system prompt")
    assert not prepare_data(changed, read_tables(changed), build_tokenizer()).stats.cached
