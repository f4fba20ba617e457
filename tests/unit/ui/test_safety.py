"""The UI's safety list over HTTP (FastAPI's TestClient): paths, token, upload limit, escaping, config errors."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures import write_ads_csv
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.ui.app import UiSettings, create_app
from tunesmith.ui.server import resolve_token


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    data = tmp_path / "work"
    data.mkdir()
    write_ads_csv(data / "ads.csv")
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    return data


def client(root: Path, **settings: object) -> TestClient:
    return TestClient(create_app(UiSettings(root, root / "runs", **settings)), base_url="http://127.0.0.1:7860")  # type: ignore[arg-type]


def form(root: Path, model: str = "smollm2-135m-instruct", **values: str) -> dict[str, str]:
    fields = {
        "name": "t",
        "task": "causal_lm",
        "model.name": model,
        "data.train": "ads.csv",
        "data.prompt": "Write an ad for {product} aimed at {audience}.",
        "data.response": "{ad_text}",
        "method.name": "lora",
        "train.max_steps": "3",
    }
    return fields | values


@pytest.mark.parametrize("path", ["../secret.csv", "/etc/passwd", "sub/../../secret.csv", "~/x.csv", "link.csv"])
def test_paths_outside_the_data_root_are_refused(root: Path, path: str) -> None:
    os.symlink(root.parent / "secret.csv", root / "link.csv")
    response = client(root).get("/new/table", params={"data.train": path})
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"data.train: {path!r}")
    assert "hunter2" not in response.text


def test_the_listing_shows_tables_under_the_root_only(root: Path) -> None:
    os.symlink(root.parent, root / "up")  # a symlinked folder leading out is not followed
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.csv").write_text("a\n1\n")
    page = client(root).get("/new").text
    assert '<option value="ads.csv">' in page
    assert "secret.csv" not in page and "x.csv" not in page


def test_run_ids_cannot_leave_the_runs_dir(root: Path) -> None:
    ui = client(root)
    for ref in ("../ads.csv", "/tmp", "..", "nope"):
        response = ui.get("/run", params={"id": ref})
        assert response.status_code == 400, ref
        assert response.json()["error"].startswith("id: ")


def test_a_form_value_outside_the_root_is_refused_at_its_field(root: Path) -> None:
    response = client(root).post("/new/preview", data=form(root, **{"data.train": "../secret.csv"}))
    assert 'id="err-data-train" hx-swap-oob="true">data.train: &#39;../secret.csv&#39;: &#39;..&#39; is refused' in (
        response.text
    )
    model = client(root).post("/new/preview", data=form(root, model="/tmp"))
    assert "model.name: &#39;/tmp&#39;: absolute paths are refused" in model.text


def test_another_address_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNESMITH_UI_TOKEN", raising=False)
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("::1", None) is None
    with pytest.raises(TunesmithError, match=r"--host 0\.0\.0\.0: .* give --token"):
        resolve_token("0.0.0.0", None)
    monkeypatch.setenv("TUNESMITH_UI_TOKEN", "s3cret")
    assert resolve_token("0.0.0.0", None) == "s3cret"


def test_the_token_is_checked_on_every_request(root: Path) -> None:
    ui = client(root, token="s3cret")
    for path in ("/runs", "/static/app.js", "/healthz", "/new/table?data.train=ads.csv"):
        assert ui.get(path).status_code == 401, path
    assert ui.post("/new/preview", data=form(root)).status_code == 401
    assert ui.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert ui.get("/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = ui.get("/runs?token=s3cret")  # the URL the UI prints; it leaves a cookie for the next requests
    assert first.status_code == 200
    assert ui.get("/static/app.js").status_code == 200


def test_uploads_above_the_limit_are_refused_with_a_message(root: Path) -> None:
    ui = client(root, max_upload_mb=0.01)  # 10 KiB
    big = b"a,b\n" + b"1,2\n" * 20_000
    response = ui.post("/new/upload", files={"file": ("big.csv", big, "text/csv")})
    assert response.status_code == 413
    assert "the limit is 0.01 MB" in response.json()["error"]
    # Within the header's slack the limit is enforced while the body streams in; nothing half-written is kept.
    streamed = ui.post("/new/upload", files={"file": ("mid.csv", b"a,b\n" + b"1,2\n" * 5_000, "text/csv")})
    assert streamed.status_code == 413 and "the limit is 0.01 MB" in streamed.json()["error"]
    assert not (root / "uploads").exists() or not list((root / "uploads").iterdir())
    small = ui.post("/new/upload", files={"file": ("../../My Data.csv", b"q,a\nhi,there\n", "text/csv")})
    assert small.status_code == 200
    assert (root / "uploads" / "My_Data.csv").read_text() == "q,a\nhi,there\n"  # the name cannot climb out
    assert "<th>q</th>" in small.text
    odd = ui.post("/new/upload", files={"file": ("run.sh", b"echo hi", "text/plain")})
    assert odd.status_code == 400 and "unsupported file type" in odd.json()["error"]


def test_data_is_shown_escaped(root: Path) -> None:
    (root / "evil.csv").write_text('prompt,<b>col</b>\n"<script>alert(1)</script>",<img src=x onerror=alert(2)>\n')
    response = client(root).get("/new/table", params={"data.train": "evil.csv"})
    assert response.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in response.text and "&lt;b&gt;col&lt;/b&gt;" in response.text
    assert "<script>alert" not in response.text and "<img" not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("train.learning_rate", "-1"), ("train.batch_size", "many"), ("method.name", "lorax"), ("data.max_length", "2")],
)
def test_a_bad_value_gets_the_clis_message_next_to_its_field(root: Path, key: str, value: str) -> None:
    # What the CLI prints for the same value in a YAML file, minus the file name it starts with.
    config = root / "c.yaml"
    shutil.copy(root / "ads.csv", root / "c.csv")
    section, name = key.split(".")
    extra = {"method": {"name": "lora"}} if section != "method" else {}
    import yaml

    raw = {"data": {"train": "c.csv", "prompt": "{product}", "response": "{ad_text}"}, **extra}
    raw.setdefault(section, {})[name] = yaml.safe_load(value)
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(TunesmithError) as cli:
        load_config(config)
    expected = str(cli.value).removeprefix(f"{config}: ")

    response = client(root).post("/new/preview", data=form(root, **{key: value}))
    assert response.status_code == 200
    field_id = key.replace(".", "-")
    escaped = expected.replace("'", "&#39;")
    assert f'id="err-{field_id}" hx-swap-oob="true">{escaped}</span>' in response.text


def test_two_bad_fields_each_get_their_message(root: Path) -> None:
    response = client(root).post(
        "/new/preview", data=form(root, **{"train.learning_rate": "0", "method.r": "0", "data.response": ""})
    )
    assert "train.learning_rate: Input should be greater than 0</span>" in response.text
    assert "method.r: Input should be greater than or equal to 1</span>" in response.text
    assert "data.response is required for task causal_lm</span>" in response.text


def test_bad_requests_get_one_line_and_the_ui_keeps_serving(root: Path) -> None:
    ui = client(root)
    (root / "notes.txt").write_text("hi")
    not_a_table = ui.get("/new/table", params={"data.train": "notes.txt"})
    assert not_a_table.status_code == 400 and "unsupported file type '.txt'" in not_a_table.json()["error"]
    broken = ui.post("/new/upload", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= broken.status_code < 500 and "error" in broken.json()
    assert ui.post("/chat/send", data={"id": "../x", "message": "hi"}).status_code == 400
    assert ui.post("/run/stop", data={"id": "nope"}).status_code == 400
    assert ui.post("/run/eval", headers={"Origin": "http://evil.example"}, data={"id": "x"}).status_code == 403
    htmx = ui.get("/run", params={"id": "nope"}, headers={"HX-Request": "true"})
    assert htmx.status_code == 400 and htmx.text.startswith('<div class="error" role="alert">id: ')
    assert ui.get("/healthz").json() == {"status": "ok"}


def test_the_preview_renders_examples_with_loss_tokens_marked(root: Path, tiny_llama: Path) -> None:
    shutil.copytree(tiny_llama, root / "models" / "tiny")
    response = client(root).post("/new/preview", data=form(root, model="models/tiny"))
    assert response.status_code == 200, response.text
    assert response.text.count('<div class="example">') == 3
    assert "<mark>Hey students! Our coffee keeps you sharp" in response.text  # the response carries the loss
    assert "<span>&lt;|im_start|&gt;user\nWrite an ad for coffee aimed at students." in response.text
    assert "exact duplicate rows" in response.text  # a doctor finding (the table repeats its rows)
    assert f"model:\n  name: {root / 'models' / 'tiny'}" in response.text  # the YAML shown


def test_a_failed_run_shows_its_one_line_error(root: Path) -> None:
    import json

    runs = root / "runs"
    crashed = runs / "crashed-1"  # the trainer wrote run.json and failed
    crashed.mkdir(parents=True)
    (crashed / "config.yaml").write_text("name: crashed\n")
    record = {"status": "failed", "error": "OSError: <no-such-org/model> is not a local folder", "task": "causal_lm"}
    (crashed / "run.json").write_text(json.dumps(record))
    early = runs / "early-1"  # launched from the UI, died before run.json (a bad data path): the log's error line
    early.mkdir()
    (early / "ui-train.json").write_text(json.dumps({"pid": 2**22 + 7, "command": [], "started": 0}))
    (early / "train.log").write_text("loading\nerror: data.train: /x/ads.csv: file not found\n")
    ui = client(root)
    page = ui.get("/run", params={"id": "crashed-1"}).text
    assert 'id="run-error" role="alert">OSError: &lt;no-such-org/model&gt; is not a local folder</p>' in page
    assert 'id="resume"' in page
    early_page = ui.get("/run", params={"id": "early-1"}).text
    assert 'id="run-error" role="alert">error: data.train: /x/ads.csv: file not found</p>' in early_page
    assert 'id="resume"' not in early_page  # nothing to resume: training never started
    assert ui.post("/run/resume", data={"id": "early-1"}).status_code == 400
    table = ui.get("/runs/table").text
    assert "error: data.train: /x/ads.csv: file not found" in table and "crashed-1" in table
    assert ui.get("/healthz").status_code == 200


def fake_run(runs: Path, name: str, status: str, method: str, eval_loss: float) -> None:
    import json

    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\ntask: causal_lm\nmethod: {{name: {method}}}\n")
    record = {"status": status, "task": "causal_lm", "method": method, "started_at": f"2026-01-0{len(name) % 9}"}
    (run / "run.json").write_text(json.dumps(record | {"metrics": {"eval_loss": eval_loss}}))


def test_the_runs_table_filters_and_sorts(root: Path) -> None:
    fake_run(root / "runs", "a-lora", "completed", "lora", 2.0)
    fake_run(root / "runs", "b-full", "interrupted", "full", 1.0)
    fake_run(root / "runs", "c-lora", "completed", "lora", 1.5)
    ui = client(root)
    lora = ui.get("/runs/table", params={"method": "lora"}).text
    assert "a-lora" in lora and "c-lora" in lora and "b-full" not in lora
    assert "b-full" in ui.get("/runs/table", params={"status": "interrupted"}).text
    best = ui.get("/runs/table", params={"sort": "eval_loss"}).text
    assert best.index("b-full") < best.index("c-lora") < best.index("a-lora")


def test_the_yaml_download_is_a_config_the_cli_reads(root: Path) -> None:
    response = client(root).post("/new/config.yaml", data=form(root, **{"train.learning_rate": "3e-4"}))
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="t.yaml"'
    (root / "t.yaml").write_text(response.text)
    config = load_config(root / "t.yaml")
    assert config.train.learning_rate == 3e-4 and config.train.max_steps == 3
    assert config.data.train == root / "ads.csv"
    bad = client(root).post("/new/config.yaml", data=form(root, **{"train.max_steps": "0"}))
    assert (
        bad.status_code == 400 and bad.json()["error"] == "train.max_steps: Input should be greater than or equal to 1"
    )


def test_the_estimate_times_real_steps(root: Path, tiny_llama: Path) -> None:
    shutil.copytree(tiny_llama, root / "models" / "tiny")
    fields = form(root, model="models/tiny", **{"train.batch_size": "2", "method.r": "2"})
    response = client(root).post("/new/estimate", data=fields)
    assert response.status_code == 200, response.text
    assert re.search(r"estimate from 3 timed steps \(cpu, \w+, batch 2, packed\): [\d.]+ s/step", response.text)


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"", "file is empty"), (b"review,label\n", "has a header but no rows"), (b"a,b\n\xff\xfe,1\n", "not UTF-8")],
)
def test_a_rejected_upload_is_not_kept(root: Path, content: bytes, says: str) -> None:
    response = client(root).post("/new/upload", files={"file": ("bad data.csv", content, "text/csv")})
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"file: 'bad data.csv': {says}")
    assert not list((root / "uploads").iterdir())  # nothing saved, not even the temporary file


def test_launch_refuses_what_the_doctor_refuses(root: Path) -> None:
    response = client(root).post("/new/launch", data=form(root, **{"data.response": "{nope}"}))
    assert response.status_code == 422
    assert 'id="launch-error" role="alert" hx-swap-oob="true">Not launched: ' in response.text
    assert "nope" in response.text.split('id="launch-error"')[1].split("</span>")[0]
    assert not (root / "runs").exists()
