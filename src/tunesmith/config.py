"""The run config: one YAML file describes a fine-tuning job, validated here with pydantic.

Every field carries a description that doubles as documentation. Errors name the file and the dotted
key, and unknown keys get a did-you-mean.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith.errors import TunesmithError

Task = Literal["causal_lm", "seq2seq", "classification"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Objective = Literal["sft", "dpo", "orpo", "simpo", "kto", "grpo"]


class _Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which pre-trained model to start from."""

    name: str = Field(
        "smollm2-135m-instruct",
        description="An embedded alias (smollm2-135m-instruct, minilm-l6), a Hugging Face hub id, "
        "a local Hugging Face directory, or a local .gguf file.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the weights to run.")
    attn_implementation: str | None = Field(
        None, description="Attention kernel (sdpa, eager, flash_attention_2); None lets transformers pick."
    )


class DataConfig(_Section):
    """Where the examples come from and how each row becomes text the model sees."""

    train: Path = Field(..., description="Training table: .csv, .tsv, .jsonl/.json or .parquet.")
    eval: Path | None = Field(None, description="Separate eval table; when unset, eval_fraction is split off.")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of rows held out for eval.")
    split_seed: int = Field(42, description="Seed of the train/eval split.")
    prompt: str | None = Field(None, description="Prompt template with {column} placeholders (causal_lm).")
    response: str | None = Field(None, description="Response template with {column} placeholders (causal_lm).")
    system: str | None = Field(
        None,
        description="System prompt, used when the tokenizer has a chat template. Unset: the template's own default, "
        "if it has one (SmolLM2's adds ~30 tokens to every row); an empty string: no system prompt at all.",
    )
    source: str | None = Field(None, description="Input template with {column} placeholders (seq2seq).")
    target: str | None = Field(None, description="Output template with {column} placeholders (seq2seq).")
    text: str | None = Field(None, description="Text template with {column} placeholders (classification).")
    label: str | None = Field(None, description="Column holding the class label (classification).")
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto", description="Render through the tokenizer's chat template: auto uses it when one exists."
    )
    max_length: int = Field(
        512,
        ge=8,
        description="Tokens per example; longer rows are truncated and counted (a conversation is cut after the "
        "last assistant turn that fits).",
    )
    loss_on: Literal["response", "all", "last"] = Field(
        "response",
        description="Which tokens carry loss: the response (default; in a conversation every assistant turn, its "
        "tool calls and end-of-turn token), all of the example, or last (a conversation's final assistant turn).",
    )
    # Conversations (task causal_lm): one column holds each row's messages; see _check_conversation below.
    messages: str | None = Field(
        None,
        description="Column holding a conversation per row: a list of messages in the OpenAI shape (role, content, "
        "tool_calls, tool_call_id) or the ShareGPT shape (from, value); in CSV, that list as a JSON string.",
    )
    tools: str | None = Field(
        None,
        description="Column holding the OpenAI function schemas the conversation may call (a list, or a JSON string "
        "of one); needs data.messages.",
    )
    # Preference objectives (train.objective dpo, orpo, simpo, kto): see PreferenceData below.
    chosen: str | None = Field(None, description="Preferred answer template with {column} placeholders (dpo...).")
    rejected: str | None = Field(None, description="Dispreferred answer template with {column} placeholders.")
    desirable: str | None = Field(
        None, description="KTO without pairs: boolean column saying whether data.response is a desirable answer."
    )


