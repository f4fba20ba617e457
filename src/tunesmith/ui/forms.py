"""The New-run form: its fields (help and defaults read from the pydantic config), form -> config, errors per field.

Every value goes through the same validation as a YAML file given to the CLI (``validate_config``), and each
field's message is the one the CLI prints for that key.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tunesmith.config import (
    METHOD_CONFIGS,
    REWARD_OPTIONS,
    RewardConfig,
    RunConfig,
    Task,
    TrainConfig,
    set_dotted,
    validate_config,
)
from tunesmith.data.forms import FORMS
from tunesmith.errors import TunesmithError
from tunesmith.rewards import REWARDS
from tunesmith.train.objectives import OBJECTIVES
from tunesmith.ui.paths import safe_path

SOURCE = "form"
GENERAL = "form"  # errors that belong to no single field
_MORE = re.compile(r" \(and \d+ more\)$")
_MAX_ROUNDS = 12
NO_TABLE = "data.train: no table yet: upload one, or name a file under the data folder"


@dataclass(frozen=True)
class FormField:
    """One input of the New-run form, bound to a dotted config key."""

    key: str
    kind: str = "text"  # text | textarea | number | select | checkbox
    choices: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()  # shown only for these tasks (empty: all)
    methods: tuple[str, ...] = ()  # shown only for these methods (empty: all)
    group: str = "data"  # the form section it is shown in
    objectives: tuple[str, ...] = ()  # shown only for these train.objective values (empty: all)
    reward: str = ""  # an option of this reward: shown only while the reward is picked

    @property
    def id(self) -> str:
        """An HTML id (no dots, so CSS selectors need no escaping)."""
        return self.key.replace(".", "-")

    @property
    def help(self) -> str:
        """The config field's description."""
        if self.key.startswith(REWARD_PREFIX):
            return _reward_help(self.key)
        info = _field_info(self.key)
        return (info.description if info is not None else None) or METHOD_HELP.get(self.key, "")

    @property
    def default(self) -> str:
        """The config's default, as the form shows it ('' when required or unset)."""
        info = None if self.key.startswith(REWARD_PREFIX) else _field_info(self.key)
        if info is None or info.default is PydanticUndefined or info.default is None:
            return ""
        return str(info.default)

    def task_defaults(self) -> dict[str, str]:
        """What this field defaults to under each task (the page switches placeholders when the task changes)."""
        return {task: TASK_DEFAULTS.get(task, {}).get(self.key) or self.default for task in typing.get_args(Task)}

    def applies(self, task: str, method: str, objective: str = "sft") -> bool:
        """Whether this field is part of a config for ``task``, ``method`` and ``objective``."""
        return (
            (not self.tasks or task in self.tasks)
            and (not self.methods or method in self.methods)
            and (not self.objectives or objective in self.objectives)
        )


METHOD_HELP = {
    "method.name": "How the model is tuned: "
    + "; ".join(f"{name}: {(cls.__doc__ or '').strip().rstrip('.')}" for name, cls in METHOD_CONFIGS.items()),
}
ADAPTERS = ("lora", "dora")
GROUPS = {
    "data": "1. Data",
    "templates": "2. Task and templates",
    "model": "3. Model and method",
    "train": "4. Training",
    "rewards": "5. Rewards and sampling (train.objective grpo)",
}
_SCHEDULERS = typing.get_args(TrainConfig.model_fields["lr_scheduler"].annotation)
# The data forms this page has fields for (preference pairs have none yet), asked of the registries: which
# objectives the page offers, which of them sample and reward answers, and where each data key applies.
_PAGE_FORMS = ("prompt_response", "source_target", "text_label", "conversation", "prompt_only")
PAGE_OBJECTIVES = tuple(name for name, o in OBJECTIVES.items() if set(o.forms) <= set(_PAGE_FORMS))
REWARD_OBJECTIVES = tuple(name for name in PAGE_OBJECTIVES if "prompt_only" in OBJECTIVES[name].forms)
_OBJECTIVE_TASKS = tuple(
    sorted({t for f in FORMS.values() if set(f.objectives) & set(REWARD_OBJECTIVES) for t in f.tasks})
)
REWARD_PREFIX = "rewards."  # rewards.<name> (picked), rewards.<name>.weight, rewards.<name>.<option>
PAGE_REWARDS = tuple(name for name in REWARD_OPTIONS if name in REWARDS and name != "python")  # no code from a form
_LIST_OPTIONS = ("columns", "must", "must_not", "labels")  # one per line (columns and labels: commas too)


