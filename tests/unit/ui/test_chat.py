"""Chat on a classification run: the tuned and the base model each name a label (over HTTP)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunesmith.config import validate_config
from tunesmith.ui.app import UiSettings, create_app

pytestmark = pytest.mark.slow


def test_a_classification_run_answers_with_labels(tmp_path: Path, tiny_bert: Path) -> None:
    from tunesmith.train.runner import train

    table = tmp_path / "reviews.csv"
    with table.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["review", "label"])
        writer.writerows([("Loved it, works great", "positive"), ("Broke in a day, awful", "negative")] * 8)
    config = validate_config(
        {
            "task": "classification",
            "model": {"name": str(tiny_bert)},
            "data": {"train": str(table), "text": "{review}", "label": "label", "max_length": 32},
            "method": {"name": "lora", "r": 2},
            "train": {"max_steps": 2, "batch_size": 4},
        }
    )
    run = train(config, tmp_path / "runs").run_dir
    ui = TestClient(create_app(UiSettings(tmp_path, tmp_path / "runs")), base_url="http://127.0.0.1:7860")
    assert run.name in ui.get("/chat").text  # offered: it completed
    reply = ui.post("/chat/send", data={"id": run.name, "message": "Works great <b>really</b>"})
    assert reply.status_code == 200, reply.text
    assert "Works great &lt;b&gt;really&lt;/b&gt;" in reply.text
    tuned = reply.text.split('class="answer tuned"')[1]
    base = reply.text.split('class="answer base"')[1].split('class="answer tuned"')[0]
    for answer in (tuned, base):
        label = answer.split('<div class="text">')[1].split(" (p=")[0]
        assert label in ("positive", "negative")
    assert "untrained head" in base
    empty = ui.post("/chat/send", data={"id": run.name, "message": "  "})
    assert empty.status_code == 400 and empty.json()["error"] == "message: empty; type something to send"