class EvalConfig(_Section):
    """How evaluation and generation run."""

    batch_size: int = Field(
        32,
        ge=1,
        description="Rows per generation / evaluation batch. Decoding reads every weight once per step whatever "
        "the batch, so larger batches answer faster until the machine is compute-bound (a 135M model on 2 CPU "
        "cores: 32 rows answer 2.1x faster than 8).",
    )
    max_new_tokens: int = Field(96, ge=1, description="Longest generated answer, in tokens.")
    generate_samples: int = Field(
        32, ge=1, description="Eval rows answered at each evaluation during training to compute eval.metrics."
    )
    metrics: list[str] | None = Field(
        None,
        description="Metrics tunesmith eval reports, also computed at every evaluation during training when set; "
        "unset: the task's defaults, after training only "
        "(causal_lm, seq2seq: bleu, chrf, rouge, exact_match; classification: accuracy, macro_f1; conversations: "
        "tool_calls and the causal_lm ones, scored per assistant turn).",
    )
    loss_references: Literal["first", "all"] = Field(
        "first",
        description="tunesmith eval's teacher-forced loss: over the first reference of each input (first), or "
        "over every reference (all; with 8 references an input it took 2.2x as long as generating the answers).",
    )


# The built-in rewards (train.rewards[].name) and the options each one reads; ``tunesmith.rewards`` implements
# each (a test keeps the two in step). Options not listed for a reward are errors, so a typo never goes unread.
REWARD_OPTIONS: dict[str, tuple[str, ...]] = {
    "chrf": ("column",),
    "bleu": ("column",),
    "rouge": ("column",),
    "exact_match": ("column",),
    "contains_columns": ("columns",),
    "regex": ("must", "must_not"),
    "json_schema": ("schema",),
    "tool_call": ("column",),
    "label": ("column", "labels"),
    "length": ("min_words", "max_words"),
    "python": ("function",),
}
_REWARD_KEYS = ("column", "columns", "must", "must_not", "schema", "labels", "min_words", "max_words", "function")


class RewardConfig(_Section):
    """One reward of train.objective grpo: a built-in check of each completion (or your own function), weighted."""

    name: str = Field(..., description=f"Which reward: {', '.join(REWARD_OPTIONS)}.")
    weight: float = Field(1.0, description="Weight of this reward in the sum GRPO maximises.")
    column: str | None = Field(
        None,
        description="chrf, bleu, rouge, exact_match: the reference column (unset: the data.response template); "
        "tool_call: the column of reference calls ({name, arguments} JSON); label: the column of the right label.",
    )
    columns: list[str] | None = Field(
        None, description="contains_columns: the columns whose values the answer must mention (the share found)."
    )
    must: list[str] | None = Field(None, description="regex: patterns the answer must match (the share matched).")
    must_not: list[str] | None = Field(None, description="regex: patterns the answer must not match.")
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="json_schema: the JSON Schema the answer (a JSON value) must match."
    )
    labels: list[str] | None = Field(None, description="label: the allowed labels (the answer's first one counts).")
    min_words: int | None = Field(None, ge=0, description="length: fewest words for full reward.")
    max_words: int | None = Field(None, ge=1, description="length: most words for full reward.")
    function: str | None = Field(
        None,
        description="python: module:function called as f(prompts, completions, **columns) -> list of floats; "
        "needs train.allow_code_rewards.",
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _options_fit_the_reward(self) -> RewardConfig:
        if self.name not in REWARD_OPTIONS:
            close = difflib.get_close_matches(self.name, REWARD_OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(REWARD_OPTIONS)}"
            raise ValueError(f"unknown reward {self.name!r}; {hint}")
        allowed = REWARD_OPTIONS[self.name]
        for key in _REWARD_KEYS:
            if getattr(self, "schema_" if key == "schema" else key) is not None and key not in allowed:
                raise ValueError(f"{key} does not apply to reward {self.name} (it reads {', '.join(allowed)})")
        _check_reward_options(self)
        return self


def _check_reward_options(reward: RewardConfig) -> None:
    name = reward.name
    if name == "contains_columns" and not reward.columns:
        raise ValueError("contains_columns needs columns: [the columns the answer must mention]")
    if name == "regex":
        if not (reward.must or reward.must_not):
            raise ValueError("regex needs must: [patterns] and/or must_not: [patterns]")
        for key, patterns in (("must", reward.must), ("must_not", reward.must_not)):
            for pattern in patterns or []:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(f"{key}: {pattern!r} is not a regular expression: {err}") from err
    if name == "json_schema":
        if reward.schema_ is None:
            raise ValueError("json_schema needs schema: {a JSON Schema}")
        _check_json_schema(reward.schema_)
    if name == "tool_call" and not reward.column:
        raise ValueError("tool_call needs column: the column holding each row's reference call")
    if name == "label" and not reward.column:
        raise ValueError("label needs column: the column holding each row's right label")
    if name == "length":
        if reward.min_words is None and reward.max_words is None:
            raise ValueError("length needs min_words and/or max_words")
        if reward.min_words is not None and reward.max_words is not None and reward.min_words > reward.max_words:
            raise ValueError(f"min_words {reward.min_words} is above max_words {reward.max_words}")
    if name == "python" and (not reward.function or not re.fullmatch(r"[\w.]+:\w+", reward.function)):
        raise ValueError(f"python needs function: module:function (got {reward.function!r})")


def _check_json_schema(schema: dict[str, Any]) -> None:
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as err:
        where = "/".join(str(p) for p in err.path) or "top level"
        raise ValueError(f"schema is not a valid JSON Schema ({where}): {err.message}") from err


GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")  # TRL 1.16's, less luspo/vespo (sequence level)


class GrpoSettings(_Section):
    """GRPO (train.objective grpo): how many answers are sampled per prompt, and how."""

    num_generations: int = Field(
        4,
        ge=2,
        description="Answers sampled per prompt; each is scored against the others of its group. train.batch_size "
        "x train.grad_accum counts answers, so it must be a multiple of this.",
    )
    max_new_tokens: int = Field(64, ge=1, description="Longest sampled answer, in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the answers.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the answers.")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group's reward spread (group), the batch's, or not (none)."
    )


