"""Model sources: embedded aliases, hub ids, local directories and .gguf files."""

from tunesmith.models.loading import head_kwargs, load_model, load_tokenizer
from tunesmith.models.resolve import ResolvedModel, resolve_model

__all__ = ["ResolvedModel", "head_kwargs", "load_model", "load_tokenizer", "resolve_model"]
