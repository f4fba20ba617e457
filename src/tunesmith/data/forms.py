"""Data forms, registered once: what a row is, how it is read, checked, rendered, and where it carries loss.

A form is picked from the config by ``form_for``: the task and objective it serves, and the data key that
marks it (``data.messages`` for conversations). Packages ask the form instead of testing the task or the
objective themselves; adding a form is one ``register_form`` call here and its own module.

==================  ===================  =================================================================
form                config               a row, and its loss
==================  ===================  =================================================================
prompt_response     causal_lm, sft       data.prompt -> data.response; loss on the response (data.loss_on)
source_target       seq2seq, sft         data.source -> data.target; the decoder learns the target
text_label          classification, sft  data.text -> the class in column data.label; one label per row
preference          causal_lm, dpo/...   data.prompt + data.chosen/data.rejected (KTO: + data.desirable)
conversation        causal_lm, sft       data.messages (+ data.tools); loss on assistant turns
prompt_only         causal_lm, grpo      data.prompt (+ data.response, reward columns); answers are sampled
==================  ===================  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.config import Objective, RunConfig, Task
from tunesmith.data.conversation_data import prepare_conversation_data, read_conversation_tables
from tunesmith.data.preference import prepare_preference_data, read_preference_tables
from tunesmith.data.prepare import PreparedData, Tables, prepare_data, read_tables
from tunesmith.data.prompts import prepare_prompt_data, read_prompt_tables
from tunesmith.data.single_turn import SINGLE_TURN, SingleTurn
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PREFERENCE_OBJECTIVES: tuple[Objective, ...] = ("dpo", "orpo", "simpo", "kto")


@dataclass(frozen=True)
class DataForm:
    """One kind of row, and everything the pipeline does differently for it."""

    name: str
    description: str
    tasks: tuple[Task, ...]  # the tasks it serves
    objectives: tuple[Objective, ...]  # the train.objective values it serves
    marker: str | None  # a data key that selects this form when set (data.messages); None: the task's default
    read: Callable[[RunConfig], Tables]  # read and check the tables (no model)
    prepare: Callable[[RunConfig, Tables, PreTrainedTokenizerBase], PreparedData]  # render, split, tokenise
    single_turn: SingleTurn | None = None  # rows render to (input, target) text pairs: how they tokenise
    token_loss: bool = True  # labels are per token of input_ids (a causal LM), so rows can be packed
    # What the tuned model is, for the packages that load, serve, export, chat with and list a run:
    label_head: bool = False  # it answers with a class from a classification head (serve: /v1/classify)
    encoder_decoder: bool = False  # its answer is a separate decoder sequence; its prompt is the bare source text
    serves_chat: bool = True  # requests render as chat turns (chat template, tools); False: bare text or a label
    turns: bool = False  # rows are conversations: requests render the way training rendered its turns
    decoder_only: bool = True  # a decoder-only causal LM: GGUF/Ollama export and the built-in engine run it

    @property
    def generates(self) -> bool:
        """Whether the tuned model writes its answer (chat and completions, generated eval samples)."""
        return not self.label_head


FORMS: dict[str, DataForm] = {}


def register_form(form: DataForm) -> DataForm:
    """Add a form to the registry (names are unique)."""
    if form.name in FORMS:
        raise ValueError(f"data form {form.name!r} is registered twice")
    FORMS[form.name] = form
    return form


def form_for(cfg: RunConfig) -> DataForm:
    """The form ``cfg`` describes: a form whose marker key is set wins over the task's default."""
    form = find_form(cfg.task, cfg.train.objective, lambda key: getattr(cfg.data, key) is not None)
    if form is None:
        raise TunesmithError(f"no data form serves task {cfg.task} with train.objective {cfg.train.objective}")
    return form


def find_form(task: str | None, objective: str, marked: Callable[[str], bool]) -> DataForm | None:
    """The form of a run known only by its task, objective and which data keys it sets (a registry row)."""
    fits = [f for f in FORMS.values() if task in f.tasks and objective in f.objectives]
    chosen = [f for f in fits if f.marker is not None and marked(f.marker)] or [f for f in fits if f.marker is None]
    return chosen[0] if chosen else None


def read_data(cfg: RunConfig) -> Tables:
    """Read and check ``cfg``'s tables the way its form does (no model needed)."""
    return form_for(cfg).read(cfg)


def prepare_form_data(cfg: RunConfig, tables: Tables, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Render, split and tokenise ``tables`` the way ``cfg``'s form does."""
    return form_for(cfg).prepare(cfg, tables, tokenizer)


def _single_turn_form(name: str, description: str, spec: SingleTurn) -> DataForm:
    return DataForm(
        name,
        description,
        (spec.task,),
        ("sft",),
        None,
        read=lambda cfg: read_tables(cfg.data, cfg.task),
        prepare=lambda cfg, tables, tokenizer: prepare_data(cfg.data, tables, tokenizer, cfg.task),
        single_turn=spec,
        token_loss=spec.token_loss,
        label_head=spec.labelled,
        encoder_decoder=spec.encoder_decoder,
        serves_chat=not (spec.labelled or spec.encoder_decoder),
        decoder_only=not (spec.labelled or spec.encoder_decoder),
    )


register_form(_single_turn_form("prompt_response", "a prompt and the response to learn", SINGLE_TURN["causal_lm"]))
register_form(_single_turn_form("source_target", "an input and the output a decoder writes", SINGLE_TURN["seq2seq"]))
register_form(_single_turn_form("text_label", "a text and its class label", SINGLE_TURN["classification"]))
register_form(
    DataForm(
        "preference",
        "a prompt with a chosen and a rejected answer, or KTO's single answers marked desirable or not",
        ("causal_lm",),
        PREFERENCE_OBJECTIVES,
        None,
        read=lambda cfg: read_preference_tables(cfg.data),
        prepare=prepare_preference_data,
    )
)
register_form(
    DataForm(
        "conversation",
        "a list of messages (system, user, assistant with tool calls, tool results); loss on assistant turns",
        ("causal_lm",),
        ("sft",),
        "messages",
        read=lambda cfg: read_conversation_tables(cfg.data),
        prepare=lambda cfg, tables, tokenizer: prepare_conversation_data(cfg.data, tables, tokenizer),
        turns=True,
    )
)
register_form(
    DataForm(
        "prompt_only",
        "a prompt (with its reference and columns for the rewards); the model's sampled answers are rewarded",
        ("causal_lm",),
        ("grpo",),
        None,
        read=read_prompt_tables,
        prepare=prepare_prompt_data,
        token_loss=False,
    )
)