class TrainConfig(_Section):
    """The optimisation: schedule, batch, precision, checkpoints."""

    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up.")
    batch_size: int = Field(8, ge=1, description="Examples per device per step.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 turns clipping off).")
    seed: int = Field(42, description="Seed for weights init of new parts, dropout and data order.")
    precision: Precision = Field(
        "auto", description="auto: bf16 where the CPU/GPU supports it, else fp32; or bf16, fp16, fp32."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    packing: bool = Field(
        True, description="Causal LM: concatenate rows without padding, attention kept inside each row."
    )
    logging_steps: int = Field(5, ge=1, description="Log loss every N steps.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps; unset: once per epoch.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (for --resume).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without eval-loss improvement."
    )
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    select_by: str = Field(
        "eval_loss",
        description="Metric that picks the best checkpoint and drives early stopping: eval_loss, or a task "
        "metric computed during training (bleu, rouge, ... listed in eval.metrics; accuracy, macro_f1).",
    )
    distributed: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="Engine when several processes train (--nproc): ddp, fsdp or deepspeed."
    )
    fsdp_sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = Field(
        "full_shard", description="FSDP sharding strategy."
    )
    fsdp_wrap: list[str] | None = Field(
        None, description="FSDP auto-wrap block class names (e.g. LlamaDecoderLayer); unset: the model's own."
    )
    deepspeed_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    deepspeed_offload: bool = Field(
        False, description="DeepSpeed: offload optimizer state (and stage-3 weights) to CPU."
    )
    class_weights: Literal["none", "auto"] = Field(
        "none",
        description="Classification: auto weighs the training loss by inverse class frequency (imbalanced labels); "
        "eval_loss stays the unweighted mean per eval row.",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    # Preference tuning (TRL); the checks are in _check_preference below.
    objective: Objective = Field(
        "sft",
        description="sft: supervised (prompt -> response); dpo, orpo, simpo: pairs of a chosen and a rejected "
        "answer (data.chosen, data.rejected); kto: pairs, or single answers with a boolean data.desirable column.",
    )
    beta: float | None = Field(
        None,
        ge=0,
        description="Preference strength: how far the model may move from the reference (dpo, kto) or the weight "
        "of the preference term (orpo, simpo); grpo: the KL penalty to the starting model (0 allowed: no "
        "reference model). Unset: dpo/orpo/kto 0.1, simpo 2.0, grpo 0.0.",
    )
    loss_type: str | None = Field(
        None,
        description="DPO loss (TRL): sigmoid (default), ipo, hinge, robust, sigmoid_norm, apo_zero, ...; GRPO loss: "
        "dapo (default), grpo, dr_grpo, bnpo, cispo, sapo.",
    )
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO target reward margin.")
    # GRPO (train.objective grpo): rewards and sampling; the checks are in _check_grpo below.
    rewards: list[RewardConfig] = Field(
        default_factory=list, description="grpo: the rewards, each {name, weight, options}; their weighted sum."
    )
    grpo: GrpoSettings = Field(default_factory=lambda: GrpoSettings())
    allow_code_rewards: bool = Field(
        False, description="Allow train.rewards entries of name python (they run your code, like trust_remote_code)."
    )


class ExportConfig(_Section):
    """What is written to the run's model/ directory."""

    merge: bool = Field(False, description="Also write the adapter merged into full weights (model/merged).")


class TrackConfig(_Section):
    """Experiment trackers that also receive the run's logs (the run directory stays the record)."""

    tensorboard: bool = Field(
        False, description="Write TensorBoard event files to <run dir>/tensorboard (tensorboard --logdir runs/)."
    )
    mlflow: bool = Field(False, description="Log params and metrics to an MLflow run named after the run directory.")
    mlflow_tracking_uri: str | None = Field(
        None,
        description="Where MLflow stores runs (sqlite:///mlflow.db, http://host:5000); unset: MLFLOW_TRACKING_URI "
        "or MLflow's own default. A relative sqlite path is relative to the working directory.",
    )
    mlflow_experiment: str | None = Field(None, description="MLflow experiment; unset: the config's name.")


class MethodSettings(_Section):
    """What every method's settings share: ``name`` picks the method (and the settings class)."""

    name: str


class FullMethod(MethodSettings):
    """Update every weight."""

    name: Literal["full"] = "full"


class FreezeMethod(MethodSettings):
    """Train everything except the frozen parts."""

    name: Literal["freeze"] = "freeze"
    embeddings: bool = Field(True, description="Freeze the input embeddings.")
    layers: int = Field(0, ge=0, description="Freeze the first N transformer blocks.")
    modules: list[str] = Field(default_factory=list, description="Freeze parameters whose name contains one.")
    regex: str | None = Field(None, description="Freeze parameters whose name matches this regex.")
    encoder: bool = Field(False, description="Encoder-decoder models: freeze the whole encoder.")


class LoraMethod(MethodSettings):
    """Low-rank adapters (peft)."""

    name: Literal["lora"] = "lora"
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the adapter input (0 by default: on CPU it costs a sixth of a step)."
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear."
    )


