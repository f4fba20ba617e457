"""The search space: parse the ``tune.space`` section, sample it with Optuna, apply a sample to a config.

A sample is a flat mapping ``{"train.learning_rate": 3e-4, "method.r": 8}``; applying it to the base config's
mapping and validating the result with config.py's own validation is what makes a trial's config, so an
unknown key gets the same did-you-mean as a typo in the YAML file.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import METHOD_CONFIGS, RunConfig, set_dotted, validate_config
from tunesmith.errors import TunesmithError

SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One searched key: its distribution and the condition under which it is sampled at all."""

    key: str
    kind: str  # loguniform | uniform | int | choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def candidates(self) -> list[Any]:
        """Values that validation tries: every choice, or both bounds."""
        if self.kind == "choice":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]

    def applies(self, sample: dict[str, Any]) -> bool:
        """Whether the ``when`` condition holds for the values sampled (or fixed) so far."""
        return all(sample.get(key) in values for key, values in self.when.items())

    @property
    def labelled(self) -> bool:
        """Whether Optuna sees this choice's values as JSON labels (it stores only scalars)."""
        return self.kind == "choice" and not all(isinstance(c, SCALARS) for c in self.choices)

    def suggest(self, trial: Any) -> Any:
        """Draw a value from an Optuna trial (choices that Optuna cannot store travel as their index)."""
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        if not self.labelled:
            return trial.suggest_categorical(self.key, list(self.choices))
        labels = [json.dumps(c) for c in self.choices]
        return json.loads(trial.suggest_categorical(self.key, labels))


def parse_space(space: dict[str, dict[str, Any]]) -> list[Param]:
    """The ``tune.space`` mapping (already shape-checked by TuneConfig) as Params, conditions first."""
    params = []
    for key, spec in space.items():
        kind = next(k for k in spec if k != "when")
        values = spec[kind]
        when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in spec.get("when", {}).items()}
        if kind == "choice":
            params.append(Param(key, "choice", choices=tuple(values), when=when))
        else:
            params.append(
                Param(key, "int" if kind == "randint" else kind, float(values[0]), float(values[1]), when=when)
            )
    return _conditions_first(params)


def _conditions_first(params: list[Param]) -> list[Param]:
    # A key named in another key's `when` must be sampled before it.
    ordered: list[Param] = []
    pending = list(params)
    while pending:
        ready = [p for p in pending if not any(k in {q.key for q in pending if q is not p} for k in p.when)]
        if not ready:
            raise TunesmithError(f"tune.space: circular when conditions among {', '.join(p.key for p in pending)}")
        ordered.extend(ready)
        pending = [p for p in pending if p not in ready]
    return ordered


def sample(params: list[Param], trial: Any) -> dict[str, Any]:
    """Optuna's define-by-run function: only keys whose condition holds are sampled."""
    values: dict[str, Any] = {}
    for param in params:
        if param.applies(values):
            values[param.key] = param.suggest(trial)
    return values


def optuna_point(params: list[Param], point: dict[str, Any]) -> dict[str, Any]:
    """A tune.points entry as Optuna stores it (non-scalar choices as their JSON label)."""
    labelled = {p.key for p in params if p.labelled}
    return {k: json.dumps(v) if k in labelled else v for k, v in point.items()}


def base_mapping(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as a plain mapping, without the tune section: what each trial starts from."""
    raw = cfg.model_dump(mode="json")
    raw.pop("tune", None)
    return raw


def apply_sample(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each dotted key set; a new method.name keeps only the keys that method has."""
    raw = copy.deepcopy(base)
    if "method.name" in values and values["method.name"] != raw["method"].get("name"):
        fields = METHOD_CONFIGS.get(str(values["method.name"]))
        known = fields.model_fields if fields is not None else {}
        raw["method"] = {k: v for k, v in raw["method"].items() if k in known}
    for key, value in values.items():
        set_dotted(raw, key, value, f"tune.space.{key}")
    return raw


def trial_config(base: dict[str, Any], values: dict[str, Any], source: str = "tune.space") -> RunConfig:
    """Validate the config a sample makes (a TunesmithError naming the key when it is not a valid config)."""
    return validate_config(apply_sample(base, values), source=source)


def check_space(cfg: RunConfig, source: str) -> list[Param]:
    """Every searched key exists and every candidate value validates, before any trial starts.

    Each value is tried with its ``when`` condition applied and, for method keys, with every method the
    space can pick, so a key that does not fit one of them asks for a ``when`` instead of failing trials.
    """
    assert cfg.tune is not None
    params = parse_space(cfg.tune.space)
    base = base_mapping(cfg)
    searched = {p.key: p for p in params}
    for param in params:
        for key in param.when:
            if key not in searched:
                _check_key_exists(base, key, source)
        for fixed in _contexts(param, searched, base):
            for value in param.candidates():
                try:
                    trial_config(base, {**fixed, param.key: value}, source=f"{source}: tune.space")
                except TunesmithError as err:
                    raise TunesmithError(
                        _with_context(err, param, fixed), hint=_when_hint(param, fixed, searched)
                    ) from None
    for index, point in enumerate(cfg.tune.points):
        trial_config(base, point, source=f"{source}: tune.points[{index}]")
    return params


def _check_key_exists(base: dict[str, Any], key: str, source: str) -> None:
    node: Any = base
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise TunesmithError(f"{source}: tune.space: when names {key!r}, which is not a config key")
        node = node[part]


def _contexts(param: Param, searched: dict[str, Param], base: dict[str, Any]) -> list[dict[str, Any]]:
    # The settings of other keys a value must be valid with: its `when`, and each method the space can pick.
    fixed = {key: values[0] for key, values in param.when.items()}
    method = searched.get("method.name")
    if param.key.startswith("method.") and param.key != "method.name" and method and "method.name" not in fixed:
        return [{**fixed, "method.name": name} for name in method.choices]
    return [fixed]


def _with_context(err: TunesmithError, param: Param, fixed: dict[str, Any]) -> str:
    if not fixed:
        return err.message
    return f"{err.message} (with {', '.join(f'{k}={v}' for k, v in fixed.items())})"


def _when_hint(param: Param, fixed: dict[str, Any], searched: dict[str, Param]) -> str | None:
    if "method.name" not in fixed or "method.name" in param.when:
        return None
    field_name = param.key.split(".", 1)[1]
    names = [
        n for n in searched["method.name"].choices if field_name in getattr(METHOD_CONFIGS.get(n), "model_fields", {})
    ]
    return f"sample it only for the methods that have it: when: {{method.name: [{', '.join(map(str, names))}]}}"
