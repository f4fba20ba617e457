"""Live numbers of a run from its metrics.jsonl: curves, step, tokens/s and ETA."""

from __future__ import annotations

import time
from typing import Any

from tunesmith.track.runview import RunView

CURVE_KEYS = ("loss", "eval_loss")
REWARD_SHARE = "zero_variance_groups"  # GRPO: the share of prompts whose answers all scored the same


def reward_keys(views: list[RunView]) -> tuple[str, ...]:
    """The reward means a GRPO run logged (reward, reward_<name>, their eval_ twins; no spreads), and the share
    of groups without signal, in the order first logged."""
    keys: dict[str, None] = {}
    for view in views:
        for row in view.history:
            for key in row:
                bare = key.removeprefix("eval_")
                mean = (bare == "reward" or bare.startswith("reward_")) and not bare.endswith("_std")
                if mean or key == REWARD_SHARE:
                    keys.setdefault(key)
    return tuple(keys)


def curves(views: list[RunView], keys: tuple[str, ...] = CURVE_KEYS) -> dict[str, Any]:
    """Series on one shared step axis (None where a series has no point), as uPlot wants them."""
    columns: dict[str, dict[int, float]] = {}
    for view in views:
        prefix = f"{view.id} " if len(views) > 1 else ""
        for row in view.history:
            step = row.get("step")
            for key in keys:
                value = row.get(key)
                if isinstance(step, int) and isinstance(value, int | float):
                    columns.setdefault(prefix + key, {})[step] = float(value)
    steps = sorted({step for points in columns.values() for step in points})
    series = {name: [points.get(step) for step in steps] for name, points in columns.items()}
    return {"x": steps, "series": series, "points": sum(len(points) for points in columns.values())}


def progress(
    view: RunView, now: float | None = None, pid: int | None = None, active: bool | None = None
) -> dict[str, Any]:
    """Step, share done, tokens/s, ETA (seconds) and what the run is doing (None where unknown).

    live.json (rewritten by the training process at every step) gives the step from the first step on and
    the phase (training, evaluating, closing); metrics.jsonl's logged rows are the fallback. ``pid``: the
    live training process, when there is one; a live.json written by another (before a resume) is stale.
    ``active``: whether it trains now (default: run.json says running).
    """
    now = now or time.time()
    logged = [row for row in view.history if isinstance(row.get("step"), int) and "loss" in row]
    train = view.config.get("train") or {}
    live = view.live if view.live and (pid is None or view.live.get("pid") == pid) else {}
    step = max(int(live.get("step") or 0), logged[-1]["step"] if logged else 0)
    total = train.get("max_steps") or live.get("max_steps")
    running = view.record.get("status") == "running" if active is None else active
    done: dict[str, Any] = {"step": step, "total": total, "phase": live.get("phase") if running else None}
    done["eval"] = live.get("eval") if running else None
    done["fraction"] = min(1.0, step / total) if total else (_fraction(logged[-1], train) if logged else 0.0)
    finished = view.record.get("train") or {}
    session = _session_rows(logged, live)
    done["tokens_per_second"] = finished.get("tokens_per_second") or _speed(session, live)
    eta = _eta(session, live, total, step) if running and done["phase"] in (None, "train") else None
    if eta is None and running and done["phase"] is None:
        eta = _eta_by_rows(session, train, now)
    done["eta_seconds"] = eta
    return done


def _session_rows(logged: list[dict[str, Any]], live: dict[str, Any]) -> list[dict[str, Any]]:
    # Rows this training process logged: after a resume, rows from before the pause would count the pause.
    started = (live.get("session") or {}).get("started")
    return [row for row in logged if float(row.get("time", 0)) >= started] if started else logged


def _speed(rows: list[dict[str, Any]], live: dict[str, Any]) -> float | None:
    # From the first step of this process on (its warm-up and model loading left out).
    session = live.get("session") or {}
    if "first_step_time" in session and live.get("time", 0) > session["first_step_time"]:
        seconds = float(live["time"]) - float(session["first_step_time"])
        tokens = float(live.get("tokens_seen", 0)) - float(session.get("first_tokens", 0))
        return tokens / seconds if tokens > 0 else None
    if len(rows) >= 2:
        seconds = float(rows[-1].get("time", 0)) - float(rows[0].get("time", 0))
        tokens = float(rows[-1].get("tokens_seen", 0)) - float(rows[0].get("tokens_seen", 0))
        return tokens / seconds if seconds > 0 else None
    return None


def _eta(rows: list[dict[str, Any]], live: dict[str, Any], total: int | None, step: int) -> float | None:
    # This process's pace per step (evaluations included: they recur), projected over the steps left.
    session = live.get("session") or {}
    if not total or "first_step_time" not in session:
        return None
    steps = step - int(session["first_step"])
    seconds = float(live.get("time", 0)) - float(session["first_step_time"])
    if steps <= 0 or seconds <= 0:
        return None
    return max(0.0, (total - step) * seconds / steps)


def _fraction(row: dict[str, Any], train: dict[str, Any]) -> float | None:
    # Share of the run done at a logged row: by steps when max_steps is set, else by epochs.
    if train.get("max_steps"):
        return min(1.0, row["step"] / float(train["max_steps"]))
    epoch, epochs = row.get("epoch"), train.get("epochs")
    if isinstance(epoch, int | float) and isinstance(epochs, int | float) and epochs > 0:
        return min(1.0, epoch / epochs)
    return None


def _eta_by_rows(logged: list[dict[str, Any]], train: dict[str, Any], now: float) -> float | None:
    # Without live.json (a run trained before it existed): the pace between the first and last logged rows.
    if len(logged) < 2:
        return None
    start, end = _fraction(logged[0], train), _fraction(logged[-1], train)
    seconds = float(logged[-1].get("time", now)) - float(logged[0].get("time", now))
    if start is None or end is None or end <= start or seconds <= 0:
        return None
    return (1.0 - end) * seconds / (end - start)


def activity(prog: dict[str, Any], stopping: bool = False) -> str | None:
    """What the run is busy with, in words (None while it simply trains)."""
    phase, evaluation = prog.get("phase"), prog.get("eval") or {}
    if phase in ("eval", "generate"):
        where = "closing evaluation" if evaluation.get("final") else f"evaluation at step {evaluation.get('at_step')}"
        if phase == "generate":
            text = f"{where}: answering {evaluation.get('samples')} eval samples for eval.metrics"
        else:
            total = evaluation.get("total")
            text = f"{where}: batch {evaluation.get('batches')}" + (f"/{total}" if total else "")
        return text + (", then a checkpoint is saved" if stopping and not evaluation.get("final") else "")
    if phase == "closing":
        return "training done: evaluating the final weights and saving the model"
    if stopping:
        step = prog.get("step") or 0
        return f"finishing step {step + 1}, then a checkpoint is saved" if phase == "train" else "the model to load"
    return None


def duration(seconds: float | None) -> str:
    """``95`` -> ``1 min 35 s``; None -> ``-``."""
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
