"""train -> run directory -> generate; kill and resume; every bad input is one line and a non-zero exit."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures import write_config


def only_run(output_dir: Path) -> Path:
    (run,) = [p for p in output_dir.iterdir() if p.is_dir()]
    return run


def test_train_writes_a_complete_run_and_generate_uses_it(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv)
    done = tunesmith("train", str(config), "--output-dir", "runs", "--set", "train.seed=3")
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    assert "completed:" in done.stdout and "tokens/s" in done.stdout
    assert "18 train / 6 eval rows" in done.stderr

    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["seed"] == 3 and record["train"]["steps"] == 4
    assert set(record["versions"]) >= {"tunesmith", "python", "torch", "transformers"}
    assert record["data"]["sha256"] == {str(ads_csv): hashlib.sha256(ads_csv.read_bytes()).hexdigest()}
    assert "eval_loss" in record["metrics"]
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3, 4]
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert (run / "model" / "adapter_model.safetensors").is_file()
    assert not (run / "checkpoints").exists()
    assert (run / "model" / "README.md").read_text().startswith("---")  # the model card
    assert (tmp_path / "runs" / "index.db").is_file()  # the run registry
    phases = record["timings"]
    assert set(phases) == {"startup", "data", "model", "train", "evaluation", "save", "registry"}
    assert all(seconds >= 0 for seconds in phases.values()) and phases["startup"] > 0 and phases["train"] > 0
    assert "time: startup" in done.stdout

    answered = tunesmith("generate", str(run), "--prompt", "Write an ad for tea aimed at students.", "--compare-base")
    assert answered.returncode == 0, answered.stderr
    assert "base model" in answered.stdout and "tuned model" in answered.stdout

    out = tmp_path / "answers.jsonl"
    rows = tunesmith("generate", str(run), "--input", str(ads_csv), "--output", str(out), "--max-new-tokens", "4")
    assert rows.returncode == 0, rows.stderr
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(answers) == 24 and answers[0]["input"] == "Write an ad for coffee aimed at students."


def test_adapter_loads_with_plain_peft(tmp_path: Path, tiny_llama: Path, ads_csv: Path) -> None:
    import torch
    from peft import AutoPeftModelForCausalLM

    from tunesmith.config import load_config
    from tunesmith.train.runner import train

    result = train(load_config(write_config(tmp_path / "c.yaml", tiny_llama, ads_csv)), tmp_path / "runs")
    model = AutoPeftModelForCausalLM.from_pretrained(result.run_dir / "model")
    assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape[-1] == model.config.vocab_size


def test_killed_run_never_looks_completed_and_resumes(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, train={"max_steps": 5000, "save_steps": 3})
    process = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "train", str(config), "--output-dir", "runs"],
        cwd=tmp_path,
        env=tunesmith.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(
        (tmp_path / "runs").glob("*/checkpoints/checkpoint-*/trainer_state.json")
    ):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert tunesmith("generate", str(run), "--prompt", "x").returncode != 0

    # The kill may land while a checkpoint is being written; resume takes the newest complete one.
    step = max(int(p.parent.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    resumed = tunesmith("train", str(config), "--resume", str(run), "--set", f"train.max_steps={step + 3}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"from step {step}" in resumed.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["train"]["steps"] == step + 3
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(logged) and len([s for s in logged if s == step + 1]) == 1


def test_sigterm_stops_gracefully_with_a_checkpoint(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, train={"max_steps": 5000, "save_steps": 1000})
    process = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "train", str(config), "--output-dir", "runs"],
        cwd=tmp_path,
        env=tunesmith.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/metrics.jsonl")):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    run = only_run(tmp_path / "runs")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and "--resume" in record["hint"]
    assert list((run / "checkpoints").glob("checkpoint-*")), "the graceful stop saves a checkpoint"


def bad(tmp_path: Path, tiny_llama: Path, ads_csv: Path, case: str) -> list[str]:
    config = tmp_path / "c.yaml"
    if case == "missing file":
        write_config(config, tiny_llama, tmp_path / "nope.csv")
    elif case == "empty file":
        (tmp_path / "empty.csv").write_text("")
        write_config(config, tiny_llama, tmp_path / "empty.csv")
    elif case == "missing column":
        write_config(config, tiny_llama, ads_csv, data={"prompt": "Ad for {prodcut}"})
    elif case == "non-UTF-8":
        (tmp_path / "latin.csv").write_bytes("product,audience,ad_text\ncaf\xe9,x,y\n".encode("latin-1"))
        write_config(config, tiny_llama, tmp_path / "latin.csv")
    elif case == "every row too long":
        write_config(config, tiny_llama, ads_csv, data={"max_length": 8})
    elif case == "unknown key":
        write_config(config, tiny_llama, ads_csv, train={"epoch": 2})
    elif case == "wrong type":
        write_config(config, tiny_llama, ads_csv, train={"batch_size": "eight"})
    elif case == "unknown method":
        write_config(config, tiny_llama, ads_csv, method={"name": "magic"})
    elif case == "model path":
        write_config(config, tmp_path / "no-model-here", ads_csv)
    return ["train", str(config), "--output-dir", "runs"]


BAD_INPUTS = {
    "missing file": "data.train: .*nope.csv: file not found",
    "empty file": "data.train: .*empty.csv: file is empty",
    "missing column": "data.prompt: column 'prodcut' is not in .*ads.csv .columns: product, audience, ad_text",
    "non-UTF-8": "data.train: .*latin.csv: not UTF-8 text",
    "every row too long": "data.max_length: every row of data.train is longer than 8 tokens",
    "unknown key": "c.yaml: unknown key train.epoch; did you mean 'epochs'",
    "wrong type": "c.yaml: train.batch_size: Input should be a valid integer",
    "unknown method": "c.yaml: method.name: unknown method 'magic'",
    "model path": "model.name .*no-model-here.: no such file or directory",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path, case: str):  # type: ignore[no-untyped-def]
    done = tunesmith(*bad(tmp_path, tiny_llama, ads_csv, case))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert __import__("re").search(BAD_INPUTS[case], lines[0]), lines[0]
    assert not (tmp_path / "runs").exists(), "nothing half-written"


def test_debug_shows_the_traceback(tunesmith, tmp_path: Path, tiny_llama: Path, ads_csv: Path):  # type: ignore[no-untyped-def]
    done = tunesmith(*bad(tmp_path, tiny_llama, ads_csv, "missing file"), "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "file not found" in done.stderr
