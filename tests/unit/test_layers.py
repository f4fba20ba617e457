"""The import contract (tools/check_layers.py) holds for src/, and it does catch what it is for."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import check_layers  # noqa: E402


def test_the_source_tree_keeps_its_layers_and_has_no_cycle() -> None:
    assert list(check_layers.problems(ROOT / "src")) == []


def test_an_upward_import_a_sibling_import_and_a_cycle_are_each_reported(tmp_path: Path) -> None:
    package = tmp_path / "tunesmith"
    for folder in ("evaluate", "train", "models", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "evaluate" / "a.py").write_text(
        "def f():\n    from tunesmith.train import b\n"
    )  # deferred, still counts
    (package / "train" / "b.py").write_text("from tunesmith.evaluate import a\n")
    (package / "data" / "c.py").write_text("from tunesmith.models.d import thing\n")
    (package / "models" / "d.py").write_text("from . import e\nthing = 1\n")
    (package / "models" / "e.py").write_text("from tunesmith.models import d\n")
    found = list(check_layers.problems(tmp_path))
    assert "tunesmith.evaluate.a imports tunesmith.train.b: evaluate may not depend on train" in found
    assert "tunesmith.data.c imports tunesmith.models.d: data may not depend on models" in found
    assert "import cycle: tunesmith.evaluate.a -> tunesmith.train.b" in found
    assert "import cycle: tunesmith.models.d -> tunesmith.models.e" in found
    assert len(found) == 4
