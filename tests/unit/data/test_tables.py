from pathlib import Path

import pandas as pd
import pytest

from tunesmith.data.tables import read_table
from tunesmith.errors import TunesmithError

FRAME = pd.DataFrame({"product": ["tea", "coffee"], "ad_text": ["Calm.", "Wake up!"]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_format_reads_the_same_table(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ads{suffix}"
    if suffix == ".csv":
        FRAME.to_csv(path, index=False)
    elif suffix == ".tsv":
        FRAME.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        FRAME.to_json(path, orient="records", lines=True)
    else:
        FRAME.to_parquet(path)
    frame = read_table(path, "data.train")
    assert list(frame.columns) == ["product", "ad_text"]
    assert frame["ad_text"].tolist() == ["Calm.", "Wake up!"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match=r"data.train: .*nope.csv: file not found"):
        read_table(tmp_path / "nope.csv", "data.train")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(TunesmithError, match="file is empty"):
        read_table(tmp_path / "e.csv", "data.train")


def test_header_only(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("product,ad_text\n")
    with pytest.raises(TunesmithError, match="has a header but no rows"):
        read_table(tmp_path / "h.csv", "data.eval")


def test_non_utf8_names_the_offset(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("product,ad_text\ncaf\xe9,ok\n".encode("latin-1"))
    with pytest.raises(TunesmithError, match=r"latin.csv: not UTF-8 text \(invalid byte at offset \d+\)"):
        read_table(tmp_path / "latin.csv", "data.train")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(TunesmithError, match="unsupported file type '.xlsx'"):
        read_table(tmp_path / "a.xlsx", "data.train")


def test_empty_cells_stay_missing_but_text_like_na_stays_text(tmp_path: Path) -> None:
    (tmp_path / "na.csv").write_text("product,ad_text\nNA,\n")
    frame = read_table(tmp_path / "na.csv", "data.train")
    assert frame.loc[0, "product"] == "NA"
    assert pd.isna(frame.loc[0, "ad_text"])