class DoraMethod(LoraMethod):
    """Weight-decomposed low-rank adapters (peft LoRA with use_dora)."""

    name: Literal["dora"] = "dora"  # type: ignore[assignment]


class IA3Method(MethodSettings):
    """(IA)^3: learned rescaling vectors (peft)."""

    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(None, description="Modules to rescale; None: peft's default.")
    feedforward_modules: list[str] | None = Field(None, description="Which of them are feed-forward.")


class PromptTuningMethod(MethodSettings):
    """Learned soft prompt tokens (peft)."""

    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, ge=1, description="Soft prompt length.")
    init_text: str | None = Field(None, description="Initialise the soft prompt from this text.")


class PrefixTuningMethod(MethodSettings):
    """Learned key/value prefixes in every layer (peft)."""

    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(20, ge=1, description="Prefix length.")


# The one list of method settings; the union below and `tunesmith.methods` (which registers an implementation
# against each class) both read it, and a test checks that every class here has exactly one implementation.
METHOD_CONFIG_CLASSES: tuple[type[MethodSettings], ...] = (
    FullMethod,
    FreezeMethod,
    LoraMethod,
    DoraMethod,
    IA3Method,
    PromptTuningMethod,
    PrefixTuningMethod,
)
METHOD_CONFIGS: dict[str, type[MethodSettings]] = {
    cls.model_fields["name"].default: cls for cls in METHOD_CONFIG_CLASSES
}

