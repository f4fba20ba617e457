"""A damaged model file through the real command: one line naming it, non-zero exit; --debug keeps the traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import write_ads_csv, write_config


@pytest.mark.parametrize(
    ("keep", "says"),
    [(8, "it is truncated or corrupt (struct.error"), (None, "it does not start with the GGUF magic bytes")],
    ids=["header-cut", "garbage"],
)
def test_a_corrupt_gguf_is_one_line_naming_the_file(  # type: ignore[no-untyped-def]
    tunesmith, tmp_path: Path, keep: int | None, says: str
):
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00\x05" if keep == 8 else b"\x89PNG not a model" * 64)
    config = write_config(tmp_path / "c.yaml", model, write_ads_csv(tmp_path / "ads.csv"))

    plain = tunesmith("train", str(config))
    assert plain.returncode == 2, plain.stderr
    (line,) = plain.stderr.strip().splitlines()
    assert line.startswith(f"error: model.name {model}: not a readable GGUF file") and says in line, line
    assert not (tmp_path / "runs").exists(), "a bad model never leaves a half-made run behind"

    if keep is not None:  # once is enough: --debug shows what the reader raised, under the same message
        debug = tunesmith("train", str(config), "--debug")
        assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
        assert "struct.error" in debug.stderr and "not a readable GGUF file" in debug.stderr
