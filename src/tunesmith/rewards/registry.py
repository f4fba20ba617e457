"""The reward registry: name -> a builder that turns one train.rewards entry into a scoring function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import RewardConfig

Columns = dict[str, list[Any]]  # reference, row, column.<name>: one value per completion
ScoreFn = Callable[[list[str], list[str], Columns], list[float]]
Builder = Callable[[RewardConfig], ScoreFn]

REWARDS: dict[str, Builder] = {}
COLUMN_PREFIX = "column."  # as tunesmith.data.prompts writes the row's columns


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a reward builder under ``name`` (the train.rewards[].name users write)."""

    def add(builder: Builder) -> Builder:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        REWARDS[name] = builder
        return builder

    return add


@dataclass
class RewardFailure:
    """A reward that raised (or returned something other than one number per answer): where, and why."""

    reward: str
    key: str
    row: int | None
    error: str

    def message(self) -> str:
        """One line for the user."""
        where = f" on data row {self.row}" if self.row is not None else ""
        return f"{self.key}: reward {self.reward} failed{where}: {self.error}"


@dataclass
class Reward:
    """One configured reward: its name, dotted key, weight and scoring function."""

    name: str
    key: str  # train.rewards.N
    weight: float
    score: ScoreFn
    code: bool = False  # a python reward: the user's code, whose exceptions stop the run instead of crashing it
    failures: list[RewardFailure] = field(default_factory=list)

    def __call__(self, prompts: list[str], completions: list[str], columns: Columns) -> list[float]:
        """Score every completion; a code reward that fails is recorded (see ``failures``) and scores 0."""
        if not self.code:
            return [float(v) for v in self.score(prompts, completions, columns)]
        try:
            return _checked(self.score(prompts, completions, columns), len(completions))
        except Exception as err:  # the user's code: any failure is theirs to fix, reported by row
            self.failures.append(self._locate(prompts, completions, columns, err))
            return [0.0] * len(completions)

    def _locate(self, prompts: list[str], completions: list[str], columns: Columns, err: Exception) -> RewardFailure:
        # Score the answers one at a time to name the first row that fails.
        rows = columns.get("row") or [None] * len(completions)
        for index in range(len(completions)):
            one = {key: values[index : index + 1] for key, values in columns.items()}
            try:
                _checked(self.score(prompts[index : index + 1], completions[index : index + 1], one), 1)
            except Exception as row_err:
                return RewardFailure(self.name, self.key, rows[index], f"{type(row_err).__name__}: {row_err}")
        return RewardFailure(self.name, self.key, None, f"{type(err).__name__}: {err}")


def _checked(values: Any, expected: int) -> list[float]:
    values = list(values)
    if len(values) != expected:
        raise ValueError(f"returned {len(values)} values for {expected} answers")
    scores = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"returned {value!r}, not a number")
        scores.append(float(value))
    return scores


def reward_columns_of(records: list[dict[str, Any]]) -> Columns:
    """Row records (prompt, reference, row, column.<name>) -> the columns mapping rewards read."""
    keys = [k for k in (records[0] if records else {}) if k not in ("prompt", "completion")]
    return {key: [r[key] for r in records] for key in keys}


# TRL passes these to every reward function besides the dataset's columns.
_TRL_KEYS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids")


def trl_reward_functions(rewards: list[Reward]) -> list[Callable[..., list[float]]]:
    """Each reward as a TRL reward function (its metric name: the reward's name, numbered when repeated)."""
    names = reward_metric_names([r.name for r in rewards])
    return [_trl_function(reward, name) for reward, name in zip(rewards, names, strict=True)]


def _trl_function(reward: Reward, name: str) -> Callable[..., list[float]]:
    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        columns = {k: list(v) for k, v in kwargs.items() if k not in _TRL_KEYS}
        return reward(_texts(prompts), _texts(completions), columns)

    score.__name__ = name
    return score


def _texts(items: list[Any]) -> list[str]:
    # Conversational prompts/completions are lists of messages; rewards read the last message's text.
    return [item if isinstance(item, str) else str(item[-1].get("content", "")) if item else "" for item in items]


def reward_metric_names(names: list[str]) -> list[str]:
    """Each reward's metric name, in order: its name, numbered from the second use on (chrf, chrf_2)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
