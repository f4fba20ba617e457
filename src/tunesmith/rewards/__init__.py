"""Rewards for train.objective grpo, registered once: each scores sampled answers from 0 (bad) to 1 (good).

A reward is a function over (prompts, completions, columns) -> one float per completion, where ``columns``
holds, per completion, its row's ``reference`` (data.response rendered), ``row`` (1 = first data row) and
each column of the row as ``column.<name>``. The same functions feed TRL's ``reward_funcs`` during training
and score the references in the doctor, so what is checked before training is what training optimises.

Adding a built-in reward is one ``@register`` function in ``builtin.py`` and its options in
``tunesmith.config.REWARD_OPTIONS``.
"""

from __future__ import annotations

from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.rewards import builtin  # noqa: F401  (registers the built-in rewards)
from tunesmith.rewards.registry import (
    REWARDS,
    Reward,
    RewardFailure,
    register,
    reward_columns_of,
    reward_metric_names,
    trl_reward_functions,
)

__all__ = [
    "REWARDS",
    "Reward",
    "RewardFailure",
    "build_rewards",
    "register",
    "reward_columns_of",
    "reward_metric_names",
    "trl_reward_functions",
]


def build_rewards(cfg: RunConfig) -> list[Reward]:
    """The configured rewards, built (a python reward's function is imported here, and fails naming its key)."""
    rewards = []
    for index, entry in enumerate(cfg.train.rewards):
        key = f"train.rewards.{index}"
        if entry.name not in REWARDS:
            raise TunesmithError(f"{key}: unknown reward {entry.name!r}; choose one of {', '.join(REWARDS)}")
        if entry.name == "python" and not cfg.train.allow_code_rewards:
            raise TunesmithError(f"{key}: reward python runs your code; set train.allow_code_rewards: true")
        try:
            score = REWARDS[entry.name](entry)
        except TunesmithError as err:
            raise TunesmithError(f"{key}: {err.message}", hint=err.hint) from err
        rewards.append(Reward(entry.name, key, entry.weight, score, code=entry.name == "python"))
    return rewards