def _reward_fields() -> tuple[FormField, ...]:
    fields: list[FormField] = []
    for name in PAGE_REWARDS:
        shown = {"objectives": REWARD_OBJECTIVES, "group": "rewards"}
        fields.append(FormField(f"{REWARD_PREFIX}{name}", "checkbox", **shown))  # type: ignore[arg-type]
        for option in ("weight", *REWARD_OPTIONS[name]):
            kind = "textarea" if option in (*_LIST_OPTIONS, "schema") else "text"
            kind = "number" if option in ("min_words", "max_words") else kind
            fields.append(FormField(f"{REWARD_PREFIX}{name}.{option}", kind, reward=name, **shown))  # type: ignore[arg-type]
    return tuple(fields)


def _reward_help(key: str) -> str:
    name, _, option = key.removeprefix(REWARD_PREFIX).partition(".")
    if not option:
        return " ".join((REWARDS[name].__doc__ or "").split("\n\n")[0].split())
    info = RewardConfig.model_fields["schema_" if option == "schema" else option]
    extra = {"schema": " (JSON)", "columns": " One per line, or separated by commas."}.get(option, "")
    extra = " One pattern per line." if option in ("must", "must_not") else extra
    return (info.description or "") + extra


FIELDS: tuple[FormField, ...] = (
    FormField("data.train"),
    FormField("task", "select", typing.get_args(Task), group="templates"),
    FormField("train.objective", "select", PAGE_OBJECTIVES, tasks=_OBJECTIVE_TASKS, group="templates"),
    # A conversation table: its messages column (and tools column) instead of the prompt/response templates.
    FormField("data.messages", tasks=("causal_lm",), group="templates", objectives=FORMS["conversation"].objectives),
    FormField("data.tools", tasks=("causal_lm",), group="templates", objectives=FORMS["conversation"].objectives),
    FormField("data.loss_on", tasks=("causal_lm",), group="templates", objectives=FORMS["prompt_response"].objectives),
    FormField("data.prompt", "textarea", tasks=("causal_lm",), group="templates"),
    FormField("data.response", "textarea", tasks=("causal_lm",), group="templates"),
    FormField("data.system", "textarea", tasks=("causal_lm",), group="templates"),
    FormField("data.source", "textarea", tasks=("seq2seq",), group="templates"),
    FormField("data.target", "textarea", tasks=("seq2seq",), group="templates"),
    FormField("data.text", "textarea", tasks=("classification",), group="templates"),
    FormField("data.label", tasks=("classification",), group="templates"),
    FormField("data.max_length", "number", group="templates"),
    FormField("data.eval_fraction", "number", group="templates"),
    FormField("model.name", group="model"),
    FormField("method.name", "select", tuple(METHOD_CONFIGS), group="model"),
    FormField("method.r", "number", methods=ADAPTERS, group="model"),
    FormField("method.alpha", "number", methods=ADAPTERS, group="model"),
    FormField("name", group="train"),
    FormField("train.max_steps", "number", group="train"),
    FormField("train.epochs", "number", group="train"),
    FormField("train.learning_rate", group="train"),
    FormField("train.lr_scheduler", "select", _SCHEDULERS, group="train"),
    FormField("train.batch_size", "number", group="train"),
    FormField("train.logging_steps", "number", group="train"),
    FormField("train.save_steps", "number", group="train"),
    FormField("train.eval_steps", "number", group="train"),
    FormField("eval.max_new_tokens", "number", group="train"),
    FormField("train.grpo.num_generations", "number", objectives=REWARD_OBJECTIVES, group="rewards"),
    FormField("train.grpo.max_new_tokens", "number", objectives=REWARD_OBJECTIVES, group="rewards"),
    FormField("train.grpo.temperature", "number", objectives=REWARD_OBJECTIVES, group="rewards"),
    FormField("train.beta", "number", objectives=REWARD_OBJECTIVES, group="rewards"),
    *_reward_fields(),
)
FIELD_KEYS = frozenset(field.key for field in FIELDS)

