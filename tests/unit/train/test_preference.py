"""Preference objectives on the tiny Llama: training, the reference model, SFT -> DPO, resume, eval, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import TrainerCallback

from fixtures import write_ads_csv, write_config
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.train.runner import train

PRODUCTS = ["coffee", "shoes", "laptop", "tea", "bike", "lamp", "desk", "watch"]


def write_pairs(path: Path, rows: int = 16) -> Path:
    """A toy set where chosen and rejected differ clearly: an ad, and unrelated characters."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product", "good", "bad", "flag"])
        for i in range(rows):
            product = PRODUCTS[i % len(PRODUCTS)]
            writer.writerow(
                [product, f"Hey students! Our {product} is great. Grab one today!", "0123456789 ,.;:", "true"]
            )
    return path


def pref_config(tmp: Path, model: Any, table: Path, objective: str = "dpo", **sections: dict[str, Any]) -> Any:
    data = {"prompt": "Write an ad for {product}.", "chosen": "{good}", "rejected": "{bad}", "response": None}
    train_section = {"objective": objective, "max_steps": 2, "batch_size": 4, "learning_rate": 1e-2}
    method = sections.pop("method", None)
    path = write_config(
        tmp / f"{objective}.yaml",
        Path(str(model)),
        table,
        data={**data, **sections.pop("data", {})},
        train={**train_section, **sections.pop("train", {})},
        **sections,
    )
    if method is not None:  # write_config merges sections; a method is replaced whole
        raw = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(raw | {"method": method}))
    return load_config(path)


def metric_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.csv")


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path, pairs: Path) -> Path:
    tmp = tmp_path_factory.mktemp("dpo")
    cfg = pref_config(tmp, tiny_llama, pairs, train={"max_steps": 8, "learning_rate": 2e-2})
    return train(cfg, output_dir=tmp / "runs").run_dir


def test_dpo_with_lora_raises_reward_accuracy_on_clear_pairs(dpo_run: Path) -> None:
    logged = [line for line in metric_lines(dpo_run) if "reward_accuracy" in line and "loss" in line]
    assert logged[0]["reward_accuracy"] == 0.0  # step 1: the model is its own reference, every reward is 0
    assert logged[-1]["reward_accuracy"] >= 0.75 and logged[-1]["reward_margin"] > logged[0]["reward_margin"]
    assert {"logp_chosen", "logp_rejected", "reward_chosen", "reward_rejected"} <= set(logged[-1])
    assert not [key for line in metric_lines(dpo_run) for key in line if "/" in key]  # TRL's names mapped
    record = json.loads((dpo_run / "run.json").read_text())
    assert record["status"] == "completed" and record["metrics"]["eval_reward_accuracy"] >= 0.5
    assert (dpo_run / "model" / "adapter_config.json").is_file()
    assert not (dpo_run / "model" / "ref").exists()  # one adapter, no reference copy


def test_eval_reports_preference_accuracy_for_base_and_tuned(dpo_run: Path) -> None:
    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(dpo_run)
    assert report.base is not None
    for scores in (report.base, report.tuned):
        assert {"preference_accuracy", "preference_accuracy_sum", "preference_margin", "bleu"} <= set(scores)
    assert report.tuned["preference_margin"] > report.base["preference_margin"]
    assert report.tuned["preference_accuracy"] == 1.0
    saved = json.loads((dpo_run / "eval.json").read_text())
    assert saved["metrics"]["base"]["preference_accuracy"] == report.base["preference_accuracy"]
    assert report.examples[0].references[0].startswith("Hey students!")  # chosen is the generation reference


@pytest.mark.parametrize("objective", ["orpo", "simpo", "kto"])
def test_each_objective_trains_with_lora(tmp_path: Path, tiny_llama: Path, pairs: Path, objective: str) -> None:
    cfg = pref_config(tmp_path, tiny_llama, pairs, objective, data={"eval_fraction": 0})  # no eval: faster
    result = train(cfg, output_dir=tmp_path / "runs")
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "completed"
    logged = [line for line in metric_lines(result.run_dir) if "loss" in line]
    assert len(logged) == 2 and all(any(key.startswith("reward_") for key in line) for line in logged)


