"""The run registry: one SQLite table (``<runs dir>/index.db``) of every train, eval and tune run.

The run directories are the truth; the registry is an index over them that can always be rebuilt by scanning
(``tunesmith runs list`` does that on every call). So a registry problem (corrupt file, a lock held too long)
never fails a run: it is reported in one line and the run is picked up by the next command.
Writers use WAL mode and a busy timeout, so trials of a study writing at once all land.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.console import say
from tunesmith.errors import TunesmithError
from tunesmith.metric_specs import lower_is_better
from tunesmith.rundir import now_iso
from tunesmith.track.runview import RunView, flatten, load_run

REGISTRY_ENV = "TUNESMITH_REGISTRY"
BUSY_TIMEOUT_S = 15.0
# Run directories sit directly under the runs dir; trials sit inside a study's directory (study.json).
SCAN_PATTERNS = ("*/run.json", "*/study.json", "*/*/run.json", "*/*/*/run.json")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    name TEXT,
    kind TEXT,
    parent TEXT,
    status TEXT,
    task TEXT,
    method TEXT,
    model TEXT,
    config_hash TEXT,
    data_hashes TEXT,
    metrics TEXT,
    timings TEXT,
    config TEXT,
    created_at TEXT,
    updated_at TEXT
)
"""
_JSON_COLUMNS = ("data_hashes", "metrics", "timings", "config")


@dataclass
class RunRow:
    """One registry row; ``missing`` when its directory no longer exists."""

    id: str
    path: str
    name: str | None = None
    kind: str | None = None
    parent: str | None = None
    status: str | None = None
    task: str | None = None
    method: str | None = None
    model: str | None = None
    config_hash: str | None = None
    data_hashes: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    missing: bool = False


@dataclass
class Listing:
    """The runs ``runs list`` shows, and a warning when the registry itself could not be used."""

    rows: list[RunRow]
    warning: str | None = None


def registry_path(runs_dir: Path) -> Path:
    """Where the registry of ``runs_dir`` lives: ``$TUNESMITH_REGISTRY`` or ``runs_dir/index.db``."""
    override = os.environ.get(REGISTRY_ENV)
    return Path(override).expanduser() if override else runs_dir / "index.db"


def record_run(run_dir: Path) -> None:
    """Upsert the row of ``run_dir`` (from run.json, config.yaml, eval.json) into its runs dir's registry.

    Never raises: the run matters more than its index entry. A problem is one warning line, and the next
    ``tunesmith runs list`` adds the run by scanning.
    """
    db = registry_path(run_dir.parent)
    try:
        view = load_run(run_dir)
        db = registry_path(runs_dir_of(view))
        with _connection(db) as conn:
            _upsert(conn, row_from_view(view))
    except Exception as err:  # any registry failure, corrupt file or bug alike, must not fail the run
        say(f"warning: run registry {db}: {_reason(err)}; the run is fine and the next `tunesmith runs list` adds it")


def runs_dir_of(view: RunView) -> Path:
    """The runs directory a run belongs to: its parent, or for a trial the directory holding its study."""
    parent = view.record.get("parent")
    if parent:
        for ancestor in view.run_dir.resolve().parents:
            if ancestor.name == parent:
                return ancestor.parent
    return view.run_dir.parent


def row_from_view(view: RunView) -> RunRow:
    """The registry row for a run directory's files."""
    record = view.record
    parent = record.get("parent")
    model = record.get("model") or {}
    return RunRow(
        id=view.id,
        path=str(view.run_dir.resolve()),
        name=record.get("name") or view.config.get("name"),
        kind=record.get("kind") or ("trial" if parent else "train"),
        parent=parent,
        status=record.get("status"),
        task=view.task,
        method=record.get("method") or (view.config.get("method") or {}).get("name"),
        model=model.get("name") if isinstance(model, dict) else str(model),
        config_hash=record.get("config_hash"),
        data_hashes=(record.get("data") or {}).get("sha256") or {},
        metrics=view.key_metrics(),
        timings=record.get("timings") or {},
        config=flatten(view.config),
        created_at=record.get("started_at") or record.get("created_at") or now_iso(),
        updated_at=now_iso(),
    )


def list_runs(runs_dir: Path, sort: str | None = None, filters: list[str] | None = None) -> Listing:
    """Every run under ``runs_dir`` (the registry, refreshed from the run directories), filtered and sorted.

    When the registry cannot be opened the runs are listed from the directories alone, with a warning.
    """
    matchers = [parse_filter(item) for item in filters or []]
    warning = None
    try:
        rows = sync(runs_dir)
    except (sqlite3.Error, OSError) as err:
        db = registry_path(runs_dir)
        warning = f"run registry {db}: {_reason(err)}; listing from the run directories (remove it to rebuild it)"
        rows = [row_from_view(load_run(path)) for path in scan(runs_dir)]
    rows = [row for row in rows if all(match(row) for match in matchers)]
    return Listing(sort_rows(rows, sort) if sort else rows, warning)


