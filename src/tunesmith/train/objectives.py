"""Training objectives, registered once: which data form each reads, which trainer runs it, what its
evaluations report, and which config check applies.

The runner, the checkpoint selection and the config ask ``objective_for(cfg)`` instead of testing
``train.objective`` themselves; adding an objective is one ``register_objective`` call here and its trainer
module. (The config check functions live in ``tunesmith.config``, below every package, so that validating a
config needs no trainer; ``OBJECTIVE_CHECKS`` there and the ``check`` here are the same functions, and a test
keeps the two in step.)

=========  ==============  ===========================================  =====================================
objective  data form       trainer                                      evaluations report
=========  ==============  ===========================================  =====================================
sft        the task's      transformers Trainer (TokenLossTrainer)      eval_loss (+ eval.metrics)
dpo, kto   preference      TRL DPOTrainer / KTOTrainer                  reward_accuracy, reward_margin
orpo       preference      TRL ORPOTrainer (experimental)               reward_accuracy, reward_margin
simpo      preference      TRL CPOTrainer, simpo loss (experimental)    reward_accuracy, reward_margin
grpo       prompt_only     TRL GRPOTrainer, rewards from train.rewards  reward, reward_<name> per reward
=========  ==============  ===========================================  =====================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.config import OBJECTIVE_CHECKS, RunConfig

Builder = Callable[
    [RunConfig, Any, dict[str, Any], list[Any]], Any
]  # cfg, session, TrainingArguments values, callbacks


@dataclass(frozen=True)
class ObjectiveDef:
    """One objective and everything the pipeline does differently for it."""

    name: str
    description: str
    forms: tuple[str, ...]  # the data forms (tunesmith.data.forms) it reads
    build: Builder  # the trainer, on the loaded session
    eval_metrics: Callable[[RunConfig], tuple[str, ...]]  # what each evaluation reports besides eval_loss
    check: Callable[[RunConfig], None]  # the config check (tunesmith.config.OBJECTIVE_CHECKS)
    needs_trl: bool = False
    packs: bool = False  # rows may be packed (token-level loss on tokenised rows)
    token_loss: bool = False  # eval_loss is a per-token likelihood, so perplexity means something
    # Answers sampled per prompt (GRPO): a batch row is then one answer, and a step's prompts are rows / this.
    generations: Callable[[RunConfig], int] | None = None
    tune_metric: str = "loss"  # what a search optimises when tune.metric is unset (an evaluation's key, no eval_)


OBJECTIVES: dict[str, ObjectiveDef] = {}


def register_objective(objective: ObjectiveDef) -> ObjectiveDef:
    """Add an objective to the registry (names are unique)."""
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is registered twice")
    OBJECTIVES[objective.name] = objective
    return objective


def objective_for(cfg: RunConfig) -> ObjectiveDef:
    """The definition of ``cfg.train.objective``."""
    return OBJECTIVES[cfg.train.objective]


def _supervised(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    from tunesmith.train.supervised import build_supervised_trainer

    return build_supervised_trainer(cfg, session, values, callbacks)


def _preference(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    from tunesmith.train.preference import build_preference_trainer

    return build_preference_trainer(cfg, session, values, callbacks)


def _grpo(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    from tunesmith.train.grpo import build_grpo_trainer

    return build_grpo_trainer(cfg, session, values, callbacks)


PREFERENCE_METRICS = ("reward_accuracy", "reward_margin")


def grpo_metrics(cfg: RunConfig) -> tuple[str, ...]:
    """What a GRPO evaluation reports: the weighted reward, and each reward's mean (repeats numbered)."""
    from tunesmith.rewards import reward_metric_names

    return ("reward", *(f"reward_{name}" for name in reward_metric_names([r.name for r in cfg.train.rewards])))


register_objective(
    ObjectiveDef(
        "sft",
        "supervised: learn the reference answer token by token",
        ("prompt_response", "source_target", "text_label", "conversation"),
        _supervised,
        lambda cfg: (),
        OBJECTIVE_CHECKS["sft"],
        packs=True,
        token_loss=True,
    )
)
for _name, _description in (
    ("dpo", "direct preference optimisation on chosen/rejected pairs (reference: the starting model)"),
    ("orpo", "odds-ratio preference optimisation: SFT plus a preference term, no reference model"),
    ("simpo", "simple preference optimisation: length-normalised margins, no reference model"),
    ("kto", "Kahneman-Tversky optimisation: pairs, or single answers marked desirable or not"),
):
    register_objective(
        ObjectiveDef(
            _name,
            _description,
            ("preference",),
            _preference,
            lambda cfg: PREFERENCE_METRICS,
            OBJECTIVE_CHECKS[_name],
            needs_trl=True,
        )
    )
register_objective(
    ObjectiveDef(
        "grpo",
        "group relative policy optimisation: sample answers, score them with train.rewards, reinforce the better",
        ("prompt_only",),
        _grpo,
        grpo_metrics,
        OBJECTIVE_CHECKS["grpo"],
        needs_trl=True,
        generations=lambda cfg: cfg.train.grpo.num_generations,
        tune_metric="reward",  # GRPO's eval_loss is the policy loss of sampled answers, not a measure of quality
    )
)