if TYPE_CHECKING:
    MethodConfig = MethodSettings  # the static view: what every method's settings share
else:
    MethodConfig = Annotated[Union[METHOD_CONFIG_CLASSES], Field(discriminator="name")]  # noqa: UP007


class TuneResources(_Section):
    """What one trial reserves on the Ray cluster."""

    cpu: float = Field(1.0, gt=0, description="CPU cores per trial (per worker when workers > 1).")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial (per worker when workers > 1; fractions share one).")
    workers: int = Field(
        1,
        ge=1,
        description="Training processes per trial. Above 1, each trial is a Ray Train TorchTrainer run: that many "
        "data-parallel workers (gloo on CPU, NCCL on GPUs), possibly on several machines; train.batch_size is per "
        "worker.",
    )


class TuneScheduler(_Section):
    """Which trials stop early: ASHA compares trials at each evaluation and stops the weak ones."""

    name: Literal["asha", "fifo"] = Field("asha", description="asha stops weak trials early; fifo runs all.")
    grace_period: int = Field(1, ge=1, description="Evaluations every trial runs before ASHA may stop it.")
    reduction_factor: float = Field(
        2.0, gt=1, description="ASHA keeps the best 1/reduction_factor of trials at each rung."
    )


class TuneConfig(_Section):
    """Hyperparameter search (tunesmith tune): a search space over config keys, run on Ray Tune."""

    space: dict[str, dict[str, Any]] = Field(
        ...,
        description="Dotted config key -> distribution: {loguniform: [lo, hi]}, {uniform: [lo, hi]}, "
        "{int: [lo, hi]} (inclusive; randint is the same), {choice: [a, b, ...]}; add when: {method.name: lora} "
        "to sample a key only for some values of another.",
    )
    num_trials: int = Field(8, ge=1, description="Configurations sampled (skipped and failed ones count).")
    metric: str | None = Field(
        None,
        description="What the study optimises: eval_loss or a task metric (bleu, rougeL, accuracy...); unset: the "
        "objective's own score (eval_loss; grpo: reward, the mean weighted reward of the eval prompts' answers).",
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="min or max; unset: min for losses and perplexity, max for everything else."
    )
    search: Literal["optuna", "random"] = Field(
        "optuna", description="optuna: TPE (learns from finished trials); random: independent samples."
    )
    seed: int = Field(0, description="Seed of the sampler.")
    points: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Configurations tried first (dotted key -> value), e.g. the config's own values.",
    )
    evaluations: int = Field(
        4, ge=1, description="Evaluations per trial (train.eval_steps is set to spread them over the run)."
    )
    scheduler: TuneScheduler = Field(default_factory=lambda: TuneScheduler())
    resources_per_trial: TuneResources = Field(default_factory=lambda: TuneResources())
    max_concurrent: int = Field(1, ge=1, description="Trials run at the same time.")

    @field_validator("space")
    @classmethod
    def _space_is_well_formed(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not value:
            raise ValueError("the search space is empty; add e.g. train.learning_rate: {loguniform: [1e-5, 1e-3]}")
        for key, spec in value.items():
            _check_distribution(key, spec)
        return value


DISTRIBUTIONS = ("loguniform", "uniform", "int", "randint", "choice")


def _check_distribution(key: str, spec: dict[str, Any]) -> None:
    # The shape of one search-space entry; whether the key exists is checked against RunConfig by tunesmith tune.
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    extra = [k for k in spec if k not in (*DISTRIBUTIONS, "when")]
    if len(kinds) != 1 or extra:
        raise ValueError(f"{key}: expected one of {', '.join(DISTRIBUTIONS)} (and optionally when), got {list(spec)}")
    kind, values = kinds[0], spec[kinds[0]]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ValueError(f"{key}: the choice list is empty")
    elif not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, int | float) for v in values)):
        raise ValueError(f"{key}: {kind} needs [low, high] numbers, got {values!r}")
    elif values[0] > values[1]:
        raise ValueError(f"{key}: low bound {values[0]} is above the high bound {values[1]}")
    elif kind == "loguniform" and values[0] <= 0:
        raise ValueError(f"{key}: loguniform needs a positive low bound, got {values[0]}")
    elif kind in ("int", "randint") and not all(float(v).is_integer() for v in values):
        raise ValueError(f"{key}: {kind} needs whole-number bounds, got {values!r}")
    when = spec.get("when", {})
    if not isinstance(when, dict) or not all(isinstance(k, str) for k in when):
        raise ValueError(f"{key}: when must map dotted keys to a value or a list of values, e.g. {{method.name: lora}}")


