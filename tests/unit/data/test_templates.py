from pathlib import Path

import pytest

from tunesmith.data.templates import check_columns, render, template_columns
from tunesmith.errors import TunesmithError


def test_columns_in_order_without_duplicates() -> None:
    assert template_columns("{b} then {a} and {b} {{literal}}", "data.prompt") == ["b", "a"]


def test_missing_column_lists_the_existing_ones() -> None:
    with pytest.raises(
        TunesmithError, match=r"data.prompt: column 'prodcut' is not in ads.csv \(columns: product, ad_text\)"
    ):
        check_columns({"data.prompt": "Ad for {prodcut}"}, ["product", "ad_text"], Path("ads.csv"))


@pytest.mark.parametrize("template", ["{a.b}", "{a[0]}", "{}", "{a!r}"])
def test_placeholders_must_be_plain_column_names(template: str) -> None:
    with pytest.raises(TunesmithError, match="must be a plain column name"):
        template_columns(template, "data.response")


def test_unbalanced_brace_is_a_clear_error() -> None:
    with pytest.raises(TunesmithError, match="invalid template"):
        template_columns("Ad for {product", "data.prompt")


def test_render_fills_and_strips_and_blanks_missing_values() -> None:
    assert render("Ad for {p} ({e})", {"p": " tea ", "e": float("nan")}) == "Ad for tea ()"
    assert render("{{json}} {p}", {"p": 3}) == "{json} 3"
