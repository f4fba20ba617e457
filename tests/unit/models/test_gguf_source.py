"""A damaged .gguf is one clear line naming the file, before transformers' reader fails somewhere inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.models.gguf import check_readable, converted_gguf, gguf_cache_dir


def write_gguf(path: Path) -> Path:
    """A small, whole GGUF file: llama metadata, a vocabulary and two tensors (the gguf package's writer)."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list([f"tok{i}" for i in range(50)])
    writer.add_tensor("token_embd.weight", np.ones((50, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def whole(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "whole.gguf")


def test_a_whole_file_passes(whole: Path) -> None:
    check_readable(whole)


@pytest.mark.parametrize("keep", [4, 8, 23, 30, 200, -1])
def test_a_truncated_file_is_one_line_naming_it(whole: Path, tmp_path: Path, keep: int) -> None:
    # Cut inside the header, the metadata, the tensor table and the tensor data (the last byte).
    data = whole.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(TunesmithError, match=rf"{cut}: not a readable GGUF file, it is truncated or corrupt") as err:
        check_readable(cut)
    assert "\n" not in str(err.value)


def test_garbage_and_empty_files(tmp_path: Path) -> None:
    garbage, empty = tmp_path / "garbage.gguf", tmp_path / "empty.gguf"
    garbage.write_bytes(b"\x00\x01not a model at all" * 10)
    empty.write_bytes(b"")
    with pytest.raises(TunesmithError, match="garbage.gguf: not a readable GGUF file: it does not start with the GGUF"):
        check_readable(garbage)
    with pytest.raises(TunesmithError, match="empty.gguf: not a readable GGUF file: the file is empty"):
        check_readable(empty)


def test_conversion_checks_first_and_leaves_no_cache_entry(whole: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:40])
    with pytest.raises(TunesmithError, match="not a readable GGUF file"):
        converted_gguf(cut)
    converted = gguf_cache_dir(cut)
    assert not converted.exists() and not list(converted.parent.glob(".converting-*"))