# --- Preference objectives: the knobs' defaults and the checks, in one place. ---
DEFAULT_BETA = {"dpo": 0.1, "orpo": 0.1, "simpo": 2.0, "kto": 0.1, "grpo": 0.0}  # TRL's, the SimPO paper's 2.0
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)  # fmt: skip


def _check_preference(cfg: RunConfig) -> None:
    """train.objective dpo/orpo/simpo/kto: the task, the data templates and the knobs that apply."""
    _check_not_grpo(cfg)
    objective, data, train = cfg.train.objective, cfg.data, cfg.train
    if cfg.task != "causal_lm":
        raise ValueError(f"train.objective {objective} needs task causal_lm (got task {cfg.task})")
    if not data.prompt:
        raise ValueError(f"data.prompt is required for train.objective {objective}")
    pairs = bool(data.chosen and data.rejected)
    if bool(data.chosen) != bool(data.rejected):
        missing = "data.rejected" if data.chosen else "data.chosen"
        raise ValueError(f"{missing} is required with {'data.chosen' if data.chosen else 'data.rejected'}")
    if objective != "kto" and not pairs:
        raise ValueError(
            f"data.chosen and data.rejected are required for train.objective {objective} "
            "(templates of the preferred and the dispreferred answer)"
        )
    if objective == "kto" and not pairs and not (data.response and data.desirable):
        raise ValueError(
            "train.objective kto needs data.chosen + data.rejected, or data.response + data.desirable "
            "(the boolean column that says whether the response is desirable)"
        )
    if train.beta == 0:
        raise ValueError(f"train.beta must be above 0 for train.objective {objective} (0 is for grpo only)")
    if train.loss_type is not None and objective != "dpo":
        raise ValueError(f"train.loss_type applies to train.objective dpo only (objective is {objective})")
    if train.loss_type is not None and train.loss_type not in DPO_LOSS_TYPES:
        known = ", ".join(DPO_LOSS_TYPES)
        raise ValueError(f"train.loss_type: unknown DPO loss {train.loss_type!r}; choose one of {known}")


def _check_supervised(cfg: RunConfig) -> None:
    """train.objective sft: each task's (input, target) templates."""
    _check_not_grpo(cfg)
    for key in TASK_DATA_KEYS[cfg.task]:
        if not getattr(cfg.data, key):
            raise ValueError(f"data.{key} is required for task {cfg.task}")


def _check_grpo(cfg: RunConfig) -> None:
    """train.objective grpo: prompts only (answers are sampled), rewards that can be computed, batches that divide."""
    data, train = cfg.data, cfg.train
    if cfg.task != "causal_lm":
        raise ValueError(f"train.objective grpo needs task causal_lm (got task {cfg.task})")
    if not data.prompt:
        raise ValueError("data.prompt is required for train.objective grpo")
    for key in ("chosen", "rejected", "desirable"):
        if getattr(data, key) is not None:
            raise ValueError(f"data.{key} does not apply to train.objective grpo (answers are sampled and rewarded)")
    if not train.rewards:
        raise ValueError("train.rewards is required for train.objective grpo, e.g. [{name: chrf}]")
    for index, reward in enumerate(train.rewards):
        key = f"train.rewards.{index}"
        if reward.name == "python" and not train.allow_code_rewards:
            raise ValueError(
                f"{key}: reward python runs your code ({reward.function}); set train.allow_code_rewards: true"
            )
        if reward.name in ("chrf", "bleu", "rouge", "exact_match") and not (reward.column or data.response):
            raise ValueError(f"{key}: reward {reward.name} needs a reference: set data.response or column")
    if train.loss_type is not None and train.loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(
            f"train.loss_type: unknown GRPO loss {train.loss_type!r}; choose one of {', '.join(GRPO_LOSS_TYPES)}"
        )
    answers, group = train.batch_size * train.grad_accum, train.grpo.num_generations
    if answers % group:
        raise ValueError(
            f"train.batch_size: batch_size x grad_accum = {answers} answers per step is not a multiple of "
            f"train.grpo.num_generations ({group}); each prompt's {group} answers must fit in one step, "
            f"e.g. batch_size {group * max(1, answers // group)}"
        )


