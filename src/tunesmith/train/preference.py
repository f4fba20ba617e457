"""Preference objectives on TRL's trainers: dpo and kto (stable), orpo and simpo (TRL's experimental CPO/ORPO).

The supervised runner does everything around the trainer (run directory, checkpoints, resume, callbacks,
run.json); this module only builds the trainer. The reference model:

- an adapter method (LoRA, DoRA, IA3, prompt/prefix tuning): the same weights with the adapter switched off,
  so the base is in memory once. TRL does that when it wraps the model itself, so the adapter our method
  made is taken off again and its peft config handed to TRL.
- full fine-tuning: the reference log-probabilities are computed once, before the first step, from the
  starting weights (TRL's precompute_ref_log_probs), instead of keeping a second copy of the model.
- orpo and simpo need no reference.

When ``model.name`` is a completed run, the starting weights are that run's tuned model, and so is the
reference: the preference loss keeps the model near where preference tuning started (the SFT model).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesmith.config import RunConfig, preference_beta
from tunesmith.console import say
from tunesmith.errors import TunesmithError

# TRL's metric names -> ours in metrics.jsonl (and the eval_ prefixed ones the Trainer reports).
METRIC_NAMES = {
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "logps/chosen": "logp_chosen",
    "logps/rejected": "logp_rejected",
}


def build_preference_trainer(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    """TRL's trainer for ``cfg.train.objective``, on the session's model and data; ``values`` are our
    TrainingArguments values (schedule, batch, precision, checkpoints)."""
    objective = cfg.train.objective
    config_class, trainer_class = _trl_classes(objective)
    model, peft_config = split_adapter(session.model) if session.adapter else (session.model, None)
    args = config_class(**_arguments(cfg, values, full=peft_config is None))
    kwargs: dict[str, Any] = {"ref_model": None} if objective in ("dpo", "kto") else {}
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=session.data.train.shuffle(seed=cfg.train.seed) if objective == "kto" else session.data.train,
        eval_dataset=session.data.eval,
        processing_class=session.tokenizer,
        callbacks=[TrlMetricNames(), *callbacks],
        peft_config=peft_config,
        **kwargs,
    )
    session.model = trainer.model  # the peft-wrapped model when TRL added the adapter
    say(reference_note(cfg, peft_config is not None, session.resolved.location))
    return trainer


def require_trl(objective: str) -> None:
    """Fail before any model loads when TRL, which the preference objectives train with, is not installed."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        raise TunesmithError(
            f"train.objective {objective} needs TRL, which is not installed",
            hint="pip install 'tunesmith[prefs]' (Python 3.11+)",
        )


def split_adapter(model: Any) -> tuple[Any, Any]:
    """A peft-wrapped model -> (the bare model, its adapter config), for TRL to wrap again.

    Given a model that is already a PeftModel, TRL copies the adapter into a second "ref" adapter; given the
    bare model and a config, it computes the reference with the adapter switched off (no copy at all).
    """
    config = model.peft_config["default"]
    bare = model.get_base_model() if config.is_prompt_learning else model.unload()
    return bare, config


def _arguments(cfg: RunConfig, values: dict[str, Any], full: bool) -> dict[str, Any]:
    t = cfg.train
    # Rows are pairs of unequal lengths, padded per batch; TRL picks its own columns and labels.
    args = {k: v for k, v in values.items() if k not in ("label_names", "remove_unused_columns")}
    args |= {
        # KTO's KL term pairs each row with its neighbours in a fixed order: the rows are shuffled once, by seed.
        "train_sampling_strategy": "sequential" if t.objective == "kto" else "random",
        "include_num_input_tokens_seen": "non_padding" if t.objective == "dpo" else "no",
        "max_length": cfg.data.max_length,
        "beta": preference_beta(t),
    }
    if t.objective in ("dpo", "kto"):
        # Full fine-tuning: reference log-probs from the starting weights, once, instead of a second model.
        args["precompute_ref_log_probs"] = full
    if t.objective == "dpo":
        args["loss_type"] = [t.loss_type or "sigmoid"]
    if t.objective in ("orpo", "simpo"):
        args["remove_unused_columns"] = False  # their collator reads the text columns
    if t.objective == "simpo":
        # SimPO is CPO's simpo loss without CPO's behaviour-cloning term.
        args |= {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": t.simpo_gamma}
    return args


def _trl_classes(objective: str) -> tuple[Any, Any]:
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if objective == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    with warnings.catch_warnings():
        # ORPO and CPO live in trl.experimental, which announces itself with a warning on import.
        warnings.simplefilter("ignore")
        if objective == "orpo":
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            return ORPOConfig, ORPOTrainer
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer


def clear_name(key: str) -> str:
    """Our name for one of TRL's logged metrics (``eval_`` prefix kept); other names lose their slashes."""
    prefix = "eval_" if key.startswith("eval_") else ""
    bare = key.removeprefix(prefix)
    return prefix + METRIC_NAMES.get(bare, bare.replace("/", "_"))


def rename_metrics(metrics: dict[str, Any]) -> None:
    """Rename TRL's metrics in place (the Trainer hands the same dict to the next callbacks)."""
    for key in [k for k in metrics if "/" in k]:
        metrics[clear_name(key)] = metrics.pop(key)


class TrlMetricNames(TrainerCallback):
    """First callback: TRL's metric names become ours (rewards/accuracies -> reward_accuracy, ...) before
    anything records them; ``rename`` is the objective's renaming, in place."""

    def __init__(self, rename: Callable[[dict[str, Any]], None] = rename_metrics) -> None:
        self.rename = rename

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            self.rename(logs)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        # The dict evaluate() returns: checkpoint selection and tune read it after the callbacks.
        if metrics:
            self.rename(metrics)


def reference_note(cfg: RunConfig, adapter: bool, location: Path | str) -> str:
    """One line on what the reference model is, for the console."""
    if cfg.train.objective in ("orpo", "simpo"):
        return f"objective: {cfg.train.objective} (no reference model)"
    how = "the starting weights with the adapter switched off" if adapter else "precomputed from the starting weights"
    return f"objective: {cfg.train.objective}, beta {preference_beta(cfg.train)}; reference: {how} ({location})"
