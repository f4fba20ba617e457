"""``{column}`` templates: which columns they use, checking them against a table, rendering rows."""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

_FORMATTER = string.Formatter()


def template_columns(template: str, key: str) -> list[str]:
    """Column names a template refers to, in order; ``{{`` and ``}}`` are literal braces."""
    try:
        parsed = [(field, spec, conversion) for _, field, spec, conversion in _FORMATTER.parse(template)]
    except ValueError as err:
        raise TunesmithError(f"{key}: invalid template {template!r}: {err}", hint="write {{ for a literal {") from err
    fields = [field for field, _, _ in parsed if field is not None]
    for field, spec, conversion in parsed:
        if field is not None and (not field or spec or conversion or any(ch in field for ch in ".[]")):
            raise TunesmithError(f"{key}: placeholder {{{field}}} must be a plain column name")
    return list(dict.fromkeys(fields))


def check_columns(templates: Mapping[str, str | None], columns: Iterable[str], source: Path) -> None:
    """Fail with one line when a template names a column the table does not have."""
    available = list(columns)
    for key, template in templates.items():
        if template is None:
            continue
        missing = [c for c in template_columns(template, key) if c not in available]
        if missing:
            raise TunesmithError(
                f"{key}: column {missing[0]!r} is not in {source}",
                hint=f"columns: {', '.join(available)}",
            )


def render(template: str, row: Mapping[str, Any]) -> str:
    """Fill a template from one row; missing values (NaN, None) render as empty text."""
    values = {column: _cell_text(row.get(column)) for column in template_columns(template, "template")}
    return template.format(**values).strip()


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()