def _check_not_grpo(cfg: RunConfig) -> None:
    if cfg.train.rewards:
        raise ValueError(f"train.rewards apply to train.objective grpo only (objective is {cfg.train.objective})")


# The train keys that one objective alone reads: the config hash of a run with another objective leaves them out.
OBJECTIVE_TRAIN_KEYS: dict[str, tuple[str, ...]] = {"grpo": ("rewards", "grpo", "allow_code_rewards")}


def unread_train_keys(objective: str) -> list[str]:
    """The train keys that only other objectives read (``OBJECTIVE_TRAIN_KEYS``)."""
    return [key for owner, keys in OBJECTIVE_TRAIN_KEYS.items() if owner != objective for key in keys]


# The config check of each objective; tunesmith.train.objectives registers the same function per objective.
OBJECTIVE_CHECKS: dict[str, Any] = {
    "sft": _check_supervised,
    "dpo": _check_preference,
    "orpo": _check_preference,
    "simpo": _check_preference,
    "kto": _check_preference,
    "grpo": _check_grpo,
}


# Keys that describe a single-turn or preference row; a conversation row is described by data.messages alone.
SINGLE_TURN_KEYS = ("prompt", "response", "source", "target", "text", "label", "chosen", "rejected", "desirable")


def _check_conversation(cfg: RunConfig) -> None:
    """data.messages: a causal LM trained with sft, its rows described by the messages column alone."""
    data = cfg.data
    if data.messages is None:
        raise ValueError("data.tools needs data.messages (the column of conversations that may call the tools)")
    if not data.messages.strip():
        raise ValueError("data.messages: must name a column")
    if cfg.task != "causal_lm":
        raise ValueError(f"data.messages needs task causal_lm (got task {cfg.task})")
    if cfg.train.objective != "sft":
        raise ValueError(f"data.messages trains with train.objective sft (got {cfg.train.objective})")
    for key in SINGLE_TURN_KEYS:
        if getattr(data, key) is not None:
            raise ValueError(
                f"data.messages and data.{key} cannot be used together (a conversation row is its messages)"
            )
    if data.tools is not None and data.tools == data.messages:
        raise ValueError("data.tools and data.messages name the same column")


def preference_beta(cfg: TrainConfig) -> float:
    """train.beta, or the objective's default."""
    return cfg.beta if cfg.beta is not None else DEFAULT_BETA[cfg.objective]


# The data keys each task reads: (input template, target template or label column).
TASK_DATA_KEYS: dict[str, tuple[str, str]] = {
    "causal_lm": ("prompt", "response"),
    "seq2seq": ("source", "target"),
    "classification": ("text", "label"),
}


