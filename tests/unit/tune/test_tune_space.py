"""Search-space parsing and checks, metric names, the memory estimate: fast, no Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fixtures import write_config
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.tune.memory import GIB, estimate_memory, shape_from_config
from tunesmith.tune.outputs import influential_params
from tunesmith.tune.record import TrialRow
from tunesmith.tune.space import apply_sample, base_mapping, check_space, parse_space, sample
from tunesmith.tune.study import check_address, metric_key

SPACE = {
    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
    "method.name": {"choice": ["lora", "freeze"]},
    "method.r": {"choice": [4, 8, 16], "when": {"method.name": "lora"}},
    "train.batch_size": {"int": [2, 8]},
    "method.dropout": {"uniform": [0.0, 0.2], "when": {"method.name": ["lora"]}},
}


def _config(tmp_path: Path, tune: dict[str, Any], **sections: Any) -> Path:
    table = tmp_path / "ads.csv"
    table.write_text("product,audience,ad_text\ncoffee,students,Buy it\n")
    return write_config(tmp_path / "config.yaml", tmp_path, table, tune=tune, **sections)


def test_conditions_are_sampled_first_and_only_when_they_hold() -> None:
    import optuna

    params = parse_space(dict(reversed(SPACE.items())))
    keys = [p.key for p in params]
    assert keys.index("method.name") < keys.index("method.r")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [sample(params, study.ask()) for _ in range(30)]
    for values in seen:
        assert ("method.r" in values) == (values["method.name"] == "lora")
        assert 1e-5 <= values["train.learning_rate"] <= 1e-3
        assert values["train.batch_size"] in range(2, 9)
    assert {v["method.name"] for v in seen} == {"lora", "freeze"}


def test_list_choices_travel_through_optuna() -> None:
    import optuna

    params = parse_space({"method.target_modules": {"choice": ["all-linear", ["q_proj", "v_proj"]]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {str(sample(params, study.ask())["method.target_modules"]) for _ in range(20)}
    assert seen == {"all-linear", "['q_proj', 'v_proj']"}


def test_switching_method_keeps_only_the_keys_it_has(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, {"space": SPACE}))
    raw = apply_sample(base_mapping(cfg), {"method.name": "freeze", "train.learning_rate": 1e-4})
    assert raw["method"] == {"name": "freeze"}
    assert "tune" not in raw and raw["train"]["learning_rate"] == 1e-4


def test_a_valid_space_passes(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, {"space": SPACE, "points": [{"method.r": 8}]}))
    assert len(check_space(cfg, "config.yaml")) == len(SPACE)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"method.rr": {"choice": [4, 8]}}, "unknown key method.rr; did you mean 'r'?"),
        ({"trian.learning_rate": {"uniform": [0.1, 0.2]}}, "unknown key trian; did you mean 'train'?"),
        ({"method.r": {"choice": [0, 8]}}, "method.r: Input should be greater than or equal to 1"),
        (
            {"method.name": {"choice": ["lora", "freeze"]}, "method.r": {"choice": [4]}},
            "unknown key method.r; known keys: embeddings",
        ),
    ],
)
def test_space_keys_and_values_are_checked_against_the_config(
    tmp_path: Path, space: dict[str, Any], message: str
) -> None:
    cfg = load_config(_config(tmp_path, {"space": space}))
    with pytest.raises(TunesmithError) as err:
        check_space(cfg, "config.yaml")
    assert message in str(err.value)
    if "method.name" in space:
        assert "(with method.name=freeze)" in str(err.value) and "when: {method.name: [lora]}" in str(err.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"choice": []}, "the choice list is empty"),
        ({"uniform": [0.5, 0.1]}, "low bound 0.5 is above the high bound 0.1"),
        ({"loguniform": [0, 1]}, "loguniform needs a positive low bound"),
        ({"int": [1.5, 4]}, "whole-number bounds"),
        ({"normal": [0, 1]}, "expected one of loguniform"),
    ],
)
def test_malformed_distributions_fail_when_the_config_loads(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(TunesmithError) as err:
        load_config(_config(tmp_path, {"space": {"train.learning_rate": entry}}))
    assert "tune.space" in str(err.value) and message in str(err.value)


def test_metric_names_come_from_the_task(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, {"space": SPACE}))
    assert metric_key(cfg, "eval_loss", "c") == ("eval_loss", None)
    assert metric_key(cfg, "bleu", "c") == ("eval_bleu", "bleu")
    assert metric_key(cfg, "rougeL", "c") == ("eval_rougeL", "rouge")
    with pytest.raises(TunesmithError, match="task causal_lm does not produce 'accuracy'"):
        metric_key(cfg, "accuracy", "c")


def test_a_grpo_study_optimises_the_mean_reward_unless_told_otherwise(tmp_path: Path) -> None:
    from tunesmith.metric_specs import direction

    grpo = {"objective": "grpo", "batch_size": 4, "rewards": [{"name": "chrf"}], "grpo": {"num_generations": 2}}
    cfg = load_config(_config(tmp_path, {"space": SPACE}, train=grpo))
    assert metric_key(cfg, None, "c") == ("eval_reward", None) and direction("eval_reward") == "max"
    assert metric_key(cfg, "reward_chrf", "c") == ("eval_reward_chrf", None)
    with pytest.raises(TunesmithError, match="train.objective grpo does not produce 'bleu'"):
        metric_key(cfg, "bleu", "c")
    sft = load_config(_config(tmp_path, {"space": SPACE}))
    assert sft.tune is not None and sft.tune.metric is None and metric_key(sft, None, "c") == ("eval_loss", None)


def test_an_unreachable_address_fails_fast() -> None:
    with pytest.raises(TunesmithError, match="cannot reach the Ray cluster"):
        check_address("ray://127.0.0.1:1")
    with pytest.raises(TunesmithError, match="expected auto, HOST:PORT"):
        check_address("nowhere")


SMOLLM2 = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}


def test_memory_estimate_counts_parameters_and_scales_with_the_batch(tmp_path: Path) -> None:
    shape = shape_from_config(SMOLLM2)
    assert 130e6 < shape.parameters() < 136e6  # SmolLM2-135M, norms left out
    cfg = load_config(_config(tmp_path, {"space": SPACE}, train={"batch_size": 8}, data={"max_length": 256}))
    lora = estimate_memory(cfg, shape)
    assert lora.weights == shape.parameters() * 4
    assert lora.gradients < lora.weights / 50  # LoRA trains a few percent
    cfg.method = cfg.method.__class__(name="lora", r=64)
    assert estimate_memory(cfg, shape).gradients > lora.gradients
    cfg.train.batch_size = 64
    big = estimate_memory(cfg, shape)
    assert big.activations == pytest.approx(8 * lora.activations, rel=0.01)
    assert 1 * GIB < lora.total < 8 * GIB
    cfg.train.gradient_checkpointing = True
    assert estimate_memory(cfg, shape).activations < big.activations


def test_influential_params_rank_by_rank_correlation() -> None:
    rows = [
        TrialRow(i, "completed", {"lr": lr, "r": r, "m": m}, [loss])
        for i, (lr, r, m, loss) in enumerate([(1e-4, 8, "a", 3.0), (1e-3, 4, "b", 2.0), (1e-2, 16, "a", 1.0)])
    ]
    assert influential_params(rows, "min")[0] == "lr"


def test_the_example_study_is_valid() -> None:
    example = Path(__file__).parents[3] / "examples" / "marketing-copy" / "tune.yaml"
    cfg = load_config(example)
    assert cfg.tune is not None and cfg.tune.num_trials >= 4
    assert {p.key for p in check_space(cfg, str(example))} == {"train.learning_rate", "method.r"}


def test_a_sample_that_cannot_fit_is_skipped_with_its_estimate(tmp_path: Path) -> None:
    from tunesmith.tune.study import admit_trial
    from tunesmith.tune.trial_setup import TrialSetup

    cfg = load_config(_config(tmp_path, {"space": SPACE}))
    setup = TrialSetup(base_mapping(cfg), tmp_path, "s", "eval_loss", 4, 100, str(tmp_path), None)
    shape = shape_from_config(SMOLLM2)
    values = {"train.learning_rate": 1e-4, "method.name": "lora", "method.r": 8, "train.batch_size": 4}
    assert admit_trial(setup, 1, values, shape, budget=64 * GIB) is None
    row = admit_trial(setup, 2, values, shape, budget=GIB // 2)
    assert row is not None and row.status == "skipped" and row.trial == 2
    assert "GiB" in row.memory_estimate and "free per trial" in row.error
    broken = admit_trial(setup, 3, {**values, "train.batch_size": 0}, shape, budget=64 * GIB)
    assert broken is not None and broken.status == "failed" and "train.batch_size" in broken.error


def test_a_trial_evaluates_several_times_and_keeps_no_checkpoints(tmp_path: Path) -> None:
    from tunesmith.tune.trial_setup import TrialSetup, build_trial

    cfg = load_config(_config(tmp_path, {"space": SPACE}, train={"max_steps": 12}))
    setup = TrialSetup(base_mapping(cfg), tmp_path, "s", "eval_bleu", 4, 100, str(tmp_path), "bleu")
    trial = build_trial(setup, {"method.name": "freeze"}, 7)
    assert trial.name == "tiny-t007" and trial.train.eval_steps == 3 and trial.train.save_steps == 13
    assert trial.eval.metrics == ["bleu"] and trial.method.name == "freeze" and trial.tune is None


def test_a_local_ray_holds_every_worker_of_a_trial_and_steps_count_all_processes(tmp_path: Path) -> None:
    from tunesmith.config import TuneConfig
    from tunesmith.tune.study import local_cluster_size
    from tunesmith.tune.trial_setup import planned_steps

    def size(**resources: float) -> tuple[int, int]:
        space = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}
        return local_cluster_size(TuneConfig(space=space, resources_per_trial=resources))

    assert size(cpu=2) == (2, 0)
    assert size(cpu=1, workers=2) == (3, 0)  # two workers and the trial that waits for them
    assert size(cpu=4, gpu=1, workers=2) == (9, 2)
    config = write_config(tmp_path / "c.yaml", tmp_path, tmp_path / "t.csv")
    cfg = load_config(config, ["train.epochs=1", "train.max_steps=null"])
    assert planned_steps(cfg, 96) == 2 * planned_steps(cfg, 96, processes=2)
    # GRPO: a batch row is one sampled answer, so 12 prompts x 2 answers fill 6 batches of 4.
    grpo = {"objective": "grpo", "batch_size": 4, "rewards": [{"name": "chrf"}], "grpo": {"num_generations": 2}}
    grpo_cfg = load_config(
        write_config(tmp_path / "g.yaml", tmp_path, tmp_path / "t.csv", train=grpo | {"max_steps": None})
    )
    assert planned_steps(grpo_cfg, 12) == 6 and planned_steps(cfg, 12) == 3
