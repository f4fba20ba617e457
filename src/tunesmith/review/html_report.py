"""``tunesmith report``: one self-contained HTML file about a run (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tunesmith.errors import TunesmithError
from tunesmith.review.plots import curves_png
from tunesmith.rundir import atomic_write
from tunesmith.track.runview import RunView, load_run
from tunesmith.track.summary import data_rows, metric_table, overview

if TYPE_CHECKING:
    from tunesmith.doctor import Diagnosis

SHOWN_SAMPLES = 10
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
td { white-space: pre-wrap; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
.blocking { color: #b00020; font-weight: bold; } .warning { color: #a15c00; } .info { color: #666; }
"""


def write_html_report(run_dir: Path, output: Path | None = None) -> list[Path]:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report.html``) and refresh its model card.

    Returns the files written: the report, and ``model/README.md`` when the run has a model directory.
    """
    from tunesmith.track.model_card import write_model_card

    view = load_run(run_dir)
    if not view.record or not view.config:
        raise TunesmithError(f"{run_dir}: not a tunesmith run directory (no run.json / config.yaml)")
    path = output or run_dir / "report.html"
    atomic_write(path, report_html(view, _diagnose(run_dir)))
    written = [path]
    if (run_dir / "model").is_dir():
        written.append(write_model_card(run_dir))
    return written


def report_html(view: RunView, diagnosis: Diagnosis | str | None = None) -> str:
    """The whole document; ``diagnosis`` is the doctor's analysis of the data (or why there is none)."""
    header, rows = metric_table(view)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(view.id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(view.id)}</h1>",
        _table(["", ""], [list(row) for row in overview(view)]),
        "<h2>Metrics</h2>",
        _table(header, rows) if rows else "<p>No metrics recorded.</p>",
        "<h2>Curves</h2>",
        _curves(view),
        "<h2>Samples</h2>",
        _samples(view),
        "<h2>Data</h2>",
        _table(["", ""], [list(row) for row in data_rows(view)]),
        _doctor(diagnosis),
        "<h2>Config</h2>",
        f"<pre>{_e(yaml.safe_dump(view.config, sort_keys=False, allow_unicode=True))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _diagnose(run_dir: Path) -> Diagnosis | str:
    # The doctor's data checks on the run's own config; the data files may have moved since, which is fine.
    from tunesmith.config import read_yaml_mapping, validate_config
    from tunesmith.doctor import diagnose

    try:
        config = validate_config(read_yaml_mapping(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
        return diagnose(config, timing=False, source=str(run_dir / "config.yaml"))
    except TunesmithError as err:
        return f"the data could not be analysed: {err}"


def _curves(view: RunView) -> str:
    png = curves_png([view])
    if png is None:
        return "<p>No curves: metrics.jsonl has no losses.</p>"
    encoded = base64.b64encode(png).decode("ascii")
    return f"<img alt='training and eval loss' src='data:image/png;base64,{encoded}'>"


def _samples(view: RunView) -> str:
    if not view.samples:
        return "<p>No samples: run <code>tunesmith eval RUN_DIR</code> to score base and tuned answers.</p>"
    rows = []
    for sample in view.samples[:SHOWN_SAMPLES]:
        references = sample.get("references") or []
        rows.append(
            [
                str(sample.get("input", "")),
                str(references[0]) if references else "",
                str(sample.get("base_output") or "-"),
                str(sample.get("tuned_output", "")),
            ]
        )
    return _table(["input", "reference", "base", "tuned"], rows)


def _doctor(diagnosis: Diagnosis | str | None) -> str:
    if diagnosis is None:
        return ""
    if isinstance(diagnosis, str):
        return f"<p>{_e(diagnosis)}</p>"
    from tunesmith.doctor import statistics_lines

    lines = "".join(f"<li>{_e(line)}</li>" for line in statistics_lines(diagnosis))
    problems = "".join(f"<li class='{p.severity}'>{_e(p.severity)}: {_e(p.message)}</li>" for p in diagnosis.ranked())
    return f"<h3>Doctor's analysis</h3><ul>{lines}</ul><ul>{problems or '<li>no problems found</li>'}</ul>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _e(text: object) -> str:
    return html.escape(str(text))
