"""Chat with a completed run and its base model side by side (classification: the predicted label of each).

The model of the last run chatted with stays loaded; one lock serialises generation, which is what a laptop
CPU can do anyway. (The ``serve`` package's model pool may take this over once it lands.)
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_MESSAGE_CHARS = 4000


@dataclass
class Reply:
    """What the tuned model and its base answered to one message."""

    task: str
    message: str
    tuned: str
    base: str


class ChatModels:
    """The loaded model of one run at a time, reloaded when another run is asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: Any = None

    def reply(self, run_dir: Path, message: str, max_new_tokens: int) -> Reply:
        """Answer ``message`` with the run's tuned model and its base (or classify it with both)."""
        from tunesmith.errors import TunesmithError

        message = message.strip()
        if not message:
            raise TunesmithError("message: empty; type something to send")
        if len(message) > MAX_MESSAGE_CHARS:
            raise TunesmithError(f"message: {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
        with self._lock:
            run = self._load(run_dir)
            if run.config.task == "classification":
                return self._classify(run, message)
            return self._generate(run, message, max_new_tokens)

    def _load(self, run_dir: Path) -> Any:
        from tunesmith.models.run_model import load_run_model

        if self._run is None or self._run.run_dir != run_dir:
            self._run = None  # free the previous model before loading the next
            self._run = load_run_model(run_dir)
        return self._run

    @staticmethod
    def _generate(run: Any, message: str, max_new_tokens: int) -> Reply:
        from tunesmith.evaluate.generation import Decoding, generate
        from tunesmith.models.run_model import base_model_view

        decoding = Decoding(max_new_tokens=max_new_tokens)
        (tuned,) = generate(run.model, run.tokenizer, run.config, [message], decoding, 1, run.precision)
        with base_model_view(run) as base_model:
            (base,) = generate(base_model, run.tokenizer, run.config, [message], decoding, 1, run.precision)
        return Reply(run.config.task, message, tuned, base)

    @staticmethod
    def _classify(run: Any, message: str) -> Reply:
        from tunesmith.evaluate.classify import predict_texts
        from tunesmith.models.run_model import base_model_view

        (tuned,) = predict_texts(run, [message])
        with base_model_view(run) as base_model:
            (base,) = predict_texts(dataclasses.replace(run, model=base_model), [message])
        return Reply(
            run.config.task,
            message,
            f"{tuned.label} (p={tuned.probability:.3f})",
            f"{base.label} (p={base.probability:.3f}, untrained head)",
        )
