"""The pages and their htmx fragments: New run, Runs, Run, Compare, Chat."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tunesmith.errors import TunesmithError
from tunesmith.ui import forms, launch, paths, progress
from tunesmith.ui.pages import (
    CELL_CHARS,
    FINAL_STATES,
    PREVIEW_ROWS,
    SORTS,
    STOP_POLLING,
    UiSettings,
    redirect,
    render,
    save_upload,
    settings_of,
)

router = APIRouter()
CONVERSATIONS_SHOWN = 3  # a conversation is many lines: fewer rows than a table's
LIVE = ("starting", "running", "stopping")  # a training process is at work (its run.json may lag behind)


# ---- New run -------------------------------------------------------------------------------------------------


@router.get("/")
def home() -> Response:
    """The runs list is the start page."""
    return redirect("/runs")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness probe."""
    return {"status": "ok"}


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """The tab icon (browsers ask for it on every page)."""
    icon = Path(__file__).parent / "static" / "favicon.ico"
    return FileResponse(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


@router.get("/new", response_class=HTMLResponse)
def new_run(request: Request) -> HTMLResponse:
    """The New-run page: data, templates, model, method, hyperparameters, preview, YAML, launch."""
    from tunesmith.models.embedded import EMBEDDED

    settings = settings_of(request)
    return render(
        request,
        "new.html",
        fields=forms.FIELDS,
        groups=forms.GROUPS,
        tables=paths.list_tables(settings.data_root),
        embedded=EMBEDDED,
        values={},
    )


@router.post("/new/upload", response_class=HTMLResponse)
async def upload(request: Request, file: UploadFile) -> HTMLResponse:
    """Store an uploaded table under the data root and show its columns and first rows."""
    settings = settings_of(request)
    saved = await save_upload(file, settings)
    relative = paths.relative_to_root(settings.data_root, saved)
    return await run_in_threadpool(_table_fragment, request, relative, True)


@router.get("/new/table", response_class=HTMLResponse)
def table(request: Request) -> HTMLResponse:
    """Columns and first rows of a table under the data root (the ``data.train`` field's value)."""
    return _table_fragment(request, request.query_params.get("data.train", ""))


def _table_fragment(request: Request, relative: str, uploaded: bool = False) -> HTMLResponse:
    from tunesmith.data.tables import read_table

    path = paths.safe_path(settings_of(request).data_root, relative, "data.train")
    frame = read_table(path, "data.train")
    rows = [[_cell(value) for value in row] for row in frame.head(PREVIEW_ROWS).itertuples(index=False)]
    columns = [str(column) for column in frame.columns]
    context: dict[str, Any] = {"relative": relative, "columns": columns, "rows": rows, "total": len(frame)}
    return render(request, "_table.html", uploaded=uploaded, **context, **_table_conversations(frame, path))


def _table_conversations(frame: Any, path: Path) -> dict[str, Any]:
    """A conversation table's first rows as conversations (or the data layer's line on its first malformed one)."""
    from tunesmith.ui.conversations import messages_column, table_views, tools_column

    messages = messages_column(frame)
    if messages is None:
        return {}
    tools = tools_column(frame, messages)
    found: dict[str, Any] = {"messages_column": messages, "tools_column": tools}
    try:
        found["conversations"] = table_views(frame, messages, tools, path, limit=CONVERSATIONS_SHOWN)
    except TunesmithError as err:
        found["malformed"] = str(err)
    return found


def _cell(value: Any) -> str:
    text = "" if value is None or value != value else str(value)  # NaN != NaN
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


# Routes that do blocking work (the doctor, files, processes) are plain functions, which FastAPI runs in its
# thread pool, so the page's polling keeps being answered; the form is read by this async dependency first.
FormValues = Annotated[dict[str, str], Depends(_form)]


def _validated(values: dict[str, str], settings: UiSettings) -> tuple[Any, dict[str, Any], dict[str, str]]:
    raw, errors = forms.raw_config(values, settings.data_root)
    config, errors = forms.validate_form(raw, errors)
    return config, raw, errors


@router.post("/new/preview", response_class=HTMLResponse)
def preview(request: Request, values: FormValues) -> HTMLResponse:
    """Validate the form like the CLI; render three examples as the model sees them, with the doctor's findings."""
    config, raw, errors, diagnosis = _checked(request, values)
    return _preview_fragment(request, raw, errors, diagnosis, config)


def _checked(request: Request, values: dict[str, str]) -> tuple[Any, dict[str, Any], dict[str, str], Any]:
    """The form validated like the CLI, then read by the doctor (templates against the table's columns...)."""
    from tunesmith.doctor import diagnose

    config, raw, errors = _validated(values, settings_of(request))
    diagnosis = None
    if config is not None:
        try:
            with request.app.state.doctor_lock:  # one at a time: they share the tokenised-data cache
                diagnosis = diagnose(config, timing=False, source="form")
        except TunesmithError as err:
            errors[forms.field_of(str(err), raw)] = str(err)
    return config, raw, errors, diagnosis


def _preview_fragment(
    request: Request, raw: dict[str, Any], errors: dict[str, str], diagnosis: Any, config: Any,
    launch_error: str = "", status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    from tunesmith.doctor import statistics_lines

    stats = statistics_lines(diagnosis) if diagnosis is not None else []
    task = config.task if config is not None else raw.get("task", "causal_lm")
    # A preview refresh clears Launch's message only once the form would launch; until then it stays.
    launchable = config is not None and not errors and not _blocking(diagnosis)
    return render(request, "_preview.html", status_code=status_code, fields=forms.FIELDS, errors=errors,
                  yaml=forms.config_yaml(raw), diagnosis=diagnosis, stats=stats, task=task,
                  launch_error=launch_error, launchable=launchable,
                  conversations=_example_conversations(config, diagnosis))  # fmt: skip


def _example_conversations(config: Any, diagnosis: Any) -> dict[int, Any]:
    """The doctor's example rows of a conversation run, turn by turn (row number -> conversation view)."""
    from tunesmith.data.conversation import read_conversations
    from tunesmith.data.tables import read_table
    from tunesmith.ui.conversations import view_of

    if config is None or diagnosis is None or config.data.messages is None or not diagnosis.examples:
        return {}
    data = config.data
    rows = {example.row for example in diagnosis.examples}
    # The doctor has read this table already (a malformed message would have stopped it): only lay it out.
    conversations = read_conversations(read_table(data.train, "data.train"), data.messages, data.tools, data.train,
                                       data.system)  # fmt: skip
    return {c.row: view_of(c, data.loss_on) for c in conversations if c.row in rows}


def _blocking(diagnosis: Any) -> list[str]:
    return [p.message for p in diagnosis.ranked() if p.severity == "blocking"] if diagnosis is not None else []


@router.post("/new/estimate", response_class=HTMLResponse)
def estimate(request: Request, values: FormValues) -> HTMLResponse:
    """The doctor's memory and time estimate: a few timed optimizer steps on real batches (takes a while)."""
    from tunesmith.doctor import diagnose, timing_summary

    config, _, errors = _validated(values, settings_of(request))
    if config is None:
        raise TunesmithError(next(iter(errors.values())))
    with request.app.state.doctor_lock:
        diagnosis = diagnose(config, timing=True, source="form")
    if diagnosis.timing is None:
        blocking = [p.message for p in diagnosis.ranked() if p.severity == "blocking"]
        raise TunesmithError("no estimate: " + (blocking[0] if blocking else "training would not start"))
    return render(request, "_estimate.html", summary=timing_summary(diagnosis.timing))


@router.post("/new/config.yaml")
def download_config(request: Request, values: FormValues) -> Response:
    """The config as a YAML file to keep (validated first)."""
    config, raw, errors = _validated(values, settings_of(request))
    if config is None:
        raise TunesmithError("; ".join(errors.values()))
    headers = {"Content-Disposition": f'attachment; filename="{config.name}.yaml"'}
    return Response(forms.config_yaml(raw), media_type="application/x-yaml", headers=headers)


@router.post("/new/launch", response_class=HTMLResponse)
def launch_run(request: Request, values: FormValues) -> Response:
    """Start ``tunesmith train`` as its own process and go to the run's page; a form with a problem never starts.

    The doctor reads the data first, as the preview does: a template naming a missing column, an empty table
    or a blocking finding is shown next to its field and next to the Launch button, and no run is made.
    """
    settings = settings_of(request)
    config, raw, errors, diagnosis = _checked(request, values)
    blocking = _blocking(diagnosis)
    if config is None or errors or blocking:
        problems = list(errors.values()) + blocking
        message = "Not launched: " + "; ".join(problems)
        return _preview_fragment(request, raw, errors, diagnosis, config, launch_error=message, status_code=422)
    run_dir = launch.launch_train(forms.config_yaml(raw), config.name, settings.runs_dir, settings.data_root)
    return Response(status_code=200, headers={"HX-Redirect": _run_url(settings, run_dir)})


# ---- Runs ----------------------------------------------------------------------------------------------------


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> HTMLResponse:
    """The registry as a table, filtered and sorted, refreshed live."""
    return render(request, "runs.html", sorts=SORTS, query=dict(request.query_params))


@router.get("/runs/table", response_class=HTMLResponse)
def runs_table(request: Request) -> HTMLResponse:
    """The table fragment the Runs page polls."""
    from tunesmith.track.registry import list_runs

    settings = settings_of(request)
    query = request.query_params
    filters = [f"{key}={query[key]}" for key in ("task", "method") if query.get(key)]
    sort = query.get("sort") or "newest"
    listing = list_runs(settings.runs_dir, sort if sort not in ("newest", "name", "status") else None, filters)
    rows = [_row(settings, row) for row in listing.rows if not row.missing and row.kind != "study"]
    rows += [] if filters else _starting(settings, {row["path"] for row in rows})
    # The status filter applies to the status shown, which the registry cannot know: a run whose process is
    # gone is failed here while its run.json still says running, and one launched here may have no run.json.
    if wanted := query.get("status"):
        rows = [row for row in rows if row["status"] == wanted or (wanted == "running" and row["status"] in LIVE)]
    if sort in ("newest", "name", "status"):
        key = "created_at" if sort == "newest" else sort
        rows.sort(key=lambda row: str(row.get(key) or ""), reverse=sort == "newest")
    filtered = bool(filters or query.get("status"))
    return render(request, "_runs_table.html", rows=rows, warning=listing.warning, filtered=filtered)


def _row(settings: UiSettings, row: Any) -> dict[str, Any]:
    from tunesmith.track.runview import load_run

    path = Path(row.path)
    shown = {
        "id": row.id, "path": row.path, "name": row.name, "task": row.task, "method": row.method,
        "model": row.model, "status": row.status, "created_at": row.created_at, "metrics": row.metrics,
        "url": _run_url(settings, path) if path.is_relative_to(settings.runs_dir) else None,
    }  # fmt: skip
    if row.status == "running" or (path / "ui-train.json").is_file():
        status = launch.read_status(path)
        shown["status"] = status["state"]
        if status["state"] in LIVE:
            shown["progress"] = progress.progress(load_run(path), pid=status["pid"], active=True)
            shown["activity"] = progress.activity(shown["progress"], status["state"] == "stopping")
    return shown


def _starting(settings: UiSettings, known: set[str]) -> list[dict[str, Any]]:
    # Launched from here, still loading the model: no run.json yet, so not in the registry.
    found = []
    for marker in sorted(settings.runs_dir.glob("*/ui-train.json")):
        path = marker.parent
        if str(path) in known or (path / "run.json").is_file():
            continue
        status = launch.read_status(path)
        found.append(
            {"id": path.name, "path": str(path), "name": path.name, "status": status["state"], "created_at": None,
             "metrics": {}, "url": _run_url(settings, path), "error": status["error"]}
        )  # fmt: skip
    return found


def _run_url(settings: UiSettings, run_dir: Path) -> str:
    return "/run?" + urlencode({"id": paths.relative_to_root(settings.runs_dir, run_dir)})


# ---- One run -------------------------------------------------------------------------------------------------


def _run_dir(request: Request, ref: str | None = None) -> Path:
    settings = settings_of(request)
    ref = ref if ref is not None else request.query_params.get("id", "")
    run_dir = paths.safe_path(settings.runs_dir, ref, "id")
    if not run_dir.is_dir() or run_dir == settings.runs_dir:
        raise TunesmithError(f"id: {ref!r}: no such run under {settings.runs_dir}")
    return run_dir


@router.get("/run", response_class=HTMLResponse)
def run_page(request: Request) -> HTMLResponse:
    """Config, live curves, tokens/s and ETA, Stop / Resume / Eval, the report."""
    from tunesmith.track.runview import load_run

    run_dir = _run_dir(request)
    view = load_run(run_dir)
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    if not config_text and (run_dir / "launch.yaml").is_file():
        config_text = (run_dir / "launch.yaml").read_text()
    tables = paths.list_tables(settings_of(request).data_root)  # for the Evaluate field
    # A run whose objective samples and rewards answers (asked of the registry) also charts its rewards.
    objective = (view.config.get("train") or {}).get("objective") or "sft"
    rewards = objective in forms.REWARD_OBJECTIVES or bool(progress.reward_keys([view]))
    return render(request, "run.html", run_id=request.query_params["id"], view=view, config_text=config_text,
                  tables=tables, reward_chart=rewards, **_status_context(run_dir))  # fmt: skip


def _status_context(run_dir: Path) -> dict[str, Any]:
    from tunesmith.track.runview import load_run

    view = load_run(run_dir)
    status = launch.read_status(run_dir)
    live = progress.progress(view, pid=status["pid"], active=status["state"] in LIVE)
    evaluation = (view.evaluation or {}).get("metrics") or {}
    names = sorted({*evaluation.get("tuned", {}), *evaluation.get("base", {})})
    return {
        "status": status,
        "progress": live,
        "activity": progress.activity(live, status["state"] == "stopping") if status["state"] in LIVE else None,
        "log": launch.log_tail(run_dir / "train.log"),
        "eval_names": names,
        "evaluation": evaluation,
        "samples": view.samples[:5],
        "checkpoints": any((run_dir / "checkpoints").glob("checkpoint-*")),
        "export": launch.export_status(run_dir),
        "export_kinds": _export_kinds(),
        "export_quants": launch.EXPORT_QUANTS,
    }


def _export_kinds() -> tuple[str, ...]:
    from tunesmith.export import KINDS

    return tuple(KINDS)


def _status_fragment(request: Request, run_dir: Path) -> HTMLResponse:
    context = _status_context(run_dir)
    busy = context["status"]["evaluating"] or context["export"]["running"]
    final = context["status"]["state"] in FINAL_STATES and not busy
    run_id = paths.relative_to_root(settings_of(request).runs_dir, run_dir)
    # A poll (GET) stops once nothing can change without a click; a click's answer (POST) polls again.
    status = STOP_POLLING if final and request.method == "GET" else 200
    return render(request, "_run_status.html", status_code=status, run_id=run_id, **context)


@router.get("/run/status", response_class=HTMLResponse)
def run_status(request: Request) -> HTMLResponse:
    """The live part of the run page (polled)."""
    return _status_fragment(request, _run_dir(request))


@router.get("/run/curves")
def run_curves(request: Request) -> JSONResponse:
    """Loss and eval-loss points for the chart; ``kind=rewards``: a GRPO run's reward means per step."""
    from tunesmith.track.runview import load_run

    run_dir = _run_dir(request)
    view = load_run(run_dir)
    if request.query_params.get("kind") == "rewards":
        data = progress.curves([view], progress.reward_keys([view])) | {"label": "reward"}
    else:
        data = progress.curves([view])
    data["live"] = launch.read_status(run_dir)["alive"]
    return JSONResponse(data)


@router.post("/run/stop", response_class=HTMLResponse)
def run_stop(request: Request, values: FormValues) -> HTMLResponse:
    """Stop as Ctrl-C does: the trainer finishes the step, saves a checkpoint, marks the run interrupted.

    The answer says "stopping" at once, with what the trainer still finishes; asked again, it aborts.
    """
    run_dir = _run_dir(request, values.get("id", ""))
    launch.stop_run(run_dir)
    return _status_fragment(request, run_dir)


@router.post("/run/resume", response_class=HTMLResponse)
def run_resume(request: Request, values: FormValues) -> HTMLResponse:
    """Continue an interrupted run from its last checkpoint (a new training process)."""
    settings = settings_of(request)
    run_dir = _run_dir(request, values.get("id", ""))
    launch.resume_train(run_dir, settings.runs_dir, settings.data_root)
    return _status_fragment(request, run_dir)


@router.post("/run/eval", response_class=HTMLResponse)
def run_eval(request: Request, values: FormValues) -> HTMLResponse:
    """Run ``tunesmith eval`` (base vs tuned, samples side by side) in the background.

    ``data``: a table under the data root to evaluate on instead of the run's held-out split.
    """
    settings = settings_of(request)
    run_dir = _run_dir(request, values.get("id", ""))
    table = (values.get("data") or "").strip()
    data = paths.safe_path(settings.data_root, table, "data") if table else None
    if data is not None:
        paths.check_table(data, "data")
    launch.start_eval(run_dir, settings.data_root, data)
    return _status_fragment(request, run_dir)


@router.post("/run/export", response_class=HTMLResponse)
def run_export(request: Request, values: FormValues) -> HTMLResponse:
    """Run ``tunesmith export`` (merged weights, GGUF or an Ollama folder) in the background."""
    run_dir = _run_dir(request, values.get("id", ""))
    launch.start_export(run_dir, values.get("to", ""), values.get("quant") or None, settings_of(request).data_root)
    return _status_fragment(request, run_dir)


@router.get("/run/report", response_class=HTMLResponse)
def run_report(request: Request) -> HTMLResponse:
    """The run's HTML report (the same document ``tunesmith report`` writes)."""
    from tunesmith.review.html_report import report_html
    from tunesmith.track.runview import load_run

    view = load_run(_run_dir(request))
    if not view.record:
        raise TunesmithError(f"id: {view.id}: no run.json yet; the report needs a started run")
    return HTMLResponse(report_html(view))


# ---- Compare -------------------------------------------------------------------------------------------------


def _all_runs(settings: UiSettings) -> list[dict[str, Any]]:
    from tunesmith.track.registry import list_runs

    rows = list_runs(settings.runs_dir).rows
    found = [
        {"id": paths.relative_to_root(settings.runs_dir, Path(r.path)), "status": r.status, "task": r.task,
         "created_at": r.created_at or ""}
        for r in rows if not r.missing and r.kind != "study" and Path(r.path).is_relative_to(settings.runs_dir)
    ]  # fmt: skip
    return sorted(found, key=lambda row: row["created_at"], reverse=True)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    """Pick runs; the config keys that differ, metrics with deltas, curves overlaid, answers side by side."""
    from tunesmith.review.compare import compare_runs

    settings = settings_of(request)
    picked = request.query_params.getlist("run")
    comparison = None
    if len(picked) >= 2:
        dirs = [str(_run_dir(request, ref)) for ref in picked]
        with tempfile.TemporaryDirectory() as scratch:  # compare_runs also draws a PNG; the page draws its own
            comparison = compare_runs(dirs, settings.runs_dir, Path(scratch) / "curves.png", max_samples=5)
    elif picked:
        raise TunesmithError("run: pick at least two runs to compare")
    without = []
    if comparison is not None:
        # compare_runs tells a terminal user which command to run; here the run page's Evaluate button does it.
        comparison.notes = [note for note in comparison.notes if not note.startswith("no samples for ")]
        without = [{"id": ref, "url": _run_url(settings, _run_dir(request, ref))} for ref in picked
                   if not (_run_dir(request, ref) / "samples.jsonl").is_file()]  # fmt: skip
    query = urlencode([("run", ref) for ref in picked])
    return render(request, "compare.html", runs=_all_runs(settings), picked=picked, comparison=comparison,
                  query=query, without_samples=without)  # fmt: skip


@router.get("/compare/curves")
def compare_curves(request: Request) -> JSONResponse:
    """Every picked run's loss curves on one step axis."""
    from tunesmith.track.runview import load_run

    views = [load_run(_run_dir(request, ref)) for ref in request.query_params.getlist("run")]
    return JSONResponse(progress.curves(views) | {"live": False})


# ---- Chat ----------------------------------------------------------------------------------------------------


@router.get("/chat", response_class=HTMLResponse)
def chat_page(request: Request) -> HTMLResponse:
    """Talk to a completed run and its base model side by side, with a history and the run's tools."""
    settings = settings_of(request)
    runs = [row for row in _all_runs(settings) if row["status"] == "completed"]
    picked = request.query_params.get("id", "")
    shown = picked if picked in {run["id"] for run in runs} else (runs[0]["id"] if runs else "")
    tools = _run_tools(request, shown) if shown else []  # the tools of the run the select shows
    return render(request, "chat.html", runs=runs, picked=picked, tools=tools)


def _run_tools(request: Request, ref: str) -> list[dict[str, Any]]:
    from tunesmith.ui.chat import run_tools

    return run_tools(_run_dir(request, ref)) if ref else []


@router.get("/chat/tools", response_class=HTMLResponse)
def chat_tools(request: Request) -> HTMLResponse:
    """Another run picked: its tools, and a new conversation."""
    tools = _run_tools(request, request.query_params.get("id", ""))
    return render(request, "_chat_tools.html", tools=tools, fresh=True)


@router.post("/chat/clear", response_class=HTMLResponse)
def chat_clear(request: Request) -> HTMLResponse:
    """Forget the history: the next message starts a new conversation."""
    return render(request, "_chat_history.html", exchange=None, turns=[])


@router.post("/chat/send", response_class=HTMLResponse)
def chat_send(request: Request, values: FormValues) -> HTMLResponse:
    """One exchange: the tuned model's next turn (after the history and any tool results) and the base model's."""
    from tunesmith.ui import chat
    from tunesmith.ui.conversations import turns_of

    run_dir = _run_dir(request, values.get("id", ""))
    tokens = _bounded_int(values.get("max_new_tokens", "48"), "max_new_tokens", 1, 512)
    models: chat.ChatModels = request.app.state.chat
    if not models.keeps_history(run_dir):
        reply = models.reply(run_dir, values.get("message", ""), tokens)
        # One message at a time: earlier exchanges stay on the page above the new one.
        return render(request, "_chat_turn.html", reply=reply, headers={"HX-Reswap": "afterbegin"})
    tools = chat.parse_tools(values.get("tools", ""))
    history = chat.checked_history(chat.parse_history(values.get("history", "")), tools)
    results = [values[key] for key in sorted(values, key=_result_number) if key.startswith("tool_result_")]
    history = chat.add_turns(history, results, values.get("message", ""))
    history = chat.checked_history(history, tools)  # the tool results now answer their calls
    exchange = models.converse(run_dir, history, tools, tokens)
    return render(request, "_chat_history.html", exchange=exchange, turns=turns_of(exchange.history, None))


def _result_number(key: str) -> int:
    tail = key.removeprefix("tool_result_")
    return int(tail) if tail.isdigit() else 10**6


def _bounded_int(text: str, field: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise TunesmithError(f"{field}: {text!r} is not a whole number") from err
    if not low <= value <= high:
        raise TunesmithError(f"{field}: {value} is outside {low}..{high}")
    return value
