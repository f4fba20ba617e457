"""Seq2seq and classification end to end on tiny T5 / BERT: train, save, reload, eval, predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.train.runner import train

REVIEWS = [
    ("Loved it, works perfectly", "positive"),
    ("Great value and fast shipping", "positive"),
    ("Absolutely wonderful quality", "positive"),
    ("Terrible, broke after a day", "negative"),
    ("Awful smell and cheap plastic", "negative"),
    ("Not worth the money at all", "negative"),
]


def reviews_csv(path: Path, rows: list[tuple[str, str]] | None = None, repeat: int = 4) -> Path:
    pd.DataFrame((rows or REVIEWS) * repeat, columns=["review", "label"]).to_csv(path, index=False)
    return path


def classification_config(path: Path, model: Path, table: Path, **train_keys: object) -> Path:
    config = {
        "name": "clf",
        "task": "classification",
        "model": {"name": str(model)},
        "data": {"train": str(table), "text": "{review}", "label": "label", "max_length": 64, "eval_fraction": 0.25},
        "method": {"name": "full"},
        "train": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1} | train_keys,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def seq2seq_config(path: Path, model: Path, table: Path, method: dict[str, object]) -> Path:
    config = {
        "name": "s2s",
        "task": "seq2seq",
        "model": {"name": str(model)},
        "data": {"train": str(table), "source": "summarize: {ticket}", "target": "{summary}", "max_length": 96},
        "method": method,
        "train": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1},
        "eval": {"max_new_tokens": 6, "metrics": ["rouge"]},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def tickets_csv(path: Path) -> Path:
    rows = [(f"Customer {i} asked for a refund; the agent approved it.", f"refund {i} approved") for i in range(12)]
    pd.DataFrame(rows, columns=["ticket", "summary"]).to_csv(path, index=False)
    return path


def test_classification_trains_saves_labels_evaluates_and_predicts(tmp_path: Path, tiny_bert: Path) -> None:
    from tunesmith.evaluate.classify import predict_file
    from tunesmith.evaluate.runner import evaluate_run

    table = reviews_csv(tmp_path / "reviews.csv")
    result = train(load_config(classification_config(tmp_path / "c.yaml", tiny_bert, table)), tmp_path / "runs")
    assert {"eval_accuracy", "eval_macro_f1"} <= set(result.metrics)
    saved = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    record = json.loads((result.run_dir / "run.json").read_text())
    # Stratified: each class keeps its share in the eval split.
    assert record["data"]["stats"]["eval_rows"] == 6 and record["data"]["stats"]["label_counts"] == {
        "positive": 12,
        "negative": 12,
    }

    report = evaluate_run(result.run_dir)
    assert report.base is not None and set(report.tuned) == {"accuracy", "macro_f1"}
    assert report.decoding["baseline"].startswith("majority class")
    assert (result.run_dir / "confusion_matrix.png").stat().st_size > 0
    document = json.loads((result.run_dir / "eval.json").read_text())
    assert set(document["per_class"]) >= {"negative", "positive"}

    rows = predict_file(result.run_dir, table, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    assert rows == len(predictions) == 24
    assert {p["predicted_label"] for p in predictions} <= {"negative", "positive"}
    assert all(0.5 <= float(p["probability"]) <= 1.0 for p in predictions)


def test_lora_classification_keeps_the_head_trainable_and_reloads(tmp_path: Path, tiny_bert: Path) -> None:
    from tunesmith.evaluate.classify import predict_texts
    from tunesmith.models.run_model import load_run_model

    table = reviews_csv(tmp_path / "reviews.csv")
    cfg = load_config(classification_config(tmp_path / "c.yaml", tiny_bert, table), ["method.name=lora", "method.r=4"])
    result = train(cfg, tmp_path / "runs")
    run = load_run_model(result.run_dir)
    assert run.adapter
    first = predict_texts(run, ["Loved it"])
    again = predict_texts(load_run_model(result.run_dir), ["Loved it"])
    assert first == again


def test_class_weights_change_the_loss_on_imbalanced_labels(tmp_path: Path, tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from tunesmith.data.prepare import prepare_data, read_tables
    from tunesmith.train.classification import class_weights, classification_extras

    assert class_weights([1, 1, 1, 0], 2) == [2.0, pytest.approx(2 / 3)]
    table = reviews_csv(tmp_path / "imbalanced.csv", [*REVIEWS[:3] * 5, REVIEWS[3]], repeat=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    losses = {}
    for weights in ("none", "auto"):
        cfg = load_config(classification_config(tmp_path / f"{weights}.yaml", tiny_bert, table, class_weights=weights))
        data = prepare_data(cfg.data, read_tables(cfg.data, cfg.task), tokenizer, cfg.task)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor([0.0, 2.0]))  # leaning to the frequent class, as training would
        batch = DataCollatorWithPadding(tokenizer)([{k: r[k] for k in ("input_ids", "labels")} for r in data.train])
        with torch.no_grad():
            outputs = model(**batch)
        loss_fn = classification_extras(cfg, data).get("compute_loss_func")
        losses[weights] = float(loss_fn(outputs, batch["labels"]) if loss_fn else outputs.loss)
    # The rare class is mispredicted; weighting it up raises the loss.
    assert losses["auto"] > losses["none"] * 1.5


def test_one_class_only_is_an_error(tmp_path: Path, tiny_bert: Path) -> None:
    table = reviews_csv(tmp_path / "one.csv", REVIEWS[:3])
    with pytest.raises(TunesmithError, match=r"data.label: column 'label' of .*one.csv has one class only"):
        train(load_config(classification_config(tmp_path / "c.yaml", tiny_bert, table)), tmp_path / "runs")


def test_empty_labels_are_dropped_and_unseen_eval_labels_reported(tmp_path: Path, tiny_bert: Path) -> None:
    table = reviews_csv(tmp_path / "r.csv", [*REVIEWS, ("No label here", "")])
    evaluation = reviews_csv(tmp_path / "e.csv", [*REVIEWS[:2], ("Meh", "neutral")], repeat=1)
    config = classification_config(tmp_path / "c.yaml", tiny_bert, table)
    result = train(load_config(config, [f"data.eval={evaluation}"]), tmp_path / "runs")
    stats = json.loads((result.run_dir / "run.json").read_text())["data"]["stats"]
    assert stats["dropped_empty"] == 4 and stats["unseen_labels"] == 1 and stats["eval_rows"] == 2

    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(result.run_dir)
    assert report.extra is not None and report.extra["unseen"] == 1
    assert report.tuned["accuracy"] <= 2 / 3


@pytest.mark.parametrize("method", [{"name": "freeze", "encoder": True, "embeddings": False}, {"name": "lora", "r": 4}])
def test_seq2seq_trains_and_evaluates_by_generation(tmp_path: Path, tiny_t5: Path, method: dict[str, object]) -> None:
    from tunesmith.evaluate.runner import evaluate_run

    config = seq2seq_config(tmp_path / "c.yaml", tiny_t5, tickets_csv(tmp_path / "t.csv"), method)
    result = train(load_config(config, ["data.eval_fraction=0.25"]), tmp_path / "runs")
    assert "eval_rouge1" in result.metrics  # eval.metrics are computed during training too
    report = evaluate_run(result.run_dir, limit=2)
    assert report.base is not None and {"rouge1", "rougeL", "loss"} <= set(report.tuned)
    assert len(report.tuned_outputs) == 2


def test_freeze_encoder_leaves_encoder_weights_bit_identical(tmp_path: Path, tiny_t5: Path) -> None:
    from safetensors.torch import load_file

    method = {"name": "freeze", "encoder": True, "embeddings": False}
    config = seq2seq_config(tmp_path / "c.yaml", tiny_t5, tickets_csv(tmp_path / "t.csv"), method)
    result = train(load_config(config, ["data.eval_fraction=0", "eval.metrics=null"]), tmp_path / "runs")
    before = load_file(tiny_t5 / "model.safetensors")
    after = load_file(result.run_dir / "model" / "model.safetensors")
    encoder_keys = [k for k in before if k.startswith("encoder.")]
    decoder_keys = [k for k in before if k.startswith("decoder.") and k in after]
    assert encoder_keys and all(torch.equal(before[k], after[k]) for k in encoder_keys)
    assert any(not torch.equal(before[k], after[k]) for k in decoder_keys)


def test_select_by_a_task_metric_keeps_the_best_checkpoint(tmp_path: Path, tiny_llama: Path, ads_csv: Path) -> None:
    from fixtures import write_config

    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, eval={"max_new_tokens": 4, "metrics": ["bleu"]})
    cfg = load_config(config, ["train.select_by=bleu", "train.eval_steps=2", "eval.generate_samples=3"])
    result = train(cfg, tmp_path / "runs")
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    bleu = {r["step"]: r["eval_bleu"] for r in logged if "eval_bleu" in r}
    assert list(bleu)[:2] == [2, 4]
    # The run keeps the best checkpoint; its scores are the ones logged when it was evaluated, not a new pass.
    best_step = max(bleu, key=lambda step: (bleu[step], -step))  # the first of equal scores stays best
    assert result.metrics["eval_bleu"] == pytest.approx(bleu[best_step])
    eval_steps = [r["step"] for r in logged if "eval_loss" in r]
    assert eval_steps == sorted(set(eval_steps)), "an evaluation was repeated"


def test_the_last_evaluation_is_not_repeated_at_the_end(tmp_path: Path, tiny_llama: Path, ads_csv: Path) -> None:
    # The epoch-end evaluation has scored the weights the run keeps; the run reuses it instead of a second pass.
    from fixtures import write_config

    result = train(load_config(write_config(tmp_path / "c.yaml", tiny_llama, ads_csv)), tmp_path / "runs")
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in logged if "eval_loss" in r]
    assert [r["step"] for r in evaluations] == [4]
    assert result.metrics["eval_loss"] == pytest.approx(evaluations[0]["eval_loss"])
    assert "eval_perplexity" in result.metrics


def test_select_by_a_metric_training_does_not_compute(tmp_path: Path, tiny_llama: Path, ads_csv: Path) -> None:
    from fixtures import write_config

    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv)
    with pytest.raises(TunesmithError, match="train.select_by: 'bleu' is not computed during training"):
        train(load_config(config, ["train.select_by=bleu"]), tmp_path / "runs")


def test_seq2seq_generates_during_training_with_a_tokenizer_that_returns_token_type_ids(
    tmp_path: Path, tiny_t5: Path
) -> None:
    # Bug: generation passed the tokenizer's token_type_ids (BERT-style tokenizers add them) to T5's generate,
    # which refuses them; the run failed after training had finished.
    import shutil

    from transformers import AutoTokenizer

    model_dir = Path(shutil.copytree(tiny_t5, tmp_path / "t5-with-type-ids"))
    settings = json.loads((model_dir / "tokenizer_config.json").read_text())
    settings["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    (model_dir / "tokenizer_config.json").write_text(json.dumps(settings))
    assert "token_type_ids" in AutoTokenizer.from_pretrained(model_dir)("a ticket")
    config = seq2seq_config(tmp_path / "c.yaml", model_dir, tickets_csv(tmp_path / "t.csv"), {"name": "full"})
    result = train(load_config(config, ["data.eval_fraction=0.25", "train.max_steps=2"]), tmp_path / "runs")
    assert "eval_rougeL" in result.metrics


def test_a_failing_in_training_evaluation_keeps_a_checkpoint_and_resumes(
    tmp_path: Path, tiny_llama: Path, ads_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunesmith.evaluate.generation as generation
    from fixtures import write_config

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise RuntimeError("the sampler ran out of memory")

    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv, eval={"max_new_tokens": 4, "metrics": ["bleu"]})
    cfg = load_config(config, ["train.eval_steps=2", "train.save_steps=3"])
    monkeypatch.setattr(generation, "generate", broken)
    with pytest.raises(TunesmithError, match=r"eval.metrics: the evaluation at step 2 failed: RuntimeError") as err:
        train(cfg, tmp_path / "runs")
    assert "--resume" in str(err.value)
    (run_dir,) = [path for path in (tmp_path / "runs").iterdir() if path.is_dir()]  # not the registry's index.db
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["hint"] == f"resume with --resume {run_dir}"
    assert (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()

    monkeypatch.undo()
    result = train(cfg, tmp_path / "runs", resume=run_dir)
    assert result.run_dir == run_dir and "eval_bleu" in result.metrics
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_bf16_on_a_cpu_rounds_packed_shapes_and_counts_only_real_tokens(
    tmp_path: Path, tiny_llama: Path, ads_csv: Path
) -> None:
    # bf16 on a CPU pads each packed batch to a multiple of 64 tokens (few oneDNN kernel shapes); the padding
    # must neither reach the model as an input (it would refuse the unknown key) nor count as tokens seen.
    from fixtures import write_config

    config = write_config(tmp_path / "c.yaml", tiny_llama, ads_csv)
    seen = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(config, [f"train.precision={precision}", "data.eval_fraction=0"])
        run = json.loads((train(cfg, tmp_path / precision).run_dir / "run.json").read_text())
        assert run["precision"]["value"] == precision and run["packing"]
        seen[precision] = run["train"]["tokens_seen"]
    assert seen["bf16"] == seen["fp32"] > 0
