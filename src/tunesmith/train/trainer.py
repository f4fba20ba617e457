"""eval_loss per target token over the whole eval set, whatever the eval batch size or the process count.

The Trainer's eval_loss is the mean of each eval batch's mean loss: rows in a short batch weigh more than rows in
a long one, so the value moves with eval.batch_size and --nproc, and under several processes Accelerate pads the
last round with repeated rows (even_batches). Here every eval batch gives each row's summed loss and target-token
count; those are gathered from every process with the padding rows dropped (``gather_for_metrics``), added up,
and divided once at the end. Callbacks (early stopping, generation metrics) and the best-checkpoint choice all
read this value: it replaces eval_loss before the Trainer logs the metrics or passes them on.

Classification counts each row as one token, so its eval_loss is the mean cross-entropy per eval row. It is not
class-weighted: train.class_weights shapes what training minimises, while eval_loss stays the plain likelihood
of the eval labels, comparable between runs with and without weights (a study may tune them).
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from tunesmith.data.collate import SHAPE_PADDING
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.evaluate.loss import LossTotals, row_losses, token_losses


class TokenLossTrainer(Trainer):
    """A ``Trainer`` whose eval_loss is summed cross-entropy / target tokens over the eval set."""

    _eval_totals: LossTotals | None = None  # set only while an evaluation loop runs

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> Any:
        """The Trainer's loop, with its batch-averaged loss replaced by the loss per target token."""
        self._eval_totals = LossTotals()
        try:
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
            totals = self._eval_totals
        finally:
            self._eval_totals = None
        if totals.tokens and output.metrics is not None:
            output.metrics[f"{metric_key_prefix}_loss"] = totals.nll / totals.tokens
        return output

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        """The Trainer's loss; during evaluation, also add this batch's per-row sums to the running totals."""
        inputs.pop(SHAPE_PADDING, None)  # a count for _track_num_input_tokens, not a model input
        if self._eval_totals is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        batch = dict(inputs)  # the Trainer pops labels from ``inputs`` when a compute_loss_func is set
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        # Every process runs this once per eval step, so the gather lines up; it drops even_batches' repeats.
        nll, tokens = self.accelerator.gather_for_metrics(self._row_losses(outputs["logits"], batch))
        self._eval_totals.add(float(nll.double().sum()), int(tokens.sum()))
        return (loss, outputs) if return_outputs else loss

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        """The Trainer's count of tokens seen, less the shape padding of a packed batch (no row's tokens)."""
        super()._track_num_input_tokens(inputs)
        if SHAPE_PADDING in inputs and self.args.include_num_input_tokens_seen != "no":
            import torch

            # Every process's batches carry the key when one's do (one collator), so the gather lines up.
            padding = torch.as_tensor(inputs[SHAPE_PADDING], device=self.args.device, dtype=torch.int64)
            self.state.num_input_tokens_seen -= int(self.accelerator.gather(padding).sum().item())

    def _row_losses(self, logits: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        labels = batch["labels"]
        if "logits_to_keep" in batch:
            return packed_row_losses(logits, labels, batch["position_ids"], batch["logits_to_keep"])
        encoder_decoder = getattr(getattr(self.model, "config", None), "is_encoder_decoder", False)
        shift = labels.dim() > 1 and not encoder_decoder  # only causal LMs; a classifier has one label per row
        return row_losses(logits, labels, shift)


def packed_row_losses(logits: Any, labels: Any, position_ids: Any, keep: Any) -> tuple[Any, Any]:
    """Per-row summed loss and target count of a ``ResponseOnlyPacking`` batch: one sequence of several rows.

    Its logits exist only at the ``keep`` positions and its labels are their targets, already shifted, behind
    one leading ignored slot. A row starts wherever the position ids restart at 0.
    """
    targets = labels[0, 1:]
    nll = token_losses(logits[0], targets)
    counted = (targets != IGNORE_INDEX).long().to(nll.device)
    row = (position_ids[0] == 0).cumsum(0) - 1
    owner = row[keep].to(nll.device)  # the row each kept position (and its target) belongs to
    rows = int(row[-1]) + 1
    return nll.new_zeros(rows).index_add_(0, owner, nll), counted.new_zeros(rows).index_add_(0, owner, counted)
