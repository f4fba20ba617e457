"""GRPO on TRL's GRPOTrainer: answers sampled per prompt, scored by train.rewards, the better ones reinforced.

The supervised runner does everything around the trainer (run directory, checkpoints, resume, callbacks,
run.json); this module builds the trainer, names its metrics, times each step and stops a run whose code
reward failed. Answers are sampled by the built-in engine (``tunesmith.engine``) where it runs the model, else
by TRL's own ``generate``. The reference model (train.beta > 0) is, as for DPO, the starting weights: with an adapter,
the same weights with the adapter switched off (TRL adds our method's adapter itself, see
``split_adapter``); with full fine-tuning, a second copy TRL loads from the starting model. beta 0 (the
default, as in TRL) keeps no reference at all. When ``model.name`` is a completed run, the starting weights
are that run's tuned model, so SFT then GRPO is one line.

What each logged step adds to metrics.jsonl: ``reward`` (the weighted sum's mean) and ``reward_std``,
``reward_<name>`` and ``reward_<name>_std`` per reward, ``zero_variance_groups`` (the share of prompts whose
answers all scored the same: no learning signal), ``completion_length``, ``kl`` (when beta > 0), and the
step time split into ``time_generation``, ``time_reward`` and ``time_optimisation`` (seconds per step).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesmith.config import RunConfig, preference_beta
from tunesmith.console import say
from tunesmith.errors import TunesmithError
from tunesmith.rewards import Reward, build_rewards, trl_reward_functions

# TRL's metric names -> ours (the eval_ prefixed ones keep their prefix).
METRIC_NAMES = {
    "frac_reward_zero_std": "zero_variance_groups",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "completions_clipped",
}
SAMPLES_FILE = "grpo_samples.jsonl"  # answers and their rewards at each evaluation
SAMPLES_PER_EVALUATION = 8


def build_grpo_trainer(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    """TRL's GRPOTrainer on the session's model and prompts, rewarded by ``cfg.train.rewards``."""
    from trl import GRPOConfig

    from tunesmith.train.preference import TrlMetricNames, split_adapter

    rewards = build_rewards(cfg)
    model, peft_config = split_adapter(session.model) if session.adapter else (session.model, None)
    args = GRPOConfig(**grpo_arguments(cfg, values, rewards))
    run_dir = Path(values["output_dir"]).parent
    trainer = _trainer_class()(
        model=model,
        reward_funcs=trl_reward_functions(rewards),
        args=args,
        train_dataset=session.data.train,
        eval_dataset=session.data.eval,
        processing_class=session.tokenizer,
        callbacks=[TrlMetricNames(rename_metrics), *callbacks, RewardFailureStop(rewards)],
        peft_config=peft_config,
    )
    trainer.samples_path = run_dir / SAMPLES_FILE
    trainer.engine_precision = session.precision[0]
    session.model = trainer.model  # the peft-wrapped model when TRL added the adapter
    g = cfg.train.grpo
    say(
        f"objective: grpo, {g.num_generations} answers per prompt, up to {g.max_new_tokens} tokens at temperature "
        f"{g.temperature}; beta {preference_beta(cfg.train)}; rewards: "
        + ", ".join(f"{r.name} x{r.weight:g}" for r in rewards)
    )
    return trainer


def grpo_arguments(cfg: RunConfig, values: dict[str, Any], rewards: list[Reward]) -> dict[str, Any]:
    """GRPOConfig keywords: our TrainingArguments values plus the sampling, the loss and the reward weights."""
    t, g = cfg.train, cfg.train.grpo
    args = {k: v for k, v in values.items() if k not in ("label_names", "train_sampling_strategy")}
    # Evaluations sample whole groups too: the eval batch is rounded to a multiple of num_generations.
    eval_batch = max(1, cfg.eval.batch_size // g.num_generations) * g.num_generations
    args |= {
        "per_device_eval_batch_size": eval_batch,
        "include_num_input_tokens_seen": "no",
        "remove_unused_columns": False,  # the rewards read the rows' reference and columns
        "num_generations": g.num_generations,
        "max_completion_length": g.max_new_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "scale_rewards": g.scale_rewards,
        "beta": preference_beta(t),
        "loss_type": t.loss_type or "dapo",
        "reward_weights": [r.weight for r in rewards],
        "max_grad_norm": t.max_grad_norm,
        "log_completions": False,  # our samples file records them, without rich tables in the log
        "use_cache": True,  # sampling decodes with the KV cache; GRPO's rows are never packed
    }
    return args


def _trainer_class() -> Any:
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that splits each step's time into generation, reward and optimisation, and writes the
        sampled answers of each evaluation with their rewards."""

        samples_path: Path | None = None
        engine_precision: str | None = None  # the run's precision when the built-in engine samples; None: TRL's

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._spent = {"generation": 0.0, "reward": 0.0, "evaluation": 0.0}
            self._clock: tuple[float, int] | None = None  # (time, step) at the last training log
            self._started = time.perf_counter()

        def _generate(self, prompts: list[Any]) -> Any:
            start = time.perf_counter()
            try:
                return super()._generate(prompts)
            finally:
                self._add("generation", start)

        def _generate_single_turn(
            self, prompt_ids: Any, images: Any, multimodal_fields: Any, num_generations: int, *args: Any
        ) -> Any:
            # The built-in engine samples the answers where it runs the model (a Llama-family model on the CPU);
            # elsewhere, and for images, TRL's own generation.
            completions = self._engine_completions(prompt_ids) if images is None and self.engine_precision else None
            if completions is None:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, *args)
            return completions, None

        def _engine_completions(self, prompt_ids: list[list[int]]) -> list[list[int]] | None:
            import torch

            from tunesmith.engine import Unsupported, build_engine

            try:
                with torch.no_grad():
                    engine = build_engine(self.accelerator.unwrap_model(self.model), self.engine_precision or "fp32")
            except Unsupported as err:
                say(f"grpo: answers sampled by transformers generate (the built-in engine does not run it: {err})")
                self.engine_precision = None
                return None
            return sample_with_engine(engine, prompt_ids, self.args, self.eos_token_ids, self.state)

        def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return super()._calculate_rewards(*args, **kwargs)
            finally:
                self._add("reward", start)

        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self._spent["evaluation"] += time.perf_counter() - start

        def _training(self) -> bool:
            return bool(getattr(self.model, "training", False))

        def _add(self, part: str, start: float) -> None:
            if self._training():
                self._spent[part] += time.perf_counter() - start

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._training() and "loss" in logs:
                logs.update(self._step_times())
            elif not self._training():
                self._write_samples()
            super().log(logs, start_time)

        def train(self, *args: Any, **kwargs: Any) -> Any:
            self._clock = None
            self._started = time.perf_counter()
            return super().train(*args, **kwargs)

        def _step_times(self) -> dict[str, float]:
            now, step = time.perf_counter(), self.state.global_step
            # The first log since train() (or a resume) counts from its start.
            since, last_step = self._clock or (self._started, max(0, step - int(self.args.logging_steps)))
            steps = max(1, step - last_step)
            total = (now - since - self._spent["evaluation"]) / steps
            generation, reward = self._spent["generation"] / steps, self._spent["reward"] / steps
            self._clock, self._spent = (now, step), {"generation": 0.0, "reward": 0.0, "evaluation": 0.0}
            return {
                "time_step": round(total, 3),
                "time_generation": round(generation, 3),
                "time_reward": round(reward, 3),
                "time_optimisation": round(max(0.0, total - generation - reward), 3),
            }

        def _write_samples(self) -> None:
            logged: Any = self._logs
            if self.samples_path is None or not logged["completion"] or not self.is_world_process_zero():
                return
            prompts, completions = list(logged["prompt"]), list(logged["completion"])
            rewards = {name: list(values) for name, values in logged["rewards"].items()}
            with self.samples_path.open("a", encoding="utf-8") as out:
                for index in range(min(SAMPLES_PER_EVALUATION, len(completions))):
                    record = {
                        "step": self.state.global_step,
                        "prompt": prompts[index],
                        "completion": completions[index],
                        "rewards": {name: values[index] for name, values in rewards.items()},
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")

    return TimedGRPOTrainer


def clear_name(key: str) -> str:
    """Our name for one of TRL's GRPO metrics (``eval_`` prefix kept)."""
    prefix = "eval_" if key.startswith("eval_") else ""
    bare = key.removeprefix(prefix)
    if bare.startswith("rewards/"):  # rewards/<name>/mean -> reward_<name>, rewards/<name>/std -> reward_<name>_std
        _, name, stat = bare.split("/", 2)
        return f"{prefix}reward_{name}" + ("" if stat == "mean" else f"_{stat}")
    return prefix + METRIC_NAMES.get(bare, bare.replace("/", "_"))


def rename_metrics(metrics: dict[str, Any]) -> None:
    """Rename TRL's metrics in place (the Trainer hands the same dict to the next callbacks)."""
    for key in [k for k in metrics if "/" in k or k.removeprefix("eval_") in METRIC_NAMES]:
        metrics[clear_name(key)] = metrics.pop(key)


def sample_with_engine(
    engine: Any, prompt_ids: list[list[int]], args: Any, eos: list[int], state: Any
) -> list[list[int]]:
    """Sample one answer per prompt (TRL repeats each prompt num_generations times) with the built-in engine.

    Each answer has its own seed (train.seed, the step, its index), so a group's answers differ and a run
    repeats itself. An answer that chose an end token keeps it, as TRL's own generation does, so GRPO also
    learns where to stop.
    """
    from tunesmith.engine import Sequence, decode_sequences

    end = int(eos[0])
    sequences = [
        Sequence(
            list(ids),
            int(args.max_completion_length),
            adapter=0 if engine.weights.adapters else -1,
            sample=True,
            temperature=float(args.temperature),
            top_p=float(args.top_p),
            seed=(int(args.seed) * 1_000_003 + int(state.global_step)) * 4099 + index,
        )
        for index, ids in enumerate(prompt_ids)
    ]
    # All of a step's answers decode in one batch.
    decode_sequences(engine, sequences, max(1, len(sequences)), {int(e) for e in eos})
    return [s.tokens + ([end] if s.ended else []) for s in sequences]


class RewardFailureStop(TrainerCallback):
    """A code reward that failed during a step: save a checkpoint after that step and stop the run."""

    def __init__(self, rewards: list[Reward]) -> None:
        self.rewards = rewards

    def failure(self) -> str | None:
        """The first failure's one-line message, or None."""
        failed = [f for r in self.rewards for f in r.failures]
        return failed[0].message() if failed else None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.failure() is not None:
            control.should_save = True
            control.should_training_stop = True


def raise_reward_failure(trainer: Any, run_dir: Path) -> None:
    """After training: a failed code reward becomes one line naming the reward and row (the checkpoint is kept)."""
    for callback in trainer.callback_handler.callbacks:
        message = callback.failure() if isinstance(callback, RewardFailureStop) else None
        if message is not None:
            raise TunesmithError(
                message,
                hint=f"the steps trained so far are saved; fix the reward and continue with "
                f"tunesmith train CONFIG --resume {run_dir}",
            )
