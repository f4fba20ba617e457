"""Model sources: embedded aliases, hub ids, local directories and .gguf files."""

from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.resolve import ResolvedModel, resolve_model

__all__ = ["ResolvedModel", "load_model", "load_tokenizer", "resolve_model"]
