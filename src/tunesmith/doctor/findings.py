"""What ``tunesmith doctor`` reports: problems, rendered examples, lengths, timing, and the helpers every check uses.

Both the supervised checks (``tunesmith.doctor``) and the preference-pair checks (``tunesmith.doctor.preference``)
fill in one ``Diagnosis``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tunesmith.config import RunConfig
from tunesmith.data.prepare import Tables
from tunesmith.data.templates import template_columns

if TYPE_CHECKING:
    import pandas as pd

Severity = Literal["blocking", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"blocking": 0, "warning": 1, "info": 2}
SHOWN_EXAMPLES = 3
NEAR_DUPLICATE_JACCARD = 0.9
NEAR_DUPLICATE_MAX_ROWS = 2000  # the shingle comparison is quadratic; beyond this only normalised text is compared
TIMED_STEPS = 3
LISTED = 5  # row groups named in one problem message


@dataclass
class Problem:
    """One finding, ranked by severity."""

    severity: Severity
    code: str
    message: str


@dataclass
class Token:
    """One token of a rendered example; ``loss`` when the model is trained to predict it."""

    id: int
    text: str
    loss: bool


@dataclass
class Example:
    """A training example as the model sees it."""

    row: int
    tokens: list[Token]
    untruncated_length: int
    label: str | None = None
    note: str | None = None  # a line shown under the example (a conversation's tokens per turn)

    @property
    def spans(self) -> list[tuple[str, bool]]:
        """Consecutive tokens with the same loss flag, as text."""
        spans: list[tuple[str, bool]] = []
        for token in self.tokens:
            if spans and spans[-1][1] == token.loss:
                spans[-1] = (spans[-1][0] + token.text, token.loss)
            else:
                spans.append((token.text, token.loss))
        return spans


@dataclass
class Lengths:
    """Token lengths of every usable row (before truncation) against data.max_length."""

    rows: int
    min: int
    median: float
    p95: int
    max: int
    max_length: int
    truncated: int
    dropped_truncated: int
    total: int = 0  # tokens over every row
    template_tokens: int = 0  # fixed template text per row (markup and system prompt)
    default_system_tokens: int = 0  # of which a system prompt the template adds on its own

    @property
    def truncated_share(self) -> float:
        """Share of rows longer than max_length."""
        return self.truncated / self.rows if self.rows else 0.0

    @property
    def template_share(self) -> float:
        """Share of all tokens that are the template's fixed text rather than the data."""
        return self.template_tokens * self.rows / self.total if self.total else 0.0


@dataclass
class Timing:
    """An estimate from a few timed optimizer steps on real batches (not a measurement of the run)."""

    device: str
    precision: str
    batch_size: int
    packing: bool
    steps_timed: int
    seconds_per_step: float
    steps_per_epoch: int
    seconds_per_epoch: float
    seconds_for_run: float
    peak_rss_mb: float
    peak_gpu_mb: float | None = None
    # GRPO: a step samples its answers (generation_seconds of seconds_per_step), then optimises on them.
    generation_seconds: float | None = None
    prompts_per_step: int = 0
    answers_per_step: int = 0
    answers_sampled: int = 0  # base-model answers the doctor sampled and timed


@dataclass
class ConversationStats:
    """Conversation data: how long, how many turns and tool calls, and how much of it is learnt."""

    conversations: int
    turns: dict[str, float]  # min, median, max messages per conversation
    tokens_per_turn: dict[str, dict[str, float]]  # role -> median and max tokens of one turn
    loss_share: float  # share of all tokens that carry loss
    tool_calls: dict[str, float]  # total, median and max calls per conversation, conversations with a call
    renderer: str  # native (the chat template renders tools) or fallback (tunesmith's marked text)


@dataclass
class Diagnosis:
    """Everything doctor found about one config and its data."""

    config: str
    task: str
    model: str
    method: str
    rows: dict[str, int] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    lengths: Lengths | None = None
    exact_duplicates: list[list[int]] = field(default_factory=list)
    near_duplicates: list[list[int]] = field(default_factory=list)
    leaked: list[dict[str, list[int]]] = field(default_factory=list)
    empty_cells: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] | None = None
    conversations: ConversationStats | None = None
    timing: Timing | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def blocking(self) -> bool:
        """Whether a problem makes training impossible."""
        return any(problem.severity == "blocking" for problem in self.problems)

    def add(self, severity: Severity, code: str, message: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(severity, code, message))

    def ranked(self) -> list[Problem]:
        """Problems, blocking first, then warnings, then information."""
        return sorted(self.problems, key=lambda problem: SEVERITY_ORDER[problem.severity])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (examples carry a per-token loss mask)."""
        document = asdict(self)
        document["problems"] = [asdict(problem) for problem in self.ranked()]
        document["blocking"] = self.blocking
        if self.lengths is not None:
            document["lengths"]["truncated_share"] = round(self.lengths.truncated_share, 4)
            document["lengths"]["template_share"] = round(self.lengths.template_share, 4)
        return document


def empty_cells(tables: Tables, templates: list[str], label: str | None = None) -> dict[str, int]:
    """Empty (missing or blank) cells per column the templates refer to, over train and eval tables."""
    columns = [column for template in templates for column in template_columns(template, "data")]
    columns += [label] if label else []
    counts: dict[str, int] = {}
    for frame in (tables.train, tables.eval):
        if frame is None:
            continue
        for column in dict.fromkeys(columns):
            if column in frame.columns:
                counts[column] = counts.get(column, 0) + int(_blank(frame[column]).sum())
    return counts


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | (column.astype(str).str.strip() == "")


def normalise(text: str) -> str:
    """Lowercase, punctuation stripped, whitespace collapsed: two rows equal under this are near duplicates."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def load_tokenizer_for(cfg: RunConfig) -> tuple[Any, Any]:
    """The config's tokenizer and its resolved model source (no weights load)."""
    from tunesmith.models import load_tokenizer, resolve_model

    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    return load_tokenizer(resolved, cfg.model), resolved
