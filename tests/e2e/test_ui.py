"""`tunesmith ui` as a user meets it: a real server process, a real browser (Debian's chromium via Playwright),
real training processes on the tiny Llama; closing the UI mid-run leaves the run going, whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from fixtures import write_ads_csv

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def wait_for(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class UiServer:
    """`python -m tunesmith.cli ui` in its own session (as if started in a terminal), on a free port."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNESMITH_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
        command = [sys.executable, "-m", "tunesmith.cli", "ui", "--port", str(self.port)]
        command += ["--data-root", str(root), "--runs", str(root / "runs")]
        self.log = (root.parent / "ui.log").open("wb")
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(self._up, 30, "the UI to answer /healthz")

    def _up(self) -> bool:
        assert self.process.poll() is None, (self.root.parent / "ui.log").read_text()
        try:
            return get(self.url + "/healthz") == b'{"status":"ok"}'
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture()
def work(tmp_path: Path, tiny_llama: Path) -> Path:
    root = tmp_path / "work"
    shutil.copytree(tiny_llama, root / "models" / "tiny")  # a local model folder under the data root
    return root


def run_fields(name: str, steps: int, save_steps: int) -> dict[str, str]:
    return {
        "name": name,
        "task": "causal_lm",
        "model.name": "models/tiny",
        "data.train": "ads.csv",
        "data.prompt": "Write an ad for {product} aimed at {audience}.",
        "data.response": "{ad_text}",
        "data.eval_fraction": "0.25",
        "method.name": "lora",
        "method.r": "4",
        "train.max_steps": str(steps),
        "train.batch_size": "4",
        "train.logging_steps": "1",
        "train.save_steps": str(save_steps),
        "train.learning_rate": "1e-3",
        "eval.max_new_tokens": "8",
    }


