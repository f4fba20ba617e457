"""Classification labels: the label set read from the data, and a stratified eval split."""

from __future__ import annotations

import random
from collections import defaultdict

from tunesmith.config import DataConfig
from tunesmith.data.render import Pair
from tunesmith.errors import TunesmithError


def label_names(pairs: list[Pair], cfg: DataConfig) -> list[str]:
    """The sorted label set of the training rows; a single class cannot be learnt."""
    names = sorted({pair.response for pair in pairs})
    if len(names) < 2:
        raise TunesmithError(
            f"data.label: column {cfg.label!r} of {cfg.train} has one class only ({names[0]!r})",
            hint="classification needs at least two labels",
        )
    return names


def stratified_holdout(pairs: list[Pair], cfg: DataConfig) -> set[int]:
    """Row indices held out for eval: the same share of every label (at least one row of each that has two)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_label[pair.response].append(index)
    rng = random.Random(cfg.split_seed)
    held_out: set[int] = set()
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        if len(rows) >= 2:
            held_out.update(rows[: min(len(rows) - 1, max(1, round(len(rows) * cfg.eval_fraction)))])
    return held_out
