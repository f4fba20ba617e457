"""Export from the run page: `tunesmith export` runs as its own process; the page lists what it wrote."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.ui.app import UiSettings, create_app

pytestmark = pytest.mark.slow


def test_export_merged_from_the_run_page(tmp_path: Path, tiny_llama: Path) -> None:
    from tunesmith.train.runner import train

    table = write_ads_csv(tmp_path / "ads.csv")
    config = load_config(write_config(tmp_path / "c.yaml", tiny_llama, table, train={"max_steps": 2}))
    run = train(config, tmp_path / "runs").run_dir
    ui = TestClient(create_app(UiSettings(tmp_path, tmp_path / "runs")), base_url="http://127.0.0.1:7860")
    assert ui.post("/run/export", data={"id": run.name, "to": "onnx"}).json()["error"].startswith("to: 'onnx'")
    started = ui.post("/run/export", data={"id": run.name, "to": "merged"})
    assert started.status_code == 200 and "exporting…" in started.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = ui.get("/run/status", params={"id": run.name})
        if "exporting…" not in page.text:
            break
        time.sleep(0.5)
    assert page.status_code == 286  # nothing left to poll for
    assert "exported <code>export/merged</code>" in page.text and "model.safetensors" in page.text, page.text
    assert (run / "export" / "merged" / "model.safetensors").is_file()