class RunConfig(_Section):
    """A whole fine-tuning job."""

    name: str = Field("run", description="Run name; the run directory is <name>-<timestamp>.")
    task: Task = Field("causal_lm", description="causal_lm, seq2seq or classification.")
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    data: DataConfig
    method: MethodConfig = Field(default_factory=lambda: LoraMethod())
    train: TrainConfig = Field(default_factory=lambda: TrainConfig())
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig())
    export: ExportConfig = Field(default_factory=lambda: ExportConfig())
    tune: TuneConfig | None = Field(None, description="Hyperparameter search, read by tunesmith tune only.")
    track: TrackConfig = Field(default_factory=lambda: TrackConfig())

    @field_validator("method", mode="before")
    @classmethod
    def _lora_when_unnamed(cls, value: Any) -> Any:
        # `method: {r: 8}` means LoRA, the default method.
        if isinstance(value, dict) and "name" not in value:
            return {"name": "lora", **value}
        return value

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("must be a plain name (no '/', not starting with '.')")
        return value

    @model_validator(mode="after")
    def _templates_for_task(self) -> RunConfig:
        if self.data.messages is not None or self.data.tools is not None:
            _check_not_grpo(self)
            _check_conversation(self)
            return self
        if self.data.loss_on == "last":
            raise ValueError("data.loss_on last applies to conversations only (set data.messages)")
        OBJECTIVE_CHECKS[self.train.objective](self)
        return self

    def config_hash(self) -> str:
        """A short stable hash of the resolved config (same settings, same hash)."""
        # Where a run is reported does not change what it trains (and old runs keep their hashes).
        dumped = self.model_dump(mode="json", exclude={"track"})
        for key in unread_train_keys(self.train.objective):  # (older runs had none of them)
            dumped["train"].pop(key)
        canonical = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides and validate it.

    Relative data paths are resolved against the config file's directory.
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    for item in overrides or []:
        apply_override(raw, item)
    config = validate_config(raw, source=str(path))
    return resolve_paths(config, path.parent)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and line."""
    if not path.is_file():
        raise TunesmithError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise TunesmithError(f"{path}: not UTF-8 text (byte {err.start})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise TunesmithError(f"{path}:{where} invalid YAML: {getattr(err, 'problem', err)}") from err
    if raw is None:
        raise TunesmithError(f"{path}: config file is empty")
    if not isinstance(raw, dict):
        raise TunesmithError(f"{path}: expected a mapping of sections (task, model, data, ...)")
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TunesmithError(f"--set {item!r}: expected key=value, e.g. train.learning_rate=1e-4")
    set_dotted(raw, key.strip(), yaml.safe_load(value) if value.strip() else None, f"--set {item!r}")


def set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``raw[a][b][c] = value`` for the key ``a.b.c``; ``where`` names the source in the error."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise TunesmithError(f"{where}: {part} is not a config section")
        node = child
    node[parts[-1]] = value


def validate_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw mapping into a RunConfig; the first problem becomes one TunesmithError line."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        problems = [_describe_error(e, raw) for e in err.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TunesmithError(f"{source}: {problems[0]}{more}") from err


def resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    """Make data paths absolute, relative to ``base`` (the config file's directory)."""
    data = config.data
    data.train = _absolute(data.train, base)
    if data.eval is not None:
        data.eval = _absolute(data.eval, base)
    return config


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _describe_error(error: Any, raw: dict[str, Any]) -> str:
    loc = _strip_union_tags(tuple(error["loc"]))
    key = ".".join(str(p) for p in loc) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        hint = _did_you_mean(loc, raw)
        return f"unknown key {key}{hint}"
    if kind in ("union_tag_invalid", "literal_error") and loc and loc[0] == "method" and loc[-1] in ("method", "name"):
        return f"method.name: unknown method {_method_name(raw)!r}; choose one of {', '.join(METHOD_CONFIGS)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}" if key != "config" else message


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts the union member's tag in the location (method.lora.r); users wrote method.r.
    if len(loc) >= 2 and loc[0] == "method" and loc[1] in METHOD_CONFIGS:
        return (loc[0], *loc[2:])
    return loc


def _method_name(raw: dict[str, Any]) -> Any:
    method = raw.get("method")
    return method.get("name") if isinstance(method, dict) else method


def _did_you_mean(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    known = _known_keys(loc[:-1], raw)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(sorted(known))}" if known else ""


def _known_keys(parent: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in parent:
        if part == "method" and model is RunConfig:
            model = METHOD_CONFIGS.get(str(_method_name(raw) or "lora"), LoraMethod)
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
