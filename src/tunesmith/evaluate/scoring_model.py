"""The model as eval scores it: the tuned weights folded for speed, and whether its loss can run on packed rows.

Shared by the single-turn runner and the per-turn conversation eval.
"""

from __future__ import annotations

from typing import Any

from tunesmith.models.run_model import LoadedRun


def packs_rows(run: LoadedRun, model: Any) -> bool:
    """Whether the teacher-forced loss can score packed rows: a decoder-only model and a method that packs."""
    from tunesmith.data.collate import supports_packing
    from tunesmith.methods import get_method

    return run.config.task == "causal_lm" and get_method(run.config.method.name).packing and supports_packing(model)


def inference_model(run: LoadedRun) -> Any:
    """The tuned model for scoring: a LoRA-family adapter folded into the base weights, in memory.

    Each adapted layer then runs one matmul instead of three per token. The run's files are untouched, and
    the base must already have been scored: folding changes the weights ``base_model_view`` would switch back to.
    """
    if run.adapter and run.config.method.name in MERGEABLE_METHODS:
        run.model.merge_adapter()
    return run.model


# peft folds these into the base weights exactly (up to float rounding); soft prompts have nothing to fold.
MERGEABLE_METHODS = ("lora", "dora", "ia3")
