"""Conversation tables in the UI over HTTP: previewed as conversations; a chat with history and tool results."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from fixtures import build_llama, train_into, write_config
from tunesmith.ui.app import UiSettings, create_app

EXAMPLE = Path(__file__).parents[3] / "examples" / "support-agent" / "conversations.jsonl"
TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
BASE_URL = "http://127.0.0.1:7860"


def conversation(number: int) -> list[dict[str, Any]]:
    call = {"function": {"name": "lookup_order", "arguments": json.dumps({"order_id": number})}}
    return [
        {"role": "user", "content": f"Where is order {number}?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        {"role": "tool", "content": json.dumps({"status": "shipped"})},
        {"role": "assistant", "content": f"Order {number} has shipped."},
    ]


def write_chats(path: Path, rows: list[list[dict[str, Any]]]) -> Path:
    path.write_text("".join(json.dumps({"messages": m, "tools": TOOLS}) + "\n" for m in rows))
    return path


@pytest.fixture()
def root(tmp_path: Path, tiny_llama: Path) -> Path:
    shutil.copytree(tiny_llama, tmp_path / "models" / "tiny")
    shutil.copy(EXAMPLE, tmp_path / "support.jsonl")
    return tmp_path


def client(root: Path) -> TestClient:
    return TestClient(create_app(UiSettings(root, root / "runs")), base_url=BASE_URL)


def messages_of(html: str) -> list[tuple[str, str]]:
    """(role, index) of every message box in a fragment."""
    return re.findall(r'class="msg role-(\w+)[^"]*" data-role="\w+" data-index="(\d+)"', html)


def history_of(html: str) -> list[dict[str, Any]]:
    found = re.search(r'<textarea id="history" name="history" hidden hx-swap-oob="true">(.*?)</textarea>', html, re.S)
    assert found, html[-2000:]
    loaded: list[dict[str, Any]] = json.loads(unescape(found.group(1)))
    return loaded


def test_a_conversation_table_previews_as_conversations(root: Path) -> None:
    ui = client(root)
    page = ui.get("/new/table", params={"data.train": "support.jsonl"})
    assert page.status_code == 200, page.text
    html = page.text
    # The form's data.messages and data.tools are filled in (htmx swaps them out of band).
    assert 'id="data-messages" name="data.messages" value="messages"' in html
    assert 'id="data-tools" name="data.tools" value="tools"' in html
    assert html.count('class="conversation"') == 3
    first = html.split('class="conversation" data-row="1"')[1].split('class="conversation"')[0]
    first_rows = [json.loads(line) for line in EXAMPLE.read_text().splitlines()[:1]]
    assert [role for role, _ in messages_of(first)] == [m["role"] for m in first_rows[0]["messages"]]
    assert '<code class="call-name">lookup_order</code>' in first
    assert '<code class="call-arguments">{&#34;order_id&#34;: &#34;B1386&#34;}</code>' in first
    assert "result of <code>lookup_order</code>" in first  # the tool result names the call it answers
    assert "tools: lookup_order, start_return" in first
    assert "<table>" not in html  # not the raw cells: the turns


def test_a_plain_table_keeps_its_cells(root: Path) -> None:
    (root / "ads.csv").write_text("product,ad\nkettle,Boil fast\n")
    html = client(root).get("/new/table", params={"data.train": "ads.csv"}).text
    assert "<table>" in html and "data-messages" not in html and "conversation" not in html


def test_a_malformed_message_is_named_by_row_and_index(root: Path) -> None:
    rows = [conversation(1), [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]]
    write_chats(root / "bad.jsonl", rows)
    ui = client(root)
    table = ui.get("/new/table", params={"data.train": "bad.jsonl"}).text
    assert "row 2 message 1: role: unknown role &#39;robot&#39;" in table
    preview = ui.post("/new/preview", data=conversation_form("bad.jsonl")).text
    error = re.search(r'id="err-data-messages" hx-swap-oob="true">([^<]*)<', preview)
    assert error and "row 2 message 1: role: unknown role" in unescape(error.group(1)), preview[:3000]


def conversation_form(table: str, **extra: str) -> dict[str, str]:
    return {
        "data.train": table,
        "task": "causal_lm",
        "data.messages": "messages",
        "data.tools": "tools",
        "model.name": "models/tiny",
        "method.name": "lora",
        "data.max_length": "2048",
        **extra,
    }


def test_the_preview_of_a_conversation_run_shows_turns_loss_and_the_doctors_statistics(root: Path) -> None:
    ui = client(root)
    fields = conversation_form("support.jsonl", **{"data.loss_on": "last", "data.system": "You are Parcelly's agent."})
    response = ui.post("/new/preview", data=fields)
    assert response.status_code == 200, response.text
    html = response.text
    assert "Fix the form" not in html, html[:2000]
    examples = html.split('<div class="example">')[1:]
    assert len(examples) == 3
    for example in examples:
        roles = messages_of(example)
        assistants = [index for role, index in roles if role == "assistant"]
        # data.loss_on last: only the final assistant turn is marked, in the turns and in the rendered text.
        marked = re.findall(r'class="msg role-(\w+) loss" data-role="\w+" data-index="(\d+)"', example)
        assert marked == [("assistant", assistants[-1])], example[:1500]
        assert example.count("<mark>") >= 1
        assert roles[0][0] == "system"  # data.system leads a conversation that has no system message
    # The doctor's conversation statistics, as `tunesmith doctor` prints them.
    for line in ("turns per conversation: min", "tokens per turn", "tokens with loss: ", "tool calls: "):
        assert line in html, line
    assert "\n  messages: messages\n" in html and "\n  loss_on: last\n" in html  # the YAML Launch runs


def test_the_launch_form_makes_a_conversation_config(root: Path) -> None:
    ui = client(root)
    fields = conversation_form("support.jsonl", **{"data.prompt": "{x}"})
    clash = ui.post("/new/preview", data=fields).text
    assert "data.messages and data.prompt cannot be used together" in clash
    yaml_text = ui.post("/new/config.yaml", data=conversation_form("support.jsonl")).text
    assert "messages: messages" in yaml_text and "tools: tools" in yaml_text and "prompt" not in yaml_text


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chat")
    model = build_llama(root / "chatty", seed=1, tie_embeddings=False)  # answers with visible gibberish
    table = write_chats(root / "chats.jsonl", [conversation(n) for n in range(8)])
    data = {"train": str(table), "messages": "messages", "tools": "tools", "max_length": 512, "eval_fraction": 0.25}
    config = write_config(root / "c.yaml", model, table, train={"max_steps": 1, "batch_size": 4})
    raw = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**raw, "data": data}))  # a conversation row is its messages alone
    train_into(root, config)
    return root


def send(ui: TestClient, run: str, **fields: str) -> Any:
    return ui.post("/chat/send", data={"id": run, "max_new_tokens": "4", **fields})


def test_a_chat_keeps_its_history_and_offers_the_runs_tools(chat_run: Path) -> None:
    ui = client(chat_run)
    (run,) = [p.parent.name for p in (chat_run / "runs").glob("*/run.json")]
    page = ui.get("/chat").text
    assert run in page and "the run's 1, from its data.tools column" in page and "lookup_order" in page
    assert ui.get("/chat?id=no-such-run").status_code == 200  # an unknown id picks nothing, as before
    tools = json.dumps(TOOLS)
    first = send(ui, run, message="Where is order 7?", history="[]", tools=tools)
    assert first.status_code == 200, first.text
    history = history_of(first.text)
    assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["content"] == "Where is order 7?"
    assert "base model, same history" in first.text
    second = send(ui, run, message="And order 8?", history=json.dumps(history), tools=tools)
    assert second.status_code == 200, second.text
    again = history_of(second.text)
    assert [m["role"] for m in again] == ["user", "assistant", "user", "assistant"]
    assert again[:2] == history and again[2] == {"role": "user", "content": "And order 8?"}
    assert [role for role, _ in messages_of(second.text)] == [m["role"] for m in again]
    cleared = ui.post("/chat/clear")
    assert history_of(cleared.text) == [] and "A new conversation" in cleared.text


def test_a_tool_call_waits_for_its_result_which_goes_back_as_a_tool_message(chat_run: Path) -> None:
    from tunesmith.data.chat_format import parse_tool_calls

    ui = client(chat_run)
    (run,) = [p.parent.name for p in (chat_run / "runs").glob("*/run.json")]
    # What a model that calls writes, read back by the same parser the chat reads replies with.
    said = parse_tool_calls(
        'Let me check.\n<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": 7}}\n</tool_call>'
    )
    called = {"role": "assistant", "content": said.content, "tool_calls": said.tool_calls}
    history = [{"role": "user", "content": "Where is order 7?"}, called]
    # The person answers the call: the result joins the history as a tool message, then the model goes on.
    answered = send(
        ui, run, history=json.dumps(history), tools=json.dumps(TOOLS), tool_result_0='{"status": "shipped"}'
    )
    assert answered.status_code == 200, answered.text
    turns = history_of(answered.text)
    assert turns[1]["tool_calls"][0]["function"] == {"name": "lookup_order", "arguments": {"order_id": 7}}
    call_id = turns[1]["tool_calls"][0]["id"]
    result = {"role": "tool", "tool_call_id": call_id, "content": '{"status": "shipped"}', "name": "lookup_order"}
    assert turns[2] == result
    assert turns[3]["role"] == "assistant"
    html = answered.text
    assert '<code class="call-name">lookup_order</code>' in html and "{&#34;order_id&#34;: 7}" in html
    assert "result of <code>lookup_order</code>" in html


def test_the_result_fields_follow_a_call_in_the_reply(chat_run: Path) -> None:
    from tunesmith.ui.chat import Exchange

    # The fragment a reply that calls renders (the tiny model's own replies are gibberish).
    ui = client(chat_run)
    env = ui.app.state.env  # type: ignore[attr-defined]
    call = {"type": "function", "id": "call_1_0", "function": {"name": "lookup_order", "arguments": {"order_id": 7}}}
    reply = {"role": "assistant", "content": "", "tool_calls": [call]}
    exchange = Exchange([{"role": "user", "content": "Where?"}, reply], reply, {"role": "assistant", "content": "x",
                        "tool_calls": []})  # fmt: skip
    html = env.get_template("_chat_history.html").render(exchange=exchange, turns=[])
    assert 'name="tool_result_0"' in html and "result of <code>lookup_order</code>" in html


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"history": "[{", "message": "hi"}, r"history: not valid JSON"),
        ({"history": '[{"role": "robot", "content": "x"}]', "message": "hi"}, "history: message 0: role: unknown role"),
        ({"history": "[]", "tool_result_0": "42"}, "tool_result: 1 results for 0 pending calls"),
        ({"history": "[]", "message": " "}, "message: empty"),
        ({"history": "[]", "message": "hi", "tools": '[{"name": "f"}]'}, r"tools: tools\[0\]: expected"),
        ({"history": "[]", "message": "order " * 600}, r"history: \d+ tokens and 4 new ones exceed the model's 512"),
    ],
)
def test_a_bad_chat_request_is_a_400_naming_the_field(chat_run: Path, fields: dict[str, str], error: str) -> None:
    ui = client(chat_run)
    (run,) = [p.parent.name for p in (chat_run / "runs").glob("*/run.json")]
    response = send(ui, run, **fields)
    assert response.status_code == 400 and re.match(error, response.json()["error"]), response.text


def test_no_page_breaks_on_a_conversation_run(chat_run: Path, tmp_path: Path) -> None:
    # A per-turn evaluation's outputs: scores that count nothing are null, each sample names its turn.
    root = tmp_path / "root"
    shutil.copytree(chat_run / "runs", root / "runs", ignore=shutil.ignore_patterns("*.db", "*.sqlite*"))
    (run,) = [p.parent for p in (root / "runs").glob("*/run.json")]
    metrics = {"call_accuracy": 0.5, "tool_call_exact": 0.0, "json_valid": None, "chrf": 3.2}
    scores = {"base": metrics, "tuned": metrics}
    evaluation = {"rows": 1, "metric_names": list(metrics), "metrics": scores, "delta": None}
    (run / "eval.json").write_text(json.dumps(evaluation))
    reference = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
    sample = {
        "input": "<|im_start|>user\nWhere?<|im_end|>\n",
        "references": ['<tool_call>\n{"name": "f"}\n</tool_call>'],
        **{"base_output": "x", "tuned_output": "y", "conversation": 1, "turn": 1, "reference": reference},
    }
    (run / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    twin = shutil.copytree(run, root / "runs" / (run.name + "-twin"))
    ui = client(root)
    for url in ("/runs", "/runs/table", f"/run?id={run.name}", f"/run/status?id={run.name}",
                f"/run/curves?id={run.name}", f"/run/report?id={run.name}", f"/compare?run={run.name}&run={twin.name}",
                "/chat", f"/chat/tools?id={run.name}"):  # fmt: skip
        page = ui.get(url)
        assert page.status_code in (200, 286), (url, page.text[-1500:])
    assert "call_accuracy" in ui.get(f"/run?id={run.name}").text
    compare = ui.get(f"/compare?run={run.name}&run={twin.name}").text
    assert "tool_call_exact" in compare and "Where?" in compare