def sync(runs_dir: Path) -> list[RunRow]:
    """Upsert every run directory found under ``runs_dir``, then return all rows (deleted ones marked missing)."""
    with _connection(registry_path(runs_dir)) as conn:
        for run_dir in scan(runs_dir):
            _upsert(conn, row_from_view(load_run(run_dir)))
        rows = [_row(values) for values in conn.execute("SELECT * FROM runs ORDER BY created_at, id")]
    for row in rows:
        row.missing = not Path(row.path).is_dir()
        if row.missing:
            row.status = "missing"
    return rows


def scan(runs_dir: Path) -> list[Path]:
    """Run directories (with a run.json) under ``runs_dir``, nested up to three levels for trials."""
    if not runs_dir.is_dir():
        return []
    return sorted({found.parent for pattern in SCAN_PATTERNS for found in runs_dir.glob(pattern)})


def find_run(runs_dir: Path, ref: str) -> Path:
    """A run directory from a path or a run id (a directory name, or a unique prefix of one)."""
    if Path(ref).is_dir():
        return Path(ref)
    row = get_row(runs_dir, ref)
    if row.missing:
        raise TunesmithError(f"run {ref!r}: its directory {row.path} is missing (deleted by hand?)")
    return Path(row.path)


def get_row(runs_dir: Path, ref: str) -> RunRow:
    """The registry row of a run id (a directory name, or a unique prefix of one) or run directory."""
    rows = list_runs(runs_dir).rows
    path = str(Path(ref).resolve())
    exact = [row for row in rows if ref in (row.id, row.path) or row.path == path]
    matches = exact or [row for row in rows if row.id.startswith(ref)]
    if not matches:
        raise TunesmithError(
            f"run {ref!r}: no such run directory or run id under {runs_dir}", hint="tunesmith runs list"
        )
    if len(matches) > 1:
        names = ", ".join(row.id for row in matches[:5])
        raise TunesmithError(f"run {ref!r} is ambiguous: {names}", hint="give the full id or the run directory")
    return matches[0]


def parse_filter(item: str) -> Callable[[RunRow], bool]:
    """``key=value`` (also ``!=``, ``>``, ``<``, ``>=``, ``<=``) over a column, a metric or a dotted config key."""
    for symbol, compare in _OPERATORS:
        key, sep, raw = item.partition(symbol)
        if sep and key.strip():
            key, expected = key.strip(), _parse_value(raw.strip())
            return lambda row: _matches(lookup(row, key), expected, compare)
    raise TunesmithError(f"--filter {item!r}: expected key=value, e.g. status=completed or train.learning_rate=1e-4")


def lookup(row: RunRow, key: str) -> Any:
    """The value of a column, a metric or a dotted config key of ``row`` (None when it has none)."""
    if key in row.metrics:
        return row.metrics[key]
    if key in row.config:
        return row.config[key]
    if key in RunRow.__dataclass_fields__ and key not in _JSON_COLUMNS:
        return getattr(row, key)
    return None


def sort_rows(rows: list[RunRow], key: str) -> list[RunRow]:
    """Best first: ascending for losses and perplexities, descending otherwise; rows without the key last."""
    ascending = lower_is_better(key)
    present = [row for row in rows if isinstance(lookup(row, key), int | float)]
    absent = [row for row in rows if not isinstance(lookup(row, key), int | float)]
    present.sort(key=lambda row: lookup(row, key), reverse=not ascending)
    return present + absent


_OPERATORS: list[tuple[str, Callable[[Any, Any], bool]]] = [
    ("!=", operator.ne),
    (">=", operator.ge),
    ("<=", operator.le),
    ("=", operator.eq),
    (">", operator.gt),
    ("<", operator.lt),
]


def _parse_value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw


def _matches(actual: Any, expected: Any, compare: Callable[[Any, Any], bool]) -> bool:
    if actual is None:
        return compare is operator.ne
    numbers = (int, float)
    if isinstance(actual, numbers) and isinstance(expected, numbers):
        return bool(compare(actual, expected))
    if compare in (operator.eq, operator.ne):
        return bool(compare(str(actual), str(expected)))
    return False


@contextmanager
def _connection(db: Path) -> Iterator[sqlite3.Connection]:
    db.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we open transactions ourselves, BEGIN IMMEDIATE takes the write lock up front.
    with closing(sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_SCHEMA)
        conn.row_factory = sqlite3.Row
        yield conn


def _upsert(conn: sqlite3.Connection, row: RunRow) -> None:
    values = asdict(row)
    values.pop("missing")
    for column in _JSON_COLUMNS:
        values[column] = json.dumps(values[column], sort_keys=True, default=str)
    columns = list(values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("path", "created_at"))
    sql = (
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(path) DO UPDATE SET {updates}"
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(sql, [values[c] for c in columns])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _row(values: sqlite3.Row) -> RunRow:
    fields = dict(values)
    for column in _JSON_COLUMNS:
        try:
            fields[column] = json.loads(fields[column] or "{}")
        except ValueError:
            fields[column] = {}
    return RunRow(**fields)


def _reason(err: BaseException) -> str:
    text = str(err)
    if "not a database" in text or "malformed" in text:
        return f"the file is corrupt ({text})"
    if "locked" in text or "busy" in text:
        return f"locked by another process for more than {BUSY_TIMEOUT_S:.0f} s"
    return f"{type(err).__name__}: {text}"