# What an empty field means, per task: the settings of the examples (examples/*/config.yaml), not the config's
# one-size defaults (LoRA at 2e-4 suits a causal LM; a MiniLM classifier tuned that way was reported at 0.61
# held-out accuracy on examples/sentiment). A classification run with these defaults on that data trains exactly
# as the example does (the same eval_loss and accuracy, 0.8333 here in bf16). They land in the YAML shown, so the
# file Download saves trains what Launch does.
TASK_DEFAULTS: dict[str, dict[str, str]] = {
    "causal_lm": {  # examples/marketing-copy, examples/customer-service
        "model.name": "smollm2-135m-instruct", "method.name": "lora", "method.r": "16", "method.alpha": "32",
        "train.learning_rate": "3.0e-4", "train.epochs": "2", "train.batch_size": "8",
    },
    "seq2seq": {  # examples/summarization (its model is a hub id: no embedded seq2seq model)
        "method.name": "freeze", "train.learning_rate": "3.0e-4", "train.epochs": "3", "train.batch_size": "8",
    },
    "classification": {  # examples/sentiment, examples/intent
        "model.name": "minilm-l6", "method.name": "full", "train.learning_rate": "5.0e-5", "train.epochs": "4",
        "train.batch_size": "16", "train.warmup_ratio": "0.1",
    },
}  # fmt: skip


def task_default(task: str, key: str) -> str:
    """The value an empty field ``key`` takes for ``task`` ('' when the config's own default applies)."""
    return TASK_DEFAULTS.get(task, {}).get(key, "")


def _field_info(key: str) -> Any:
    *sections, name = key.split(".")
    model: type[BaseModel] = RunConfig
    for section in sections:
        if section == "method":
            model = METHOD_CONFIGS["lora"]
            continue
        annotation = model.model_fields[section].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    return model.model_fields.get(name)


