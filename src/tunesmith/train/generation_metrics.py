"""Task metrics during training: answer a capped eval sample at every evaluation and score it."""

from __future__ import annotations

import math
import time
from typing import Any

from transformers import TrainerCallback

from tunesmith.config import RunConfig
from tunesmith.data.render import Pair
from tunesmith.train.callbacks import MetricsFileCallback


class GenerationMetricsCallback(TrainerCallback):
    """Adds eval_<metric> (bleu, rouge, ...) to each evaluation's metrics, in place.

    The Trainer reads the same metrics dict afterwards to pick the best checkpoint (train.select_by), and
    early stopping reads it next, so this callback must come before EarlyStoppingCallback. Metrics are fed
    batch by batch; only the sample's generated strings are held, never logits. Conversation data is scored per
    assistant turn, as ``tunesmith eval`` scores it (``evaluate/conversation.py``).
    """

    def __init__(
        self,
        cfg: RunConfig,
        tokenizer: Any,
        eval_pairs: list[Pair],
        log: MetricsFileCallback,
        eval_conversations: list[Any] | None = None,
    ) -> None:
        from tunesmith.evaluate.conversation import conversation_turns
        from tunesmith.evaluate.references import group_references

        self.cfg, self.tokenizer, self.log = cfg, tokenizer, log
        self.examples = group_references(eval_pairs)[: cfg.eval.generate_samples]
        turns = conversation_turns(eval_conversations, tokenizer, cfg)[0] if eval_conversations else []
        self.turns = turns[: cfg.eval.generate_samples]
        self.failure: tuple[int, Exception] | None = None  # (step, error) of an evaluation that raised
        self.seconds = 0.0  # time spent generating and scoring, for the run's timings

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> Any:
        model = kwargs.get("model")
        if model is None or metrics is None or not self.size:
            return None
        started = time.perf_counter()
        try:
            scores = self.score(model, "bf16" if args.bf16 else "fp32")
        except Exception as err:  # re-raised by train() once the checkpoint is safe
            return self._stop_after_failure(err, state, control, metrics)
        finally:
            self.seconds += time.perf_counter() - started
        metrics.update({f"eval_{name}": value for name, value in scores.items()})
        self.log.on_log(args, state, control, logs={f"eval_{k}": v for k, v in scores.items()})
        return None

    def _stop_after_failure(self, err: Exception, state: Any, control: Any, metrics: dict[str, float]) -> Any:
        # The Trainer saves right after evaluating: asking it to save and stop keeps the steps trained so far
        # (a resumable checkpoint) instead of losing them to an exception raised mid-evaluation. NaN stands in
        # for the missing scores so checkpoint selection, which expects them, still runs.
        from tunesmith.console import say

        self.failure = (state.global_step, err)
        metrics.update({f"eval_{key}": math.nan for key in self.expected_keys()})
        say(f"evaluation at step {state.global_step} failed ({type(err).__name__}: {err}); saving a checkpoint")
        control.should_save = True
        control.should_training_stop = True
        return control

    @property
    def size(self) -> int:
        """Inputs answered at each evaluation: distinct prompts, or assistant turns of conversations."""
        return len(self.examples) + len(self.turns)

    def expected_keys(self) -> list[str]:
        """The score names ``score`` adds (without the eval_ prefix)."""
        from tunesmith.evaluate.metrics import build_metrics

        assert self.cfg.eval.metrics is not None
        return [key for metric in build_metrics(self.cfg.eval.metrics).values() for key in metric.compute()]

    def score(self, model: Any, precision: str) -> dict[str, float]:
        """Greedy answers for the sample, scored with eval.metrics."""
        from tunesmith.evaluate.generation import Decoding, generate
        from tunesmith.evaluate.metrics import build_metrics

        assert self.cfg.eval.metrics is not None
        metrics = build_metrics(self.cfg.eval.metrics)
        decoding = Decoding(max_new_tokens=self.cfg.eval.max_new_tokens)
        batch = self.cfg.eval.batch_size
        was_training = model.training
        model.eval()
        try:
            if self.turns:
                from tunesmith.evaluate.conversation import score_turns

                return score_turns(
                    model, self.tokenizer, self.turns, self.cfg.eval.metrics, decoding, batch, precision
                )[0]
            # One call: the engine keeps `batch` rows decoding, a finished row's place going to the next prompt.
            prompts = [r.prompt for r in self.examples]
            every = generate(model, self.tokenizer, self.cfg, prompts, decoding, batch, precision)
            for start in range(0, len(self.examples), batch):
                rows = self.examples[start : start + batch]
                for metric in metrics.values():
                    metric.update(every[start : start + batch], [r.references for r in rows])
        finally:
            model.train(was_training)
        return {key: value for metric in metrics.values() for key, value in metric.compute().items()}
