"""--to merged: the adapter folded into full weights, loadable by plain transformers, answering the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from export_checks import PROMPTS

from tunesmith.errors import TunesmithError
from tunesmith.export import export_run


def test_merged_answers_like_the_adapter(tiny_run: Path, tiny_reference: tuple[Any, Any], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_model, tokenizer = tiny_reference
    want = _greedy(adapter_model, tokenizer, tiny_run)

    result = export_run(tiny_run, "merged", output=tmp_path / "merged")
    names = {path.name for path in result.files}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "export.json"} <= names
    assert "adapter_config.json" not in names
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "library_name: transformers" in card and "merged" in card

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert _greedy(merged, AutoTokenizer.from_pretrained(tmp_path / "merged"), tiny_run) == want

    # The logits agree to float rounding, while the adapter moved them far more: the merge kept it.
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        gap = (merged(ids).logits - adapter_model(ids).logits).abs().max().item()
        with adapter_model.disable_adapter():
            moved = (adapter_model(ids).logits - merged(ids).logits).abs().max().item()
    print(f"merged vs adapter {gap:.2e}, adapter vs base {moved:.2e}")
    assert gap < 1e-5 and moved > 1000 * gap


def _greedy(model: Any, tokenizer: Any, run_dir: Path) -> list[list[int]]:
    """Greedy continuations (token ids, 12 each) of the prompts rendered as the run renders them."""
    import torch

    from tunesmith.data.tokenize import prompt_text
    from tunesmith.rundir import read_run

    config, _ = read_run(run_dir)
    answers = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt_text(tokenizer, config.data, prompt), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        answers.append(out[0, ids["input_ids"].shape[1] :].tolist())
    return answers


def test_existing_folders_are_replaced_only_when_an_export_wrote_them(tiny_run: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(TunesmithError, match="not empty and was not written by tunesmith export"):
        export_run(tiny_run, "merged", output=foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    first = export_run(tiny_run, "merged", output=tmp_path / "out")
    (first.output / "stale.txt").write_text("from an older export")
    again = export_run(tiny_run, "merged", output=tmp_path / "out")
    assert again.output == first.output and not (again.output / "stale.txt").exists()
    assert json.loads((again.output / "export.json").read_text())["kind"] == "merged"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_default_output_is_inside_the_run(tiny_run: Path) -> None:
    with pytest.raises(TunesmithError, match="--quant applies to --to gguf"):
        export_run(tiny_run, "merged", quant="q8_0")
    with pytest.raises(TunesmithError, match="--to 'onnx': choose one of merged, gguf, ollama"):
        export_run(tiny_run, "onnx")
    from tunesmith.export.runner import default_output

    assert default_output(tiny_run, "gguf", "q4_0") == tiny_run / "export" / "gguf-q4_0"


@pytest.mark.parametrize("task", ["seq2seq", "classification"])
def test_merged_works_for_seq2seq_and_classification_and_gguf_refuses(
    task: str, tmp_path: Path, tiny_t5: Path, tiny_bert: Path
) -> None:
    import torch
    import transformers

    from tunesmith.config import load_config
    from tunesmith.models.run_model import load_run_model
    from tunesmith.train.runner import train

    config = _task_config(task, tmp_path, tiny_t5 if task == "seq2seq" else tiny_bert)
    run_dir = train(load_config(config, []), output_dir=tmp_path / "runs").run_dir
    with pytest.raises(TunesmithError, match=f"--to gguf: GGUF is for causal language models; .* is a {task} run"):
        export_run(run_dir, "gguf")

    loaded = load_run_model(run_dir)
    batch = loaded.tokenizer(["refund approved for customer 3"], return_tensors="pt")
    inputs = dict(batch) | ({"decoder_input_ids": batch["input_ids"][:, :3]} if task == "seq2seq" else {})
    with torch.inference_mode():
        want = loaded.model(**inputs).logits
    result = export_run(run_dir, "merged")
    auto = transformers.AutoModelForSeq2SeqLM if task == "seq2seq" else transformers.AutoModelForSequenceClassification
    merged = auto.from_pretrained(result.output, dtype=torch.float32).eval()
    with torch.inference_mode():
        got = merged(**inputs).logits
    assert torch.allclose(got, want, atol=1e-5)
    if task == "classification":
        assert merged.config.id2label == {0: "negative", 1: "positive"}


def _task_config(task: str, tmp_path: Path, model: Path) -> Path:
    import pandas as pd

    lora = {"name": "lora", "r": 4, "alpha": 8}
    train = {"max_steps": 2, "batch_size": 4, "learning_rate": 5e-2, "logging_steps": 1}
    if task == "seq2seq":
        rows = [(f"Customer {i} asked for a refund; it was approved.", f"refund {i} approved") for i in range(8)]
        pd.DataFrame(rows, columns=["ticket", "summary"]).to_csv(tmp_path / "t.csv", index=False)
        data = {"train": str(tmp_path / "t.csv"), "source": "{ticket}", "target": "{summary}", "max_length": 64}
    else:
        rows = [("Loved it", "positive"), ("Great value", "positive"), ("Broke at once", "negative")] * 4
        rows += [("Awful smell", "negative")] * 2
        pd.DataFrame(rows, columns=["review", "label"]).to_csv(tmp_path / "t.csv", index=False)
        data = {"train": str(tmp_path / "t.csv"), "text": "{review}", "label": "label", "max_length": 32}
    config = {"name": task, "task": task, "model": {"name": str(model)}, "data": data, "method": lora, "train": train}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "c.yaml"