def raw_config(form: Mapping[str, str], data_root: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The config mapping a form describes (empty fields keep their defaults), and errors found on the way."""
    task = form.get("task") or "causal_lm"
    method = form.get("method.name") or task_default(task, "method.name") or "lora"
    objective = form.get("train.objective") or "sft"
    raw: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in FIELDS:
        value = (form.get(field.key) or "").strip() or task_default(task, field.key)
        if not value or not field.applies(task, method, objective) or field.key.startswith(REWARD_PREFIX):
            continue
        try:
            set_dotted(raw, field.key, _parse(field, value, data_root), SOURCE)
        except TunesmithError as err:
            errors[field.key] = str(err)
    # Task defaults without a field of their own (warmup), unless a field already set the section's value.
    for key, value in TASK_DEFAULTS.get(task, {}).items():
        if key not in FIELD_KEYS:
            section, _, name = key.partition(".")
            raw.setdefault(section, {}).setdefault(name, yaml.safe_load(value))
    if objective in REWARD_OBJECTIVES and task in _OBJECTIVE_TASKS:
        raw.setdefault("train", {})["rewards"] = _rewards(form, errors)
    return raw, errors


def _rewards(form: Mapping[str, str], errors: dict[str, str]) -> list[dict[str, Any]]:
    """train.rewards from the picked rewards' fields, in the page's order."""
    rewards = []
    for name in PAGE_REWARDS:
        if (form.get(f"{REWARD_PREFIX}{name}") or "").strip().lower() not in ("on", "true", "1", "yes"):
            continue
        entry: dict[str, Any] = {"name": name}
        for option in ("weight", *REWARD_OPTIONS[name]):
            key = f"{REWARD_PREFIX}{name}.{option}"
            value = (form.get(key) or "").strip()
            if not value:
                continue
            try:
                entry[option] = _reward_option(key, option, value)
            except TunesmithError as err:
                errors[key] = str(err)
        rewards.append(entry)
    return rewards


def _reward_option(key: str, option: str, value: str) -> Any:
    if option in _LIST_OPTIONS:
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        if option in ("columns", "labels") and len(lines) == 1:
            lines = [part.strip() for part in lines[0].split(",") if part.strip()]
        return lines  # regex patterns stay text: a comma or a colon in one is no separator
    if option == "column":
        return value
    try:
        return yaml.safe_load(value)  # numbers; a schema as JSON (YAML reads JSON)
    except yaml.YAMLError as err:
        raise TunesmithError(f"{key}: cannot read {value!r}: {getattr(err, 'problem', err)}") from err


def _parse(field: FormField, value: str, data_root: Path) -> Any:
    if field.key == "data.train":
        return str(safe_path(data_root, value, "data.train"))
    if field.key == "model.name":
        return _model_name(value, data_root)
    if field.kind == "textarea" or field.key in ("name", "data.label", "data.messages", "data.tools"):
        return value  # templates and names are text, never parsed
    try:
        # The same parsing as `--set key=value` on the command line.
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise TunesmithError(f"{field.key}: cannot read {value!r}: {getattr(err, 'problem', err)}") from err


def _model_name(value: str, data_root: Path) -> str:
    # A local folder must lie under the data root; anything else is an embedded alias or a hub id.
    looks_local = value.startswith((".", "/", "~", "\\")) or (data_root / value).exists()
    return str(safe_path(data_root, value, "model.name")) if looks_local else value


def validate_form(raw: dict[str, Any], errors: dict[str, str]) -> tuple[RunConfig | None, dict[str, str]]:
    """Validate like the CLI; every problem is reported next to its field, in the CLI's words.

    ``validate_config`` reports the first problem; dropping that key (its default applies) and validating
    again finds the next one, so each message is exactly the one the CLI prints for that key.
    """
    trial = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy to drop keys from
    for _ in range(_MAX_ROUNDS):
        try:
            config = validate_config(trial, source=SOURCE)
        except TunesmithError as err:
            message = _MORE.sub("", str(err).removeprefix(f"{SOURCE}: "))
            key = field_of(message, trial)
            if message == "data.train: required key is missing":
                # In the form this is no missing key: no table has been picked (or an upload was refused).
                message = NO_TABLE
            errors.setdefault(key, message)
            if key.startswith(REWARD_PREFIX):
                _drop_reward(trial, message)
                continue
            if key == GENERAL or not _drop(trial, key):
                return None, errors
            continue
        return (config if not errors else None), errors
    return None, errors


_REWARD_KEY = re.compile(r"^(?:\w+: )?train\.rewards\.(\d+)(?:\.(\w+)(?:\.\d+)*)?:(?: (\w+):)?")


def field_of(message: str, raw: Mapping[str, Any] | None = None) -> str:
    """The form field a one-line error names (``train.learning_rate: ...``), or GENERAL.

    ``train.rewards.N...`` names the picked reward N of ``raw`` (the config mapping the form made): its option's
    field where the message names one, else the reward's own.
    """
    found = _REWARD_KEY.match(message)
    if found and raw is not None:
        rewards = (raw.get("train") or {}).get("rewards") or []
        index = int(found.group(1))
        if index < len(rewards):
            reward = f"{REWARD_PREFIX}{rewards[index].get('name')}"
            for option in found.group(2, 3):
                if option and f"{reward}.{option}" in FIELD_KEYS:
                    return f"{reward}.{option}"
            return reward if reward in FIELD_KEYS else GENERAL
    head = message.removeprefix("unknown key ").split(":", 1)[0].split(" ", 1)[0].strip()
    return head if head in FIELD_KEYS else GENERAL


def _drop_reward(raw: dict[str, Any], message: str) -> None:
    # The reward an error named leaves the trial, so that validating again finds the next problem.
    found = _REWARD_KEY.match(message)
    if found:
        raw["train"]["rewards"].pop(int(found.group(1)))


def _drop(raw: dict[str, Any], key: str) -> bool:
    node: Any = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


def config_yaml(raw: dict[str, Any]) -> str:
    """The config the form describes, as the YAML file a user could pass to ``tunesmith train``."""
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
