"""``tunesmith serve``: an OpenAI-compatible HTTP server for completed runs.

Adapter runs tuned from the same base share one copy of its weights (a peft model with one adapter per run);
requests that arrive together are answered in one batched ``generate``, LoRA adapters mixed per row.
"""

from __future__ import annotations

from tunesmith.serve.server import serve

__all__ = ["serve"]
