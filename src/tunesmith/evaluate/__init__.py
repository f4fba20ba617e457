"""Evaluation: batched generation, task metrics, base against tuned."""

# The built-in metrics register themselves on import, so the registry is complete with the package.
from tunesmith.evaluate import label_metrics, text_metrics, tool_metrics  # noqa: F401
