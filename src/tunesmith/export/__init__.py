"""Ship a tuned model: merged safetensors, a GGUF file (llama.cpp), or an Ollama folder (``tunesmith export``)."""

from tunesmith.export.runner import KINDS, ExportResult, export_loaded, export_run

__all__ = ["KINDS", "ExportResult", "export_loaded", "export_run"]
