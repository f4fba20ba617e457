"""tunesmith doctor finds planted problems: a duplicate, a train/eval overlap, a truncated row, no rows left."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import ADS, write_config
from tunesmith.config import load_config
from tunesmith.doctor import diagnose, normalise, renderables


def write_rows(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product", "audience", "ad_text"])
        writer.writerows(rows)
    return path


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {problem.code for problem in report.problems}


def test_clean_data_has_no_warnings(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_rows(tmp_path / "ads.csv", ADS)
    report = diagnose(load_config(write_config(tmp_path / "c.yaml", tiny_llama, table)), timing=False)
    assert not [p for p in report.problems if p.severity != "info"], report.problems
    assert len(report.examples) == 3
    first = report.examples[0]
    # The response (and its end marker) carries loss; the prompt does not.
    loss_text = "".join(t.text for t in first.tokens if t.loss)
    context = "".join(t.text for t in first.tokens if not t.loss)
    assert ADS[0][2] in loss_text and "coffee" in context and ADS[0][2] not in context
    assert report.lengths is not None and report.lengths.truncated == 0


def test_finds_planted_duplicate_overlap_and_truncation(tmp_path: Path, tiny_llama: Path) -> None:
    long_ad = "Buy now! " * 60
    train = [*ADS, ADS[1], ("kettle", "tea lovers", long_ad), ("Coffee", "students", ADS[0][2].upper() + " ")]
    table = write_rows(tmp_path / "train.csv", train)
    evaluation = write_rows(tmp_path / "eval.csv", [ADS[3], ("mug", "office workers", "A mug for every desk.")])
    config = write_config(
        tmp_path / "c.yaml",
        tiny_llama,
        table,
        data={"eval": str(evaluation), "max_length": 200},
    )
    report = diagnose(load_config(config), timing=False)

    assert {"duplicates", "near-duplicates", "leakage", "truncated"} <= codes(report)
    assert report.exact_duplicates == [[2, 9]]  # rows 2 and 9 (1-based) hold the same ad
    assert [1, 11] in report.near_duplicates  # same text up to case and spacing
    assert report.leaked == [{"eval_rows": [1], "train_rows": [4]}]
    assert report.lengths is not None and report.lengths.truncated == 1 and report.lengths.max > 200
    assert not report.blocking
    problems = report.ranked()
    assert [p.severity for p in problems] == sorted(
        (p.severity for p in problems), key=["blocking", "warning", "info"].index
    )
    text = "\n".join(str(item) for item in renderables(report, styled=False))
    assert "⟦" in text and "rows 2, 9" in text


def test_leakage_inside_an_eval_fraction_split(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_rows(tmp_path / "ads.csv", ADS * 2)  # every row twice: any held-out row also trains
    report = diagnose(load_config(write_config(tmp_path / "c.yaml", tiny_llama, table)), timing=False)
    assert "leakage" in codes(report) and "duplicates" in codes(report)


def test_blocking_when_every_row_is_truncated(tmp_path: Path, tiny_llama: Path) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    table = write_rows(tmp_path / "ads.csv", ADS)
    config = write_config(tmp_path / "c.yaml", tiny_llama, table, data={"max_length": 8})
    done = CliRunner().invoke(app, ["doctor", str(config), "--no-timing", "--json"])
    assert done.exit_code == 1, done.output
    found = json.loads(done.stdout)
    assert found["blocking"] and found["problems"][0]["severity"] == "blocking"
    assert found["problems"][0]["code"] == "all-truncated"
    assert found["lengths"]["truncated_share"] == 1.0


def test_json_marks_each_token(tmp_path: Path, tiny_llama: Path) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    config = write_config(tmp_path / "c.yaml", tiny_llama, write_rows(tmp_path / "ads.csv", ADS))
    done = CliRunner().invoke(app, ["doctor", str(config), "--no-timing", "--json"])
    assert done.exit_code == 0, done.output
    tokens = json.loads(done.stdout)["examples"][0]["tokens"]
    assert {"id", "text", "loss"} == set(tokens[0])
    assert not tokens[0]["loss"] and tokens[-1]["loss"]


def test_blocking_when_no_rows_are_left(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_rows(tmp_path / "ads.csv", [("coffee", "students", ""), ("tea", "retirees", " ")])
    report = diagnose(load_config(write_config(tmp_path / "c.yaml", tiny_llama, table)), timing=False)
    assert report.blocking and "no-rows" in codes(report)
    assert report.empty_cells["ad_text"] == 2


def test_timing_estimates_memory_and_time(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_rows(tmp_path / "ads.csv", ADS)
    report = diagnose(load_config(write_config(tmp_path / "c.yaml", tiny_llama, table)), timing=True)
    assert report.timing is not None
    assert report.timing.seconds_per_step > 0 and report.timing.peak_rss_mb > 10
    assert report.timing.steps_timed == 3 and report.timing.steps_per_epoch == 2  # 6 train rows, batch 4
    assert any("estimate" in p.message for p in report.problems)


def test_normalise() -> None:
    assert normalise("Hello,   World!\n") == normalise("hello world") == "hello world"


def test_enabled_trackers_are_named_and_a_missing_package_blocks(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = write_rows(tmp_path / "ads.csv", ADS)
    config = write_config(tmp_path / "c.yaml", tiny_llama, table, track={"tensorboard": True, "mlflow": True})
    report = diagnose(load_config(config), timing=False)
    (line,) = [p.message for p in report.problems if p.code == "trackers"]
    assert line.startswith("also logged to tensorboard (<run dir>/tensorboard), mlflow (experiment tiny,")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # Python's own "cannot be imported"
    report = diagnose(load_config(config), timing=False)
    assert report.blocking
    assert report.ranked()[0].message.startswith("training would stop: track.mlflow: mlflow is not installed")


DEFAULT_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant who always "
    "answers politely and at length.<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_the_share_of_template_text_and_a_default_system_prompt_are_shown(tmp_path: Path, tiny_llama: Path) -> None:
    import shutil

    model = Path(shutil.copytree(tiny_llama, tmp_path / "model"))
    settings = json.loads((model / "tokenizer_config.json").read_text())
    (model / "chat_template.jinja").unlink(missing_ok=True)
    settings["chat_template"] = DEFAULT_SYSTEM_TEMPLATE
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    table = write_rows(tmp_path / "ads.csv", ADS)
    config = write_config(tmp_path / "c.yaml", model, table)

    report = diagnose(load_config(config), timing=False)
    assert report.lengths is not None and report.lengths.default_system_tokens > 5
    default = next(p for p in report.problems if p.code == "default-system-prompt")
    assert f"{report.lengths.default_system_tokens} tokens" in default.message and "data.system" in default.message
    assert 0 < report.lengths.template_share < 1
    assert any(line.startswith("template text: ") for line in _statistics(report))

    without = diagnose(load_config(config, ["data.system=''"]), timing=False)
    assert without.lengths is not None and "default-system-prompt" not in codes(without)
    assert without.lengths.template_tokens == report.lengths.template_tokens - report.lengths.default_system_tokens


def _statistics(report) -> list[str]:  # type: ignore[no-untyped-def]
    from tunesmith.doctor import statistics_lines

    return statistics_lines(report)


# --- Conversations (data.messages) ---

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
CHAT = [
    {"role": "user", "content": "Where is order 12?"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "lookup_order", "arguments": '{"order_id": 12}'}}]},
    {"role": "tool", "content": '{"status": "shipped"}'},
    {"role": "assistant", "content": "It shipped yesterday."},
]
SMALL_TALK = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]


def write_chats(path: Path, conversations: list[object]) -> Path:
    path.write_text("".join(json.dumps({"messages": c, "tools": TOOLS}) + "\n" for c in conversations))
    return path


def chat_config(tmp_path: Path, model: Path, table: Path, **data: object) -> Path:
    config = write_config(tmp_path / "c.yaml", model, table)
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"train": str(table), "messages": "messages", "tools": "tools", "eval_fraction": 0.25, **data}
    config.write_text(yaml.safe_dump(raw))
    return config


def test_conversations_are_shown_as_the_model_reads_them(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_chats(tmp_path / "chats.jsonl", [CHAT, SMALL_TALK, CHAT, SMALL_TALK])
    report = diagnose(load_config(chat_config(tmp_path, tiny_llama, table)), timing=False)
    stats = report.conversations
    assert stats is not None and stats.conversations == 4 and stats.renderer == "fallback"
    assert stats.turns == {"min": 2, "median": 3, "max": 4} and stats.tool_calls["total"] == 2
    assert set(stats.tokens_per_turn) == {"system", "user", "assistant"} and 0 < stats.loss_share < 0.5
    first = report.examples[0]
    loss_text = "".join(t.text for t in first.tokens if t.loss)
    assert loss_text == (
        '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": 12}}\n</tool_call><|im_end|>\n'
        "It shipped yesterday.<|im_end|>\n"
    )
    assert "tool-format" in codes(report) and "duplicates" in codes(report) and not report.blocking
    lines = statistics_lines_of(report)
    assert "turns per conversation: min 2, median 3, max 4" in lines and "tool calls: 2 in all" in lines


def statistics_lines_of(report) -> str:  # type: ignore[no-untyped-def]
    from tunesmith.doctor import statistics_lines

    return "\n".join(statistics_lines(report))


def test_conversations_longer_than_max_length_are_counted(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_chats(tmp_path / "chats.jsonl", [CHAT, SMALL_TALK, CHAT, SMALL_TALK])
    report = diagnose(load_config(chat_config(tmp_path, tiny_llama, table, max_length=400)), timing=False)
    # The tool conversations are cut after their first answer; the small talk fits.
    assert report.lengths is not None and report.lengths.truncated == 2 and report.lengths.dropped_truncated == 0
    assert report.lengths.max > 400
    assert "truncated" in codes(report) and not report.blocking


def test_no_conversation_within_max_length_says_so_and_what_to_raise(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_chats(tmp_path / "chats.jsonl", [CHAT, SMALL_TALK, CHAT, SMALL_TALK])
    report = diagnose(load_config(chat_config(tmp_path, tiny_llama, table, max_length=16)), timing=False)
    assert report.lengths is not None and report.lengths.dropped_truncated == report.lengths.rows == 4
    shortest = report.lengths.min
    assert report.blocking and report.ranked()[0].code == "all-truncated"
    assert report.ranked()[0].message == (
        f"no conversation keeps an assistant turn within data.max_length=16 tokens; "
        f"max_length {shortest} keeps the shortest conversation whole"
    )
    lines = statistics_lines_of(report).splitlines()
    turn_lines = [line for line in lines if line.startswith("tokens per turn")]
    assert turn_lines == [
        "tokens per turn: none, no conversation fits data.max_length=16; "
        f"raise it ({shortest} keeps the shortest whole)"
    ]
    assert not any(line.startswith("tokens with loss") for line in lines)  # 0% of nothing says nothing


BAD_MESSAGES = [
    ({"role": "bot", "content": "hi"}, "message 1: role: unknown role 'bot'; expected one of system, user"),
    ({"role": "tool", "content": "42"}, "message 1: role: a tool result with no tool call before it"),
    (
        {"role": "assistant", "tool_calls": [{"function": {"name": "lookup_order", "arguments": "{order: 1"}}]},
        "message 1: tool_calls[0].function.arguments: not valid JSON",
    ),
    ({"role": "assistant", "content": " "}, "message 1: content: an assistant turn needs content or tool_calls"),
    ("just text", "message 1: message: expected an object with role and content, got str"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_MESSAGES)
@pytest.mark.parametrize("command", ["doctor", "train"])
def test_a_malformed_message_is_one_line_naming_file_row_index_and_field(
    tmp_path: Path,
    tiny_llama: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bad: object,
    message: str,
    command: str,
) -> None:
    from tunesmith.cli import main

    broken = [SMALL_TALK[0], bad, SMALL_TALK[1]]
    table = write_chats(tmp_path / "chats.jsonl", [SMALL_TALK, broken])
    config = chat_config(tmp_path, tiny_llama, table)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tunesmith.models.load_tokenizer", _no_model_may_load)
    monkeypatch.setattr(
        sys, "argv", ["tunesmith", command, str(config), *(["--no-timing"] if command == "doctor" else [])]
    )
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: data.messages: {table} row 2 {message}"), lines
    assert not (tmp_path / "runs").exists()


def _no_model_may_load(*args: object, **kwargs: object) -> None:
    raise AssertionError("a model loaded before the data was checked")
