"""The history database: SQLite (the standard library's) for a path, SQLAlchemy for a URL
(`postgresql://user@host/db`, needs `pip install "joulebench[postgres]"`).

- The schema is versioned in the table `joulebench_schema`; MIGRATIONS take a database from any
  older version to SCHEMA_VERSION, in one transaction, under a lock (SQLite's write lock, or a
  PostgreSQL advisory lock), so two jobs opening one old database migrate it once. A database
  written by a newer joulebench is refused, never rewritten.
- An add is one transaction: every row goes in, or none does (a failed add leaves the database
  as it was). Rows are keyed by run id; adding a run again changes nothing.
- Concurrent adds wait for each other (SQLite: BEGIN IMMEDIATE with a busy timeout; PostgreSQL:
  row locks on the key), so none loses a row.
- SQLite stays one file (the rollback journal, not WAL), so a CI artifact of the file is the
  whole database. A file that is not a database, or is corrupt, ends the command in one line and
  is never written to.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HistoryError
from harness.history.rows import METRIC_NAMES, Row

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 120.0  # how long an add waits for another job's add before it gives up
ADVISORY_LOCK_KEY = 7_251_002_036  # PostgreSQL: serialises migrations across jobs
COLUMNS = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("commit_sha", "TEXT NOT NULL"),
    ("branch", "TEXT NOT NULL"),
    ("committed_at", "TEXT NOT NULL"),  # ISO 8601, UTC
    ("committed_ts", "DOUBLE PRECISION NOT NULL"),  # the same, in seconds since the epoch
    ("added_at", "TEXT NOT NULL"),
    ("source", "TEXT NOT NULL"),
    ("result_sha256", "TEXT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("seed", "INTEGER"),
    ("system", "TEXT NOT NULL"),
    ("benchmark", "TEXT NOT NULL"),
    ("framework", "TEXT NOT NULL"),
    ("provenance", "TEXT NOT NULL"),
    ("config_hash", "TEXT NOT NULL"),
    ("device_model", "TEXT NOT NULL"),
    ("device_count", "INTEGER"),
    ("device_uuids", "TEXT NOT NULL"),
    ("driver", "TEXT NOT NULL"),
    ("power_limit_w", "TEXT NOT NULL"),
    ("clocks", "TEXT NOT NULL"),
    *((name, "DOUBLE PRECISION") for name in METRIC_NAMES),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
MIGRATIONS: dict[int, tuple[str, ...]] = {  # version -> the statements that reach it
    1: (f"CREATE TABLE runs ({', '.join(f'{n} {t}' for n, t in COLUMNS)})",),
    2: (  # the series lookups of `check`, which read one branch (and benchmark) in order
        "CREATE INDEX runs_by_branch ON runs (branch, benchmark, committed_ts)",
        "CREATE INDEX runs_by_commit ON runs (commit_sha)",
    ),
}
_INSERT = (
    f"INSERT INTO runs ({', '.join(COLUMN_NAMES)}) "
    f"VALUES ({', '.join(':' + n for n in COLUMN_NAMES)}) ON CONFLICT (run_id) DO NOTHING"
)

Execute = Callable[[str, dict | None], list[tuple]]


def is_url(target: str) -> bool:
    return "://" in target and not target.startswith("sqlite:///")


class Store:
    """One history database. `create`: a missing SQLite file is made (add); otherwise a missing
    database is a HistoryError (check, plot and export never create one)."""

    def __init__(self, target: str, create: bool = False):
        self.target = target
        if is_url(target):
            self._backend: _Backend = _SqlAlchemy(target)
        else:
            path = Path(target.removeprefix("sqlite:///"))
            if not create and not path.is_file():
                raise HistoryError(
                    f"no history database at {path}.",
                    "give the file `joulebench history add` wrote, or restore it from CI.",
                )
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._backend = _Sqlite(path)
        self.version = self._migrate()

    @property
    def name(self) -> str:
        return self._backend.name

    def _migrate(self) -> int:
        found = self._backend.read(_version)
        if found == SCHEMA_VERSION:
            return found
        if found > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.name} has history schema v{found}, newer than this joulebench reads "
                f"(v{SCHEMA_VERSION}); it was left as it is.",
                "upgrade joulebench (pip install -U joulebench), or give another database.",
            )

        def migrate(execute: Execute) -> int:
            version = _version(execute)  # again under the lock: another job may have done it
            if version == 0 and execute(_TABLES_SQL[self._backend.dialect], None):
                raise HistoryError(
                    f"{self.name} is a database with other tables and no joulebench history; "
                    "it was left as it is.",
                    "give a new file or an empty database for the history.",
                )
            if version == 0:
                execute("CREATE TABLE joulebench_schema (version INTEGER NOT NULL)", None)
                execute("INSERT INTO joulebench_schema (version) VALUES (0)", None)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    execute(statement, None)
            execute("UPDATE joulebench_schema SET version = :v", {"v": SCHEMA_VERSION})
            return SCHEMA_VERSION

        return self._backend.write(migrate)

    def add(self, rows: list[Row], commit: dict[str, Any]) -> tuple[int, list[str]]:
        """Insert the rows (one transaction): (rows added, notes on runs already stored,
        including any stored with a different result file)."""
        records = [
            {
                **commit,
                **{k: getattr(r, k) for k in COLUMN_NAMES if hasattr(r, k)},
                **r.metrics,
            }
            for r in rows
        ]

        def insert(execute: Execute) -> tuple[int, list[str]]:
            stored: dict[str, str] = {}
            ids = [r["run_id"] for r in records]
            for i in range(0, len(ids), 500):
                chunk = {f"id{j}": v for j, v in enumerate(ids[i : i + 500])}
                names = ", ".join(f":{k}" for k in chunk)
                for run_id, digest in execute(
                    f"SELECT run_id, result_sha256 FROM runs WHERE run_id IN ({names})", chunk
                ):
                    stored[run_id] = digest
            added = sum(self._backend.insert(execute, record) for record in records)
            notes = [
                f"run {r['run_id']} ({r['source']}) is already stored"
                + (
                    " from a different result.json; the stored row is kept"
                    if stored[r["run_id"]] != r["result_sha256"]
                    else ""
                )
                for r in records
                if r["run_id"] in stored
            ]
            return added, notes

        return self._backend.write(insert)

    def rows(
        self,
        branch: str | None = None,
        benchmark: str | None = None,
        columns: tuple[str, ...] = COLUMN_NAMES,
    ) -> list[dict]:
        """Every stored row (on one branch, of one benchmark), oldest commit first: the given
        columns of it."""
        where, params = [], {}
        for column, value in (("branch", branch), ("benchmark", benchmark)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        sql = (
            f"SELECT {', '.join(c for c in columns if c in COLUMN_NAMES)} FROM runs"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY committed_ts, commit_sha, run_id"
        )
        found = self._backend.read(lambda execute: execute(sql, params))
        names = [c for c in columns if c in COLUMN_NAMES]
        return [dict(zip(names, row, strict=True)) for row in found]

    def branches(self) -> list[str]:
        found = self._backend.read(lambda ex: ex("SELECT DISTINCT branch FROM runs", None))
        return sorted(b for (b,) in found)


_TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
}


def _version(execute: Execute) -> int:
    try:
        found = execute("SELECT version FROM joulebench_schema", None)
    except _MissingTable:
        return 0
    if len(found) != 1 or not isinstance(found[0][0], int):
        raise HistoryError(
            "the history database's schema table is damaged; it was left as it is.",
            "restore the database from the previous CI run.",
        )
    return found[0][0]


class _MissingTable(Exception):
    """The schema table is absent: a new (or foreign) database."""


class _Backend:
    name: str
    dialect: str

    def read(self, work: Callable[[Execute], Any]) -> Any:
        raise NotImplementedError

    def write(self, work: Callable[[Execute], Any]) -> Any:
        raise NotImplementedError

    def insert(self, execute: Execute, record: dict) -> int:
        raise NotImplementedError


class _Sqlite(_Backend):
    dialect = "sqlite"

    def __init__(self, path: Path):
        self.path, self.name = path, str(path)
        if path.exists() and not path.is_file():
            raise HistoryError(f"{path} is not a file.", "give a database file's path.")
        try:
            self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode = DELETE")
            problems = [r[0] for r in self._conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc
        if problems != ["ok"]:
            raise self._unreadable(problems[0])

    def _unreadable(self, why) -> HistoryError:
        if isinstance(why, sqlite3.OperationalError) and "locked" in str(why):
            return HistoryError(
                f"{self.path} stayed locked by another job for {BUSY_TIMEOUT_S:g} s.",
                "let the other `joulebench history` finish, then run this again.",
            )
        return HistoryError(
            f"{self.path} is not a readable SQLite history database ({why}); it was left as it is.",
            "restore it from the previous CI run, or give a new path.",
        )

    def _run(self, write: bool, work: Callable[[Execute], Any]) -> Any:
        def execute(sql: str, params: dict | None) -> list[tuple]:
            try:
                return self._conn.execute(sql, params or {}).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table: joulebench_schema" in str(exc):
                    raise _MissingTable from exc
                raise

        try:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                out = work(execute)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc

    def read(self, work):
        return self._run(False, work)

    def write(self, work):
        return self._run(True, work)

    def insert(self, execute, record):
        return self._conn.execute(_INSERT, record).rowcount


class _SqlAlchemy(_Backend):
    dialect = "postgresql"

    def __init__(self, url: str):
        try:
            import sqlalchemy
            from sqlalchemy.pool import NullPool
        except ImportError as exc:
            raise HistoryError(
                "a database URL needs SQLAlchemy and a driver.",
                'pip install "joulebench[postgres]" (SQLAlchemy and psycopg).',
            ) from exc
        self._sa = sqlalchemy
        try:
            parsed = sqlalchemy.engine.make_url(url)
            if parsed.drivername == "postgresql":  # psycopg 3 unless the URL names a driver
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.name = parsed.render_as_string(hide_password=True)
            self.dialect = parsed.get_backend_name()
            self._engine = sqlalchemy.create_engine(parsed, poolclass=NullPool)
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            raise HistoryError(
                f"{url.split('@')[-1]} is not a database URL this joulebench can use ({exc}).",
                "give a file path, or postgresql://user@host:port/database.",
            ) from exc
        if self.dialect not in _TABLES_SQL:
            raise HistoryError(
                f"{self.name}: {self.dialect} is not supported.",
                "give a file path (SQLite) or a postgresql:// URL.",
            )

    def _run(self, write: bool, work):
        sa = self._sa

        def execute(sql: str, params: dict | None) -> list[tuple]:
            with contextlib.ExitStack() as nested:
                if "joulebench_schema" in sql and sql.startswith("SELECT"):
                    nested.enter_context(connection.begin_nested())  # a missing table is no abort
                try:
                    result = connection.execute(sa.text(sql), params or {})
                except sa.exc.ProgrammingError as exc:
                    if "joulebench_schema" in str(exc) and "does not exist" in str(exc):
                        raise _MissingTable from exc
                    raise
                return [tuple(r) for r in result] if result.returns_rows else []

        try:
            with self._engine.connect() as connection, connection.begin():
                if write:
                    execute("SELECT pg_advisory_xact_lock(:k)", {"k": ADVISORY_LOCK_KEY})
                return work(execute)
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(
                f"{self.name}: {str(exc).splitlines()[0][:200]}; nothing was changed.",
                "check that the server is up and the URL's user may use the database.",
            ) from exc

    def read(self, work):
        return self._run(False, work)

    def write(self, work):
        return self._run(True, work)

    def insert(self, execute, record):
        return len(execute(_INSERT + " RETURNING run_id", record))