def stop_trainers(work: Path) -> None:
    # Runs live in their own sessions, so a failed test would leave them training: end them.
    for marker in (work / "runs").glob("*/ui-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)


def read_record(run_dir: Path) -> dict[str, object]:
    try:
        loaded = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


# Long enough that the tiny run cannot end before the UI is killed, even when training starts late.
SURVIVOR_STEPS = 150


def test_closing_the_ui_leaves_a_run_it_launched_going_and_whole(work: Path, tmp_path: Path) -> None:
    write_ads_csv(work / "ads.csv")
    server = UiServer(work, tmp_path / "cache")
    try:
        launched = urllib.request.Request(
            server.url + "/new/launch",
            data=urlencode(run_fields("survivor", SURVIVOR_STEPS, 1000)).encode(),
            method="POST",
        )
        with urllib.request.urlopen(launched, timeout=30) as response:
            assert response.status == 200 and response.headers["HX-Redirect"].startswith("/run?id=survivor-")
        (run_dir,) = (work / "runs").iterdir()
        wait_for(lambda: read_record(run_dir).get("status") == "running", 90, "training to start")
        trainer = json.loads((run_dir / "ui-train.json").read_text())["pid"]
        killed_at = time.time()
        # Ctrl-C in the UI's terminal reaches its whole process group; then kill it for good.
        os.killpg(server.process.pid, signal.SIGINT)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        assert os.getpgid(trainer) != server.process.pid  # the run has its own session
        done = wait_for(lambda: (r := read_record(run_dir)).get("status") not in (None, "running") and r, 120, "end")
        assert done["status"] == "completed", (run_dir / "train.log").read_text()[-2000:]
        assert done["train"]["steps"] == SURVIVOR_STEPS  # type: ignore[index]
        assert (run_dir / "model" / "adapter_model.safetensors").is_file()
        logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        steps = [entry["step"] for entry in logged]
        assert steps == sorted(steps) and steps[-1] == SURVIVOR_STEPS
        # metrics.jsonl times are to the millisecond (run.json's finished_at only to the second).
        assert logged[-1]["time"] > killed_at, "the run ended before the UI was killed: nothing was tested"
        # A reopened UI shows the run as it is.
        reopened = UiServer(work, tmp_path / "cache")
        try:
            assert b'id="state" class="status-completed">completed' in get(f"{reopened.url}/run?id={run_dir.name}")
        finally:
            reopened.stop()
    finally:
        server.stop()
        stop_trainers(work)


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_browser_journey(work: Path, tmp_path: Path) -> None:
    """Upload, templates, preview, launch a 3-step run, live curve, stop/resume, the report, chat, compare."""
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    upload = write_ads_csv(tmp_path / "ads.csv")  # on the user's disk, outside the data root: it is uploaded
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        server = UiServer(work, tmp_path / "cache")
        try:
            journey(page, server, work, upload, shots)
        finally:
            page.screenshot(path=str(shots / "last.png"), full_page=True)
            browser.close()
            server.stop()
            stop_trainers(work)
        assert not errors, errors
    if os.environ.get("TUNESMITH_UI_SCREENSHOT"):  # by hand: the README's picture
        shutil.copy(shots / "01-new-run.png", os.environ["TUNESMITH_UI_SCREENSHOT"])


def fill_new_run(page, server: UiServer, name: str, steps: int, save_steps: int) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/new")
    for key, value in run_fields(name, steps, save_steps).items():
        if key in ("task", "method.name", "data.train"):
            continue
        page.fill("#" + key.replace(".", "-"), value)
    page.fill("#data-train", "uploads/ads.csv")
    page.dispatch_event("#data-train", "change")


def journey(page, server: UiServer, work: Path, upload: Path, shots: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    started, phases = time.monotonic(), shots / "phases.txt"

    def phase(name: str) -> None:  # where the wall time goes, for a person reading the test's output
        with phases.open("a") as out:
            out.write(f"{time.monotonic() - started:7.1f} s  {name}\n")

    phase("upload")
    # New run: upload the CSV, see its columns and first rows.
    page.goto(server.url + "/new")
    page.set_input_files("#upload-file", str(upload))
    page.click("#upload-button")
    expect(page.locator("#table-preview th").first).to_have_text("product")
    expect(page.locator("#data-train")).to_have_value("uploads/ads.csv")
    expect(page.locator("#table-preview td").first).to_have_text("coffee")

    phase("templates and preview")
    # Templates and settings; a bad value shows the CLI's message at its field, then the live preview.
    for key, value in run_fields("first", 3, 3).items():
        if key not in ("task", "method.name", "data.train"):
            page.fill("#" + key.replace(".", "-"), value)
    page.fill("#train-learning_rate", "-1")
    expect(page.locator("#err-train-learning_rate")).to_have_text("train.learning_rate: Input should be greater than 0")
    page.fill("#train-learning_rate", "1e-3")
    expect(page.locator("#err-train-learning_rate")).to_have_text("", timeout=30_000)
    expect(page.locator("#examples .example")).to_have_count(3)
    expect(page.locator("#examples mark").first).to_contain_text("Hey students! Our coffee")
    expect(page.locator(".problems")).to_contain_text("exact duplicate rows")
    expect(page.locator("#yaml")).to_contain_text("max_steps: 3")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "01-new-run.png"))

    phase("3-step run")
    # Launch: the run page shows the curve as it is logged, then the completed run.
    page.click("#launch")
    page.wait_for_url(re.compile(r"/run\?id=first-"))
    expect(page.locator("#curves canvas").first).to_be_visible(timeout=60_000)
    expect(page.locator("#state")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#curves")).to_have_attribute("data-points", re.compile(r"^[4-9]$"))  # 3 losses + eval
    page.screenshot(path=str(shots / "02-first-run.png"), full_page=True)
    first_url = page.url

    phase("stop and resume")
    # A long run (it cannot end on its own during the test): watch the curve grow, Stop (as Ctrl-C does),
    # Resume from the checkpoint the stop wrote, see it go on, stop it again.
    fill_new_run(page, server, "second", steps=5000, save_steps=1000)
    expect(page.locator("#examples .example")).to_have_count(3)
    page.click("#launch")
    page.wait_for_url(re.compile(r"/run\?id=second-"))
    expect(page.locator("#curves")).to_have_attribute("data-points", re.compile(r"^([3-9]|\d\d+)$"), timeout=60_000)
    page.screenshot(path=str(shots / "03-run.png"))
    page.click("#stop")
    expect(page.locator("#state")).to_have_text("interrupted", timeout=60_000)
    stopped_at = int(page.locator("#step").inner_text())
    page.click("#resume")
    expect(page.locator("#state")).to_have_text("running", timeout=60_000)
    page.wait_for_function(
        "n => Number((document.getElementById('step') || {}).textContent) > n", arg=stopped_at, timeout=60_000
    )
    page.click("#stop")
    expect(page.locator("#state")).to_have_text("interrupted", timeout=60_000)
    second = next(p for p in (work / "runs").iterdir() if p.name.startswith("second-"))
    record = json.loads((second / "run.json").read_text())
    assert record["status"] == "interrupted" and len(record["resumed_at"]) == 1
    logged = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    losses = [row["step"] for row in logged if "loss" in row]
    assert losses == list(range(1, losses[-1] + 1)) and losses[-1] > stopped_at  # resumed, no step lost or twice

    phase("runs page")
    # Runs: both listed; the report opens.
    page.goto(server.url + "/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator("table.runs tbody tr.status-completed")).to_have_count(1)
    expect(page.locator("table.runs tbody tr.status-interrupted")).to_have_count(1)
    page.screenshot(path=str(shots / "04-runs.png"), full_page=True)

    phase("chat")
    # Chat with the first run (a chat template: it keeps a history): tuned and base answers side by side.
    page.goto(first_url)
    page.click("#chat-link")
    page.fill("#message", "Write an ad for tea aimed at students.")
    page.click("#send")
    expect(page.locator("#history-turns .msg.role-user")).to_contain_text("Write an ad for tea", timeout=60_000)
    expect(page.locator(".answers.latest .answer.tuned .text")).to_be_visible()
    expect(page.locator(".answers.latest .answer.base .who")).to_have_text("base model, same history")
    page.screenshot(path=str(shots / "05-chat.png"), full_page=True)

    phase("compare")
    # Compare the two runs: differing keys, metrics with deltas, curves overlaid.
    page.goto(server.url + "/compare")
    for box in page.locator("input[name=run]").all():
        box.check()
    page.click("#compare-button")
    expect(page.locator("table.diff")).to_contain_text("train.max_steps")
    expect(page.locator("table.metrics")).to_contain_text("Δ")
    expect(page.locator("#compare-curves canvas").first).to_be_visible()
    page.screenshot(path=str(shots / "06-compare.png"), full_page=True)
    phase("done")


# ---- The issue-20 checks, in one browser and one UI server for the module --------------------------------------
# One UI, one completed tiny run and one browser serve every test below; each test adds only what it checks.

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


class Shared:
    """The module's UI server, its data root and a completed 3-step run launched through it."""

    def __init__(self, server: UiServer, work: Path, done: Path, browser: object) -> None:
        self.server, self.work, self.done, self.browser = server, work, done, browser

    def page(self):  # type: ignore[no-untyped-def]
        """A fresh page that records 404s and script errors."""
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        page.set_default_timeout(30_000)
        page.missing, page.errors = [], []
        page.on("response", lambda r: r.status == 404 and page.missing.append(r.url))
        page.on("pageerror", lambda err: page.errors.append(str(err)))
        return page


def post_form(server: UiServer, path: str, fields: dict[str, str]) -> urllib.request.Request:
    return urllib.request.Request(server.url + path, data=urlencode(fields).encode(), method="POST")


def launch_over_http(server: UiServer, fields: dict[str, str], runs: Path) -> Path:
    with urllib.request.urlopen(post_form(server, "/new/launch", fields), timeout=60) as response:
        assert response.status == 200 and response.headers["HX-Redirect"]
        return runs / response.headers["HX-Redirect"].split("id=", 1)[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path, tiny_bert: Path):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("ui-shared")
    work = base / "work"
    shutil.copytree(tiny_llama, work / "models" / "tiny")
    shutil.copytree(tiny_bert, work / "models" / "bert")
    write_ads_csv(work / "ads.csv")
    reviews = ["review,label"] + [f"the best scene in film number {i} was gerardo's,positive" for i in range(12)]
    reviews += [f"a dull and overlong story number {i},negative" for i in range(12)]
    (work / "reviews.csv").write_text("\n".join(reviews) + "\n")
    server = UiServer(work, base / "cache")
    try:
        done = launch_over_http(server, run_fields("done", 3, 3), work / "runs")
        wait_for(lambda: read_record(done).get("status") in ("completed", "failed"), 120, "the 3-step run")
        assert read_record(done)["status"] == "completed", (done / "train.log").read_text()[-2000:]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
            try:
                yield Shared(server, work, done, browser)
            finally:
                browser.close()
    finally:
        server.stop()
        stop_trainers(work)


def fill(page, fields: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for key, value in fields.items():
        if key == "task":
            page.select_option("#task", value)
        elif key != "method.name":
            page.fill("#" + key.replace(".", "-"), value)
    page.dispatch_event("#data-train", "change")


@pytest.mark.browser
@needs_chromium
def test_download_yaml_keeps_the_form_in_chromium(shared: Shared, tmp_path: Path) -> None:
    # Item 1: the form POST of Download carried Origin: null (Referrer-Policy no-referrer) and got a raw 403.
    page = shared.page()
    page.goto(shared.server.url + "/new")
    fill(page, run_fields("saved", 3, 3))
    from playwright.sync_api import expect

    expect(page.locator("#examples .example")).to_have_count(3)
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "saved.yaml"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "saved.yaml"
    assert "max_steps: 3" in saved.read_text() and "name: saved" in saved.read_text()
    expect(page.locator("#train-max_steps")).to_have_value("3")  # still on the filled form
    assert not page.missing and not page.errors, (page.missing, page.errors)  # /favicon.ico included
    page.close()


@pytest.mark.browser
@needs_chromium
def test_a_form_that_does_not_validate_never_launches(shared: Shared) -> None:
    # Item 4 (and item 3's indicator): a template naming a missing column, then a learning rate of "abc".
    from playwright.sync_api import expect

    runs_before = sorted(p for p in (shared.work / "runs").iterdir() if p.is_dir())
    page = shared.page()
    page.goto(shared.server.url + "/new")
    # Whether "timing a few steps…" shows while a preview (not an estimate) is in flight.
    page.evaluate(
        """() => { window.busyDuringPreview = [];
        document.body.addEventListener('htmx:beforeSend', (e) => {
          if (e.detail.requestConfig.path === '/new/preview') window.busyDuringPreview.push(
            getComputedStyle(document.getElementById('estimate-busy')).display); }); }"""
    )
    fill(page, run_fields("doomed", 3, 3) | {"data.response": "{no_such_column}"})
    expect(page.locator("#err-data-response")).to_contain_text("no_such_column")
    page.click("#launch")
    expect(page.locator("#launch-error")).to_contain_text("Not launched")
    expect(page.locator("#launch-error")).to_contain_text("no_such_column")
    page.fill("#data-response", "{ad_text}")
    page.fill("#train-learning_rate", "abc")
    page.click("#launch")  # at once, as a person does: leaving the field fires a preview refresh too
    expect(page.locator("#launch-error")).to_contain_text("train.learning_rate")
    time.sleep(2)  # the refresh has come back by now; the message must still be there
    expect(page.locator("#launch-error")).to_contain_text("train.learning_rate")
    expect(page.locator("#launch-error")).to_be_visible()
    page.click("#download")  # a bare error page would replace the filled form
    expect(page.locator("#launch-error")).to_contain_text("Not downloaded: train.learning_rate")
    assert page.url.endswith("/new") and page.input_value("#train-learning_rate") == "abc"
    time.sleep(1)
    assert sorted(p for p in (shared.work / "runs").iterdir() if p.is_dir()) == runs_before  # no run was made
    busy = page.evaluate("window.busyDuringPreview")
    assert busy and set(busy) == {"none"}, busy
    page.close()


@pytest.mark.browser
@needs_chromium
def test_classification_defaults_and_readable_tokens(shared: Shared) -> None:
    # Item 7: per-task defaults (those of examples/sentiment), tokens shown one by one, long rows wrapped.
    from playwright.sync_api import expect

    page = shared.page()
    page.goto(shared.server.url + "/new")
    page.select_option("#task", "classification")
    expect(page.locator("#method-name")).to_have_value("full")
    expect(page.locator("#train-learning_rate")).to_have_attribute("placeholder", "5.0e-5")
    expect(page.locator("#model-name")).to_have_attribute("placeholder", "minilm-l6")
    fill(page, {"name": "clf", "model.name": "models/bert", "data.train": "reviews.csv", "data.text": "{review}",
                "data.label": "label", "train.max_steps": "2"})  # fmt: skip
    expect(page.locator("#examples .example")).to_have_count(3)
    expect(page.locator("#yaml")).to_contain_text("learning_rate: 5.0e-05")
    expect(page.locator("#yaml")).to_contain_text("name: full")
    tokens = page.locator("#examples .example").first.locator(".tok")
    assert tokens.count() > 5
    box = page.locator("#examples .example").first.bounding_box()
    assert box and box["width"] <= page.locator("#preview").bounding_box()["width"] + 1  # wrapped, not clipped
    page.close()


@pytest.mark.browser
@needs_chromium
def test_a_rejected_upload_says_so_once_and_is_not_kept(shared: Shared, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page = shared.page()
    page.goto(shared.server.url + "/new")
    page.set_input_files("#upload-file", str(empty))
    page.click("#upload-button")
    expect(page.locator("#table-preview .error")).to_contain_text("file: 'empty.csv': file is empty")
    time.sleep(1.5)  # a preview refresh (the old second message) would have come by now
    assert page.locator(".error").count() == 1, page.locator(".error").all_inner_texts()
    assert "required key is missing" not in page.content()
    page.fill("#data-prompt", "{product}")  # going on with the form: the table field says what it lacks
    expect(page.locator("#err-data-train")).to_have_text(
        "data.train: no table yet: upload one, or name a file under the data folder"
    )
    assert "required key is missing" not in page.content()
    uploads = shared.work / "uploads"
    assert not uploads.exists() or not [p for p in uploads.iterdir()], list(uploads.iterdir())
    page.close()


def slow_eval_config(work: Path, name: str) -> Path:
    # Every 2 steps an evaluation that answers 32 samples one at a time: a run spends most of its time there.
    rows = ["product,audience,ad_text"] + [
        f"item {i},group {i % 7},buy item {i} today, group {i % 7}!" for i in range(80)
    ]
    (work / f"{name}.csv").write_text("\n".join(rows) + "\n")
    import yaml

    config = {
        "name": name, "model": {"name": str(work / "models" / "tiny")},
        "data": {"train": str(work / f"{name}.csv"), "prompt": "Ad for {product} ({audience}).",
                 "response": "{ad_text}", "eval_fraction": 0.5},
        "method": {"name": "lora", "r": 4},
        "train": {"max_steps": 5000, "batch_size": 2, "logging_steps": 1000, "eval_steps": 2, "save_steps": 1000},
        "eval": {"metrics": ["exact_match"], "generate_samples": 32, "batch_size": 1, "max_new_tokens": 64},
    }  # fmt: skip
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_cli_run(work: Path, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "tunesmith.cli", "train", str(config), "--output-dir", str(work / "runs")]
    log = (work / f"{config.stem}.log").open("wb")
    return subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.browser
@needs_chromium
def test_stop_during_an_evaluation_says_stopping_at_once_and_what_it_waits_for(shared: Shared) -> None:
    # Items 2 and 3: the step from the first step on, "evaluating" instead of an ETA, Stop answered at once.
    from playwright.sync_api import expect

    process = start_cli_run(shared.work, slow_eval_config(shared.work, "slow"))
    try:
        run_dir = wait_for(lambda: next((shared.work / "runs").glob("slow-*"), None), 120, "the run directory")
        wait_for(lambda: read_record(run_dir).get("status") == "running", 120, "training to start")
        page = shared.page()
        page.goto(f"{shared.server.url}/run?id={run_dir.name}")
        expect(page.locator("#step")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=60_000)  # nothing logged yet
        metrics = run_dir / "metrics.jsonl"
        assert not metrics.exists() or "loss" not in metrics.read_text().replace("eval_loss", "")
        expect(page.locator("#activity")).to_contain_text("evaluation at step", timeout=60_000)
        expect(page.locator("#eta")).to_have_count(0)
        page.click("#stop")
        expect(page.locator("#state")).to_have_text("stopping…", timeout=3_000)  # the click's own answer
        expect(page.locator("#activity")).to_contain_text("waiting for: evaluation at step")
        expect(page.locator("#abort")).to_be_visible()
        page.screenshot(path=str(shared.work.parent / "stopping.png"))
        expect(page.locator("#state")).to_have_text("interrupted", timeout=120_000)
        checkpoints = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
        expect(page.locator("#step")).to_have_text(str(checkpoints[-1]))  # the step the checkpoint holds
        page.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.browser
@needs_chromium
def test_the_runs_table_shows_loss_and_filters_on_the_status_shown(shared: Shared) -> None:
    # Items 3 and 5: train loss in the table; a run whose process died is "failed" under status=failed too.
    from playwright.sync_api import expect

    crashed = launch_over_http(shared.server, run_fields("crashed", 5000, 1000), shared.work / "runs")
    wait_for(lambda: read_record(crashed).get("status") == "running", 120, "training to start")
    os.kill(json.loads((crashed / "ui-train.json").read_text())["pid"], signal.SIGKILL)
    page = shared.page()
    page.goto(shared.server.url + "/runs")
    done_row = page.locator("table.runs tbody tr", has_text=shared.done.name)
    expect(done_row.locator("td").nth(7)).to_have_text(re.compile(r"^\d"))  # the loss column
    page.select_option("select[name=status]", "failed")
    row = page.locator("table.runs tbody tr", has_text=crashed.name)
    expect(row).to_have_count(1)
    expect(row.locator("td.status")).to_have_text("failed")
    expect(page.locator("table.runs tbody tr", has_text=shared.done.name)).to_have_count(0)
    page.select_option("select[name=task]", "seq2seq")
    expect(page.locator("#no-match")).to_be_visible()
    page.close()


@pytest.mark.browser
@needs_chromium
def test_compare_points_at_evaluate_which_takes_a_table(shared: Shared) -> None:
    # Item 7: Compare names the Evaluate button, not a command; Evaluate runs on the table given.
    from playwright.sync_api import expect

    other = launch_over_http(shared.server, run_fields("other", 2, 2), shared.work / "runs")
    wait_for(lambda: read_record(other).get("status") == "completed", 120, "the second run")
    page = shared.page()
    page.goto(f"{shared.server.url}/compare?run={shared.done.name}&run={other.name}")
    expect(page.locator("#without-samples")).to_contain_text("click Evaluate")
    assert "tunesmith eval" not in page.content()
    page.locator("#without-samples a").first.click()
    page.fill("#eval-data", "ads.csv")
    page.click("#eval")
    expect(page.locator("table.eval")).to_be_visible(timeout=120_000)
    run_dir = shared.work / "runs" / page.url.split("id=")[1]
    command = json.loads((run_dir / "ui-eval.json").read_text())["command"]
    assert command[-2:] == ["--data", str(shared.work / "ads.csv")]
    assert not page.missing and not page.errors, (page.missing, page.errors)
    page.close()


# ---- Issue 22 item 7: conversations in the preview, a chat with history and tool calls -------------------------

SUPPORT = Path(__file__).parents[2] / "examples" / "support-agent" / "conversations.jsonl"
ORDER_TOOL = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}


def short_chats(path: Path) -> Path:
    """Short support chats with one tool (the tiny model reads 512 positions; the example's prompts are longer)."""
    rows = []
    for number in range(8):
        call = {"function": {"name": "lookup_order", "arguments": json.dumps({"order_id": number})}}
        messages = [{"role": "user", "content": f"Where is order {number}?"},
                    {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
                    {"role": "tool", "content": '{"status": "shipped"}'},
                    {"role": "assistant", "content": f"Order {number} has shipped."}]  # fmt: skip
        rows.append(json.dumps({"messages": messages, "tools": [ORDER_TOOL]}) + "\n")
    path.write_text("".join(rows))
    return path


@pytest.mark.browser
@needs_chromium
def test_a_conversation_table_previews_as_conversations_and_chats_with_history(shared: Shared) -> None:
    from playwright.sync_api import expect

    from fixtures import build_llama

    shutil.copy(SUPPORT, shared.work / "support.jsonl")
    page = shared.page()
    page.goto(shared.server.url + "/new")
    page.fill("#model-name", "models/tiny")
    page.fill("#data-max_length", "2048")
    page.fill("#data-train", "support.jsonl")
    page.dispatch_event("#data-train", "change")
    # The table is read as conversations and names its columns in the form; the templates step aside.
    expect(page.locator("#table-conversations .conversation")).to_have_count(3)
    expect(page.locator("#data-messages")).to_have_value("messages")
    expect(page.locator("#data-tools")).to_have_value("tools")
    expect(page.locator("#field-data-prompt")).to_be_hidden()
    first = page.locator("#table-conversations .conversation").first
    expect(first.locator(".tool-call .call-name").first).to_have_text("lookup_order")
    expect(first.locator(".msg.role-tool").first).to_contain_text("result of lookup_order")
    # The preview: the doctor's examples turn by turn, loss turns marked, and its conversation statistics.
    expect(page.locator("#examples .example")).to_have_count(3, timeout=60_000)
    expect(page.locator("#examples .example").first.locator(".msg.role-assistant.loss").first).to_be_visible()
    expect(page.locator("#examples .example").first.locator("pre.rendered mark").first).to_be_visible()
    expect(page.locator("ul.stats")).to_contain_text("turns per conversation")
    expect(page.locator("ul.stats")).to_contain_text("tool calls:")
    page.screenshot(path=str(shared.work.parent / "conversation-preview.png"), full_page=True)

    # A conversation run launched from the form's fields, on a model that answers with visible gibberish.
    build_llama(shared.work / "models" / "chatty", seed=1, tie_embeddings=False)
    short_chats(shared.work / "chats.jsonl")
    fields = {"name": "chat", "task": "causal_lm", "model.name": "models/chatty", "data.train": "chats.jsonl",
              "data.messages": "messages", "data.tools": "tools", "method.name": "lora", "method.r": "4",
              "train.max_steps": "2", "train.batch_size": "4", "train.save_steps": "2"}  # fmt: skip
    run = launch_over_http(shared.server, fields, shared.work / "runs")
    wait_for(lambda: read_record(run).get("status") in ("completed", "failed"), 180, "the conversation run")
    assert read_record(run)["status"] == "completed", (run / "train.log").read_text()[-2000:]

    page.goto(f"{shared.server.url}/chat?id={run.name}")
    expect(page.locator("#tools")).to_contain_text("lookup_order")  # the run's tools, offered
    turns = page.locator("#history-turns .msg")
    for number, text in enumerate(("Where is order 7?", "And order 8?")):
        page.fill("#message", text)
        page.click("#send")
        expect(turns).to_have_count(2 * (number + 1), timeout=60_000)
        expect(page.locator("#message")).to_have_value("")
    roles = [turns.nth(i).get_attribute("data-role") for i in range(4)]
    assert roles == ["user", "assistant", "user", "assistant"]
    expect(turns.nth(0)).to_contain_text("Where is order 7?")
    expect(turns.nth(2)).to_contain_text("And order 8?")
    history = json.loads(page.locator("#history").input_value())
    assert [m["role"] for m in history] == roles
    # A turn that called a tool (as parse_tool_calls reads a reply) shows its name and arguments in the history.
    call = {"type": "function", "function": {"name": "lookup_order", "arguments": {"order_id": 7}}}
    called = [history[0], {"role": "assistant", "content": "", "tool_calls": [call]}]
    page.evaluate("(h) => { document.getElementById('history').value = h; }", json.dumps(called))
    page.fill("#message", "Thanks")
    page.click("#send")
    expect(turns.nth(2)).to_contain_text("Thanks", timeout=60_000)
    expect(turns).to_have_count(4)
    expect(turns.nth(1).locator(".call-name")).to_have_text("lookup_order")
    expect(turns.nth(1).locator(".call-arguments")).to_have_text('{"order_id": 7}')
    page.screenshot(path=str(shared.work.parent / "conversation-chat.png"), full_page=True)
    page.click("#clear")
    expect(page.locator("#history-empty")).to_be_visible()
    assert page.locator("#history").input_value() == "[]"
    assert not page.missing and not page.errors, (page.missing, page.errors)
    page.close()


@pytest.mark.browser
@needs_chromium
def test_the_rewards_section_shows_for_grpo_and_a_reward_s_options_once_picked(shared: Shared) -> None:
    from playwright.sync_api import expect

    page = shared.page()
    page.goto(shared.server.url + "/new")
    expect(page.locator("#field-rewards-length")).to_be_hidden()  # objective sft: no rewards section
    expect(page.locator("h2", has_text="5. Rewards")).to_be_hidden()
    page.select_option("#train-objective", "grpo")
    expect(page.locator("#field-rewards-length")).to_be_visible()
    expect(page.locator("#field-train-grpo-num_generations")).to_be_visible()
    expect(page.locator("#field-data-loss_on")).to_be_hidden()  # an SFT key
    expect(page.locator("#field-rewards-length-min_words")).to_be_hidden()  # until length is picked
    page.check("#rewards-length")
    expect(page.locator("#field-rewards-length-min_words")).to_be_visible()
    expect(page.locator("#field-rewards-regex-must")).to_be_hidden()
    page.select_option("#task", "classification")  # GRPO samples a causal LM's answers
    expect(page.locator("#field-train-objective")).to_be_hidden()
    expect(page.locator("#field-rewards-length")).to_be_hidden()
    assert not page.missing and not page.errors, (page.missing, page.errors)
    page.close()
