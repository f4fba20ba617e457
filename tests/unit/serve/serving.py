"""Runs to serve and a real server on a free 127.0.0.1 port, for the serve tests (and the embedded one)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from fixtures import ADS, build_llama, train_into, write_config

API_KEY = "test-key"


def _table(path: Path, shout: bool) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product", "audience", "ad_text"])
        for _ in range(3):
            writer.writerows((p, a, t.upper() if shout else t) for p, a, t in ADS)
    return path


def train_lora(root: Path, model: Path, name: str, shout: bool, **sections: dict[str, object]) -> Path:
    """A LoRA run trained a few steps with a high learning rate, so its answers differ from the base's."""
    root.mkdir(parents=True, exist_ok=True)
    table = _table(root / f"{name}.csv", shout)
    config = write_config(
        root / f"{name}.yaml",
        model,
        table,
        **{
            "name": name,  # type: ignore[dict-item]
            "train": {"max_steps": 4, "batch_size": 4, "learning_rate": 5e-2, "save_steps": 100},
            "eval": {"max_new_tokens": 8, "metrics": []},
            **sections,
        },
    )
    return train_into(root, config)


def train_classifier(root: Path, model: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = ["review,label"] + [f"great product number {i},positive" for i in range(8)]
    rows += [f"terrible delivery number {i},negative" for i in range(8)]
    (root / "reviews.csv").write_text("\n".join(rows) + "\n")
    config = {
        "name": "clf",
        "task": "classification",
        "model": {"name": str(model)},
        "data": {"train": str(root / "reviews.csv"), "text": "{review}", "label": "label", "eval_fraction": 0.25},
        "method": {"name": "full"},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1},
    }
    (root / "clf.yaml").write_text(yaml.safe_dump(config))
    return train_into(root, root / "clf.yaml")


def build_noisy_llama(path: Path) -> Path:
    """The tiny Llama with larger random weights: it answers varied text (the default one echoes newlines),
    partial UTF-8 bytes included, so equality checks on answers mean something."""
    import torch
    from transformers import AutoModelForCausalLM

    build_llama(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A server answering in a background thread."""

    url: str
    app: object
    runs: dict[str, Path]


@contextlib.contextmanager
def running_server(run_dirs: list[Path], api_key: str | None = None) -> Iterator[Running]:
    """Load the runs, start uvicorn on a free 127.0.0.1 port, stop it on exit (bounded waits)."""
    import uvicorn

    from tunesmith.serve.app import create_app
    from tunesmith.serve.pool import load_pool

    app = create_app(load_pool(run_dirs), api_key)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", app, {p.name: p for p in run_dirs})
    finally:
        server.should_exit = True
        thread.join(timeout=30)


EXAMPLE = Path(__file__).parents[3] / "examples" / "marketing-copy" / "config.yaml"


def train_embedded_pair(root: Path) -> tuple[Path, Path]:
    """Two 2-step LoRA runs of the embedded SmolLM2 on different data: the marketing-copy example, and the
    small ads table in capitals with another system prompt."""
    from tunesmith.config import load_config
    from tunesmith.train.runner import train

    quick = ["train.max_steps=2", "train.batch_size=1", "train.learning_rate=2e-3", "data.max_length=128"]
    quick += ["method.r=4", "data.eval_fraction=0.01"]  # one eval row: the end-of-training eval is not the point
    copy = load_config(EXAMPLE, [*quick, "name=copy"])
    table = _table(root / "loud.csv", shout=True)
    loud_yaml = write_config(root / "loud.yaml", Path("smollm2-135m-instruct"), table, name="loud")  # type: ignore[arg-type]
    loud = load_config(loud_yaml, [*quick, "data.system=Answer in capitals.", "model.name=smollm2-135m-instruct"])
    return tuple(train(cfg, output_dir=root / "runs").run_dir for cfg in (copy, loud))  # type: ignore[return-value]