@pytest.mark.parametrize("method", ["ia3", "prompt_tuning"])
def test_dpo_trains_other_adapter_methods(tmp_path: Path, tiny_llama: Path, pairs: Path, method: str) -> None:
    cfg = pref_config(tmp_path, tiny_llama, pairs, method={"name": method}, data={"eval_fraction": 0})
    result = train(cfg, output_dir=tmp_path / "runs")
    assert (result.run_dir / "model" / "adapter_config.json").is_file()
    assert json.loads((result.run_dir / "model" / "adapter_config.json").read_text())["peft_type"] == method.upper()


def test_kto_trains_from_single_answers_with_a_boolean_column(tmp_path: Path, tiny_llama: Path) -> None:
    table = write_ads_csv(tmp_path / "ads.csv")
    rows = list(csv.reader(table.open()))
    with (tmp_path / "kto.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*rows[0], "good"])
        writer.writerows([*row, "yes" if i % 2 else "no"] for i, row in enumerate(rows[1:]))
    cfg = pref_config(
        tmp_path,
        tiny_llama,
        tmp_path / "kto.csv",
        "kto",
        data={
            "prompt": "Write an ad for {product} aimed at {audience}.",
            "chosen": None,
            "rejected": None,
            "response": "{ad_text}",
            "desirable": "good",
        },
    )
    result = train(cfg, output_dir=tmp_path / "runs")
    assert "eval_loss" in result.metrics


def test_dpo_full_fine_tuning_precomputes_the_reference(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    cfg = pref_config(tmp_path, tiny_llama, pairs, method={"name": "full"})
    result = train(cfg, output_dir=tmp_path / "runs")
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    assert result.metrics["eval_reward_accuracy"] >= 0.5


def test_lora_reference_is_the_base_with_the_adapter_off(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    from tunesmith.train.preference import build_preference_trainer
    from tunesmith.train.runner import _load, _read_tables, _training_values

    cfg = pref_config(tmp_path, tiny_llama, pairs)
    session = _load(cfg, _read_tables(cfg))
    trainer = build_preference_trainer(cfg, session, _training_values(cfg, session, tmp_path), [])
    model = trainer.model
    assert trainer.ref_model is None and list(model.peft_config) == ["default"]
    base_weights = {id(p) for n, p in model.named_parameters() if "lora_" not in n}
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert len(base_weights) == len(list(plain.parameters()))  # the base once, nothing else but the adapter
    with model.disable_adapter():  # what TRL scores the reference with
        assert model.get_base_model().model.layers[0].self_attn.q_proj.disable_adapters


def test_dpo_starts_from_a_completed_sft_run(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    import torch

    from tunesmith.models.resolve import resolve_model
    from tunesmith.models.run_model import load_weights

    sft_cfg = load_config(
        write_config(tmp_path / "sft.yaml", tiny_llama, write_ads_csv(tmp_path / "ads.csv"), train={"max_steps": 2})
    )
    sft_run = train(sft_cfg, output_dir=tmp_path / "runs").run_dir
    resolved = resolve_model(str(sft_run))
    assert resolved.source == "run"
    start = load_weights(resolved, sft_cfg.model, "causal_lm")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    name = "model.layers.0.self_attn.q_proj.weight"
    start_weights, base_weights = dict(start.named_parameters()), dict(base.named_parameters())
    assert not torch.allclose(start_weights[name], base_weights[name])  # the SFT adapter is merged in
    assert not any("lora" in n for n in start_weights)

    cfg = pref_config(tmp_path, sft_run, pairs)
    result = train(cfg, output_dir=tmp_path / "runs")
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["model"]["source"] == "run"


class InterruptAfterSave(TrainerCallback):
    """Stops the run like a kill right after the first checkpoint is written."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


def test_resume_continues_a_preference_run_mid_way(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    cfg = pref_config(tmp_path, tiny_llama, pairs, train={"max_steps": 4, "save_steps": 2})
    with pytest.raises(KeyboardInterrupt):
        train(cfg, output_dir=tmp_path / "runs", callbacks=[InterruptAfterSave()])
    (run_dir,) = (tmp_path / "runs").glob("tiny-*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    result = train(cfg, resume=run_dir)
    steps = [line["step"] for line in metric_lines(run_dir) if "loss" in line and "eval_loss" not in line]
    assert steps == [1, 2, 3, 4]  # steps 3 and 4 after the resume, none repeated
    assert json.loads((run_dir / "run.json").read_text())["train"]["steps"] == 4 == result.metrics.get("steps", 4)


# --- bad input: one clear error, before any model loads ---


def test_dpo_without_pair_data_names_the_keys(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    with pytest.raises(TunesmithError, match=r"data.chosen and data.rejected are required for train.objective dpo"):
        pref_config(tmp_path, tiny_llama, pairs, data={"chosen": None, "rejected": None, "response": "{good}"})


def test_kto_without_the_boolean_column_is_refused(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    with pytest.raises(TunesmithError, match=r"kto needs .*data.desirable"):
        pref_config(tmp_path, tiny_llama, pairs, "kto", data={"chosen": None, "rejected": None, "response": "{good}"})


def test_knobs_are_checked_against_the_objective(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    with pytest.raises(TunesmithError, match=r"train.loss_type applies to train.objective dpo only"):
        pref_config(tmp_path, tiny_llama, pairs, "orpo", train={"loss_type": "ipo"})
    with pytest.raises(TunesmithError, match=r"train.loss_type: unknown DPO loss 'nope'"):
        pref_config(tmp_path, tiny_llama, pairs, train={"loss_type": "nope"})
    with pytest.raises(TunesmithError, match=r"train.beta"):
        pref_config(tmp_path, tiny_llama, pairs, train={"beta": 0})


def test_a_missing_rejected_column_is_named_with_the_columns(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    cfg = pref_config(tmp_path, tiny_llama, pairs, data={"rejected": "{worse}"})
    with pytest.raises(TunesmithError, match=r"data.rejected: column 'worse' is not in") as err:
        train(cfg, output_dir=tmp_path / "runs")
    assert "product, good, bad, flag" in (err.value.hint or "")
    assert not (tmp_path / "runs").exists()


def test_a_non_boolean_desirable_value_names_its_row(tmp_path: Path, tiny_llama: Path) -> None:
    table = tmp_path / "kto.csv"
    table.write_text("q,a,ok\nhi,hello,true\nhey,yo,maybe\n")
    data = {"prompt": "{q}", "response": "{a}", "desirable": "ok", "chosen": None, "rejected": None}
    cfg = pref_config(tmp_path, tiny_llama, table, "kto", data=data)
    with pytest.raises(TunesmithError, match=r"data.desirable: row 2 of .*kto.csv has 'maybe'"):
        train(cfg, output_dir=tmp_path / "runs")


def test_an_unfinished_run_directory_is_not_a_starting_point(tmp_path: Path, tiny_llama: Path, pairs: Path) -> None:
    run = tmp_path / "sft-run"
    (run / "model").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "interrupted"}))
    cfg = pref_config(tmp_path, run, pairs)
    with pytest.raises(TunesmithError, match=r"the run is interrupted, not completed"):
        train(cfg, output_dir=tmp_path / "runs")


def test_tune_takes_reward_accuracy_as_the_metric_of_a_preference_study(
    tmp_path: Path, tiny_llama: Path, pairs: Path
) -> None:
    from tunesmith.config import TuneConfig
    from tunesmith.tune.space import check_space, trial_config
    from tunesmith.tune.study import metric_key

    cfg = pref_config(tmp_path, tiny_llama, pairs)
    assert metric_key(cfg, "reward_accuracy", "c.yaml") == ("eval_reward_accuracy", None)
    with pytest.raises(TunesmithError, match=r"train.objective dpo does not produce 'bleu'"):
        metric_key(cfg, "bleu", "c.yaml")
    cfg.tune = TuneConfig(space={"train.beta": {"loguniform": [0.05, 0.5]}, "train.learning_rate": {"choice": [1e-3]}})
    assert {param.key for param in check_space(cfg, "c.yaml")} == {"train.beta", "train.learning_rate"}
    from tunesmith.tune.space import base_mapping

    assert trial_config(base_mapping(cfg), {"train.beta": 0.3}).train.beta == 0.3
