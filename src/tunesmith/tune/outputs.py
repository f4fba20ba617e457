"""What a study leaves behind: trials.csv, best.yaml, plot.png, and the summary table the CLI prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.config import dump_config
from tunesmith.rundir import atomic_write
from tunesmith.tune.record import TrialRow, as_table
from tunesmith.tune.space import trial_config


def write_outputs(
    study_dir: Path, rows: list[TrialRow], metric: str, mode: str, best: TrialRow | None, base: dict[str, Any]
) -> dict[str, Path]:
    """Write trials.csv (always), best.yaml (when a trial scored) and plot.png (when a trial evaluated)."""
    written = {"trials": study_dir / "trials.csv"}
    atomic_write(written["trials"], as_table(rows, metric, mode).to_csv(index=False))
    if best is not None:
        # The user's config with the best values: the trial-only settings (name, eval_steps) are not in it.
        config = trial_config(base, best.params, source=f"trial {best.trial}")
        written["best"] = study_dir / "best.yaml"
        header = f"# Best of study {study_dir.name}: trial {best.trial}, {metric} {best.best(mode):.4f}\n"
        atomic_write(written["best"], header + dump_config(config))
    if any(row.history for row in rows):
        written["plot"] = study_dir / "plot.png"
        plot_study(rows, metric, mode, written["plot"])
    return written


def influential_params(rows: list[TrialRow], mode: str, top: int = 2) -> list[str]:
    """The searched keys whose values track the metric most (absolute Spearman correlation), best first."""
    import pandas as pd

    scored = [r for r in rows if r.history]
    if len(scored) < 2:
        return []
    frame = pd.DataFrame(
        [{**{k: _as_table_value(v) for k, v in r.params.items()}, "_metric": r.best(mode)} for r in scored]
    )
    strength = {}
    for key in frame.columns.drop("_metric"):
        column = frame[key]
        if not pd.api.types.is_numeric_dtype(column):
            # Categories (method names, module lists) correlate through their order of first sight.
            column = pd.Series(pd.factorize(column)[0], index=frame.index).where(column.notna())
        pair = pd.DataFrame({"x": column, "y": frame["_metric"]}).dropna()
        if len(pair) >= 2 and pair["x"].nunique() > 1:
            rho = pair["x"].corr(pair["y"], method="spearman")
            strength[key] = 0.0 if math.isnan(rho) else abs(rho)
    return sorted(strength, key=lambda k: -strength[k])[:top]


def _as_table_value(value: Any) -> Any:
    return str(value) if isinstance(value, list | dict) else value


def plot_study(rows: list[TrialRow], metric: str, mode: str, path: Path) -> None:
    """The metric per trial over evaluations, and against the two most influential parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = influential_params(rows, mode)
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(5 * (1 + len(keys)), 4), squeeze=False)
    curves = axes[0][0]
    for row in rows:
        if row.history:
            style = "-" if row.status == "completed" else "--"
            curves.plot(
                range(1, len(row.history) + 1), row.history, style, marker="o", label=f"{row.trial} {row.status}"
            )
    curves.set(xlabel="evaluation", ylabel=metric, title=f"{metric} per trial")
    curves.legend(fontsize="small")
    for axis, key in zip(axes[0][1:], keys, strict=True):
        points = [(r.params.get(key), r.best(mode)) for r in rows if r.history and key in r.params]
        xs = [x if isinstance(x, int | float) else str(x) for x, _ in points]
        axis.scatter(xs, [y for _, y in points])
        if all(isinstance(x, int | float) and x > 0 for x in xs) and max(xs) / min(xs) >= 100:  # type: ignore[operator]
            axis.set_xscale("log")
        axis.set(xlabel=key, ylabel=f"best {metric}", title=f"{metric} against {key}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_table(rows: list[TrialRow], metric: str, mode: str, best: TrialRow | None) -> Any:
    """A rich table of every trial, best first."""
    from rich.table import Table

    keys = list(dict.fromkeys(k for row in rows for k in row.params))
    table = Table(title=f"tune: {len(rows)} trials, {metric} ({mode})", title_justify="left")
    for column in ("trial", "status", *keys, f"best {metric}", "evals", "note"):
        fixed = column in ("trial", "status", "evals") or column.startswith("best")
        table.add_column(column, justify="right" if column in ("trial", "evals") else "left", no_wrap=fixed)
    sign = 1 if mode == "min" else -1
    ordered = sorted(rows, key=lambda r: (math.isnan(r.best(mode)), sign * r.best(mode) if r.history else 0.0))
    for row in ordered:
        mark = " *" if best is not None and row.trial == best.trial else ""
        value = "" if math.isnan(row.best(mode)) else f"{row.best(mode):.4f}{mark}"
        cells = [_short(row.params.get(k, "")) for k in keys]
        table.add_row(str(row.trial), row.status, *cells, value, str(len(row.history)), row.error[:60])
    return table


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
