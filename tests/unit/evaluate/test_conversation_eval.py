"""Per-turn eval of a tiny conversation run: `tunesmith eval`, the turns it predicts, and training's per-turn scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import train_into, write_config
from tunesmith.data.chat_format import assistant_text
from tunesmith.evaluate.conversation import Turn, feed_turns
from tunesmith.evaluate.metrics import build_metrics

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
TOOL_KEYS = ("call_decision_accuracy", "call_exact_match", "call_argument_f1", "call_json_validity")


def conversation(number: int) -> list[dict[str, Any]]:
    call = {"function": {"name": "lookup_order", "arguments": json.dumps({"order_id": number})}}
    return [
        {"role": "user", "content": f"Where is order {number}?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": json.dumps({"status": "shipped", "order_id": number})},
        {"role": "assistant", "content": f"Order {number} has shipped."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You are welcome."},
    ]


def write_chats(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"messages": conversation(n), "tools": TOOLS}) + "\n" for n in range(count)))
    return path


@pytest.fixture(scope="module")
def conversation_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conversation-run")
    table = write_chats(root / "chats.jsonl", 12)
    config = write_config(
        root / "config.yaml",
        tiny_llama,
        table,
        train={"max_steps": 2, "batch_size": 4, "eval_steps": 2},
        eval={"batch_size": 4, "max_new_tokens": 6, "metrics": ["tool_calls", "bleu"]},
    )
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {
        "train": str(table),
        "messages": "messages",
        "tools": "tools",
        "eval_fraction": 0.25,
        "max_length": 480,
    }
    config.write_text(yaml.safe_dump(raw))
    return train_into(root, config)


@pytest.fixture()
def run_dir(conversation_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(conversation_run, tmp_path / conversation_run.name))


def test_training_scores_assistant_turns_at_each_evaluation(conversation_run: Path) -> None:
    rows = [json.loads(line) for line in (conversation_run / "metrics.jsonl").read_text().splitlines()]
    scored = [row for row in rows if "eval_call_decision_accuracy" in row]
    assert scored, "no per-turn scores in metrics.jsonl"
    assert 0.0 <= scored[-1]["eval_call_decision_accuracy"] <= 1.0
    assert "eval_bleu" in scored[-1]


def test_eval_cli_scores_every_assistant_turn_base_and_tuned(run_dir: Path) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    done = CliRunner().invoke(app, ["eval", str(run_dir)])
    assert done.exit_code == 0, done.output
    assert "call_decision_accuracy" in done.output
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["data"]["conversations"] == 3
    # The third turn's input (about 500 tokens) is over data.max_length=480: left out, counted.
    data = report["data"]
    assert (report["rows"], data["turns"], data["calling_turns"], data["skipped_over_max_length"]) == (6, 6, 3, 3)
    assert report["metric_names"] == ["tool_calls", "bleu"]
    for side in ("base", "tuned"):
        assert set(report["metrics"][side]) == {*TOOL_KEYS, "bleu", "loss", "perplexity"}
        assert 0.0 <= report["metrics"][side]["call_decision_accuracy"] <= 1.0
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    by_conversation: dict[int, list[int]] = {}
    for sample in samples:
        assert {"input", "references", "base_output", "tuned_output", "reference"} <= set(sample)
        by_conversation.setdefault(sample["conversation"], []).append(sample["turn"])
    assert all(turns == [0, 1] for turns in by_conversation.values())
    first_turn = next(s for s in samples if s["turn"] == 0)
    assert first_turn["reference"]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert first_turn["input"].endswith("<|im_start|>assistant\n")


def test_each_turn_reads_the_conversation_exactly_as_training_rendered_it(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tunesmith.config import load_config
    from tunesmith.data.conversation import read_conversations
    from tunesmith.data.tables import read_table
    from tunesmith.data.turns import conversation_renderer, render_pieces
    from tunesmith.evaluate.conversation import conversation_turns

    table = write_chats(tmp_path / "chats.jsonl", 2)
    config = write_config(tmp_path / "c.yaml", tiny_llama, table)
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"train": str(table), "messages": "messages", "tools": "tools", "max_length": 1024}
    config.write_text(yaml.safe_dump(raw))
    cfg = load_config(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    conversations = read_conversations(read_table(table, "data.train"), "messages", "tools", table)
    turns, skipped = conversation_turns(conversations, tokenizer, cfg)
    assert (len(turns), skipped) == (6, 0)
    pieces = render_pieces(conversations[0], conversation_renderer(tokenizer, cfg.data))
    # Training's text up to each assistant header (the piece that carries no loss) is the turn's input.
    heads = [
        "".join(p.text for p in pieces[: i + 1]) for i, p in enumerate(pieces) if p.role == "assistant" and not p.answer
    ]
    assert [t.prompt for t in turns[:3]] == heads
    assert "<tool_response>" in turns[1].prompt and "<tools>" in turns[0].prompt
    # A max_length shorter than the last turn's input leaves that turn out, counted.
    short = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"max_length": len(tokenizer(heads[2])["input_ids"]) - 1})}
    )
    assert conversation_turns(conversations, tokenizer, short)[1] == 2


def test_text_metrics_read_only_text_turns_and_tool_calls_every_turn() -> None:
    call = {"type": "function", "function": {"name": "lookup_order", "arguments": {"order_id": 3}}}
    turns = [
        Turn(1, 0, "p0", {"role": "assistant", "content": "", "tool_calls": [call]}),
        Turn(1, 1, "p1", {"role": "assistant", "content": "Order 3 has shipped.", "tool_calls": []}),
    ]
    metrics = build_metrics(["tool_calls", "exact_match"])
    # The right call, then the right answer followed by a stray call: text metrics see the answer without it.
    outputs = [assistant_text(turns[0].reference), "Order 3 has shipped.\n" + assistant_text(turns[0].reference)]
    for metric in metrics.values():
        feed_turns(metric, turns, outputs)
    assert metrics["exact_match"].compute()["exact_match"] == 1.0
    scores = metrics["tool_calls"].compute()
    assert scores["call_decision_accuracy"] == 0.5  # the stray call was a wrong decision
    assert scores["call_exact_match"] == 1.0


def test_limit_and_a_data_file_with_a_malformed_message(run_dir: Path, tmp_path: Path) -> None:
    from tunesmith.errors import TunesmithError
    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(run_dir, limit=1, base=False, loss=False)
    assert (len(report.examples), report.base) == (2, None)
    bad = tmp_path / "bad.jsonl"
    rows = [conversation(1), [{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}"}]]
    bad.write_text("".join(json.dumps({"messages": m, "tools": TOOLS}) + "\n" for m in rows))
    with pytest.raises(TunesmithError, match=r"row 2 message 1: role: a tool result with no tool call before it"):
        evaluate_run(run_dir, data=bad)
    good = write_chats(tmp_path / "more.jsonl", 2)
    report = evaluate_run(run_dir, data=good, base=False, loss=False)
    assert report.data["source"] == "file" and report.data["turns"] == 4


def test_eval_shows_progress_for_each_model_and_phase(run_dir: Path) -> None:
    import re

    from typer.testing import CliRunner

    from tunesmith.cli import app

    done = CliRunner().invoke(app, ["eval", str(run_dir), "--limit", "1"])
    assert done.exit_code == 0, done.output
    # One conversation: two assistant turns fit data.max_length; a line as each phase starts and as it ends.
    ends = [
        re.search(rf"^eval {model} {phase}: (\d+)/\1 {unit}, \d+ s$", done.output, re.MULTILINE)
        for model in ("base", "tuned")
        for phase, unit in (("generation", "answers"), ("loss", "batches"))
    ]
    assert all(ends), done.output
    assert ends[0] is not None and ends[0].group(1) == "2"  # both turns answered
    starts = [
        done.output.index(f"eval {model} {phase}: 0/")
        for model in ("base", "tuned")
        for phase in ("generation", "loss")
    ]
    assert starts == sorted(starts)  # base before tuned, generation before loss


def test_text_metrics_are_undefined_when_every_reference_turn_calls_a_tool(run_dir: Path, tmp_path: Path) -> None:
    import re

    from typer.testing import CliRunner

    from tunesmith.cli import app

    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps({"messages": conversation(n)[:3], "tools": TOOLS}) + "\n" for n in range(2)))
    done = CliRunner().invoke(app, ["eval", str(run_dir), "--data", str(calls), "--no-loss"])
    assert done.exit_code == 0, done.output
    report = json.loads((run_dir / "eval.json").read_text())
    assert (report["data"]["turns"], report["data"]["text_turns"]) == (2, 0)
    # No text turn: BLEU has nothing to compare, so it is null (not 0.0); the tool-call scores are numbers.
    assert report["metrics"]["base"]["bleu"] is None and report["metrics"]["tuned"]["bleu"] is None
    assert report["delta"]["bleu"] is None
    assert isinstance(report["metrics"]["tuned"]["call_decision_accuracy"], float)
    assert re.search(r"bleu ↑\s*│\s*-\s*│\s*-\s*│\s*-\s*│", done.output), done.output


def _strict_json(text: str) -> Any:
    # What a browser's JSON.parse accepts: no NaN or Infinity.
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_training_run_with_no_text_turn_shows_bleu_undefined(
    tiny_llama: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "calls.jsonl"
    table.write_text("".join(json.dumps({"messages": conversation(n)[:2], "tools": TOOLS}) + "\n" for n in range(8)))
    config = write_config(
        tmp_path / "config.yaml",
        tiny_llama,
        table,
        train={"max_steps": 1, "batch_size": 4},
        eval={"batch_size": 4, "max_new_tokens": 4, "metrics": ["tool_calls", "bleu"]},
    )
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"train": str(table), "messages": "messages", "tools": "tools", "eval_fraction": 0.25}
    config.write_text(yaml.safe_dump(raw))
    run_dir = train_into(tmp_path, config)
    summary = [line for line in capfd.readouterr().err.splitlines() if line.startswith("eval: loss")]
    assert summary and "bleu -" in summary[-1] and "nan" not in summary[-1], summary
    record = _strict_json((run_dir / "run.json").read_text())
    assert record["metrics"]["eval_bleu"] is None  # undefined, written as null: the UI reads run.json
