"""The results store: one SQLite file (WAL) holding runs, generations, judgments and ratings.

The store is the only shared state of the tool. Every finished sample is
committed at once, so a crash loses at most the sample in flight, and rows
are keyed deterministically so re-running a command skips what is done.

Tables
------
runs          one row per `harness run` invocation (metadata as JSON)
model_loads   one row per model variant loaded in a run (load time, RSS)
generations   one row per generation: prompt, output, model, variant, device, cost
judgments     one row per judge call (raw response, parsed result or parse error)
ratings       one row per (rater, item, model output): the unit agreement and
              reports read. Humans, experts, external judges and our judges all
              write here. `code` follows the study: 0 = not harmful (N/A),
              1..k = least..most harmful within the item; `harmful` is 1/0, or
              NULL when the rating is invalid (never counted as harmless).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import UsageError

SCHEMA_VERSION = 1

GENERATION_COLUMNS: dict[str, str] = {
    "sample_key": "TEXT PRIMARY KEY",
    "run_id": "TEXT NOT NULL",
    "created_at": "REAL NOT NULL",
    "device": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "variant": "TEXT NOT NULL",
    "backend": "TEXT NOT NULL",
    "backend_version": "TEXT",
    "model_sha256": "TEXT",
    "model_size_bytes": "INTEGER",
    "prompt_set": "TEXT",
    "prompt_id": "TEXT NOT NULL",
    "category": "TEXT",
    "benign": "INTEGER",
    "prompt": "TEXT NOT NULL",
    "prompt_sha256": "TEXT",
    "seed": "INTEGER",
    "temperature": "REAL",
    "max_tokens": "INTEGER",
    "output": "TEXT",
    "finish_reason": "TEXT",
    "n_prompt_tokens": "INTEGER",
    "n_output_tokens": "INTEGER",
    "ttft_s": "REAL",
    "prompt_tps": "REAL",
    "decode_tps": "REAL",
    "latency_s": "REAL",
    "peak_rss_bytes": "INTEGER",
    "peak_vram_bytes": "INTEGER",
    "energy_j": "REAL",
    "energy_source": "TEXT",
    "bandwidth_fraction": "REAL",
    "backend_timings": "TEXT",  # JSON: the backend's own internal timings
    "settings": "TEXT",  # JSON: full sampling and device settings
    "error": "TEXT",
}

JUDGMENT_COLUMNS: dict[str, str] = {
    "judgment_key": "TEXT PRIMARY KEY",  # judge + rubric version + inputs + shown order
    "created_at": "REAL NOT NULL",
    "judge": "TEXT NOT NULL",
    "judge_kind": "TEXT NOT NULL",
    "judge_model": "TEXT",
    "mode": "TEXT NOT NULL",  # score | rank | pairwise | refusal | guard
    "rubric": "TEXT",
    "rubric_version": "TEXT",
    "item_id": "TEXT NOT NULL",  # what was judged together (see ratings.item_id)
    "sample_keys": "TEXT NOT NULL",  # JSON list, in canonical order
    "shown_order": "TEXT",  # JSON list of indices into sample_keys, as shown
    "request": "TEXT",  # JSON of the messages sent (never an API key)
    "raw_response": "TEXT",
    "parsed": "TEXT",  # JSON, mapped back to canonical order
    "parse_error": "TEXT",
    "error": "TEXT",
    "n_input_tokens": "INTEGER",
    "n_output_tokens": "INTEGER",
    "cost_usd": "REAL",
    "latency_s": "REAL",
    "attempts": "INTEGER",
}

RATING_COLUMNS: dict[str, str] = {
    "rating_key": "TEXT PRIMARY KEY",  # deterministic: re-importing adds nothing
    "created_at": "REAL NOT NULL",
    "source": "TEXT NOT NULL",  # e.g. import:llm-harm, judge:refusal-detector
    "rater": "TEXT NOT NULL",  # human, expert, gpt4o, a judge name ...
    "rater_kind": "TEXT NOT NULL",  # human | expert | judge | external-judge
    "annotator": "TEXT",  # an individual annotator id within a rater, if known
    "task": "TEXT NOT NULL",  # rank | score | label | refusal | pairwise
    "item_id": "TEXT NOT NULL",  # the unit rated together, usually one prompt
    "prompt_id": "TEXT",
    "category": "TEXT",
    "model": "TEXT",
    "variant": "TEXT",
    "sample_key": "TEXT",  # the generation rated, when it is in this store
    "code": "REAL",  # rank code (0 = N/A, 1..k least..most harmful) or score
    "label": "TEXT",  # label tasks: e.g. refusal | compliance | partial_refusal
    "harmful": "INTEGER",  # 1 / 0 / NULL when invalid
    "valid": "INTEGER NOT NULL",
    "error": "TEXT",
    "judgment_key": "TEXT",
    "extra": "TEXT",  # JSON
}

RUN_COLUMNS: dict[str, str] = {
    "run_id": "TEXT PRIMARY KEY",
    "started_at": "REAL NOT NULL",
    "finished_at": "REAL",
    "status": "TEXT NOT NULL",  # running | finished | interrupted | failed
    "command": "TEXT",
    "device": "TEXT",
    "planned": "INTEGER",
    "metadata": "TEXT",  # JSON: versions, host, telemetry availability ...
}

MODEL_LOAD_COLUMNS: dict[str, str] = {
    "run_id": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "variant": "TEXT NOT NULL",
    "backend": "TEXT NOT NULL",
    "device": "TEXT NOT NULL",
    "model_path": "TEXT",
    "model_sha256": "TEXT",
    "model_size_bytes": "INTEGER",
    "load_s": "REAL",
    "rss_before_bytes": "INTEGER",
    "rss_after_load_bytes": "INTEGER",
    "metadata": "TEXT",  # JSON
    "created_at": "REAL NOT NULL",
}

TABLES: dict[str, dict[str, str]] = {
    "runs": RUN_COLUMNS,
    "model_loads": MODEL_LOAD_COLUMNS,
    "generations": GENERATION_COLUMNS,
    "judgments": JUDGMENT_COLUMNS,
    "ratings": RATING_COLUMNS,
}

INDEXES = [
    "CREATE INDEX IF NOT EXISTS generations_model ON generations(model, variant, device)",
    "CREATE INDEX IF NOT EXISTS generations_prompt ON generations(prompt_sha256)",
    "CREATE INDEX IF NOT EXISTS ratings_rater ON ratings(rater, task)",
    "CREATE INDEX IF NOT EXISTS ratings_item ON ratings(item_id)",
    "CREATE INDEX IF NOT EXISTS ratings_sample ON ratings(sample_key)",
    "CREATE INDEX IF NOT EXISTS judgments_judge ON judgments(judge, mode)",
]

JSON_COLUMNS = {"backend_timings", "settings", "metadata", "sample_keys", "shown_order", "parsed", "extra", "request"}


def _ddl(table: str, columns: Mapping[str, str]) -> str:
    cols = ", ".join(f"{name} {decl}" for name, decl in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


def _encode(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return int(value)
    return value


class Store:
    """An open results store. Use `Store.open(path)`; close it or use it as a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        p = Path(path).expanduser()
        if p.exists() and p.is_dir():
            raise UsageError(f"store path {p} is a folder: pass a file path such as {p / 'harness.sqlite'}")
        if not p.exists():
            if not create:
                raise UsageError(f"store {p} does not exist: run `harness run --store {p}` first or check the path")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the folder for store {p} ({exc.strerror}): choose a writable --store path") from exc
        elif p.stat().st_size >= 16:
            with open(p, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise UsageError(f"{p} is not a harness store (not an SQLite file): pass another --store path")
        try:
            conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            store = cls(p, conn)
            store._migrate()
        except sqlite3.OperationalError as exc:
            raise UsageError(f"cannot open store {p} ({exc}): choose a writable --store path") from exc
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{p} is not a usable harness store ({exc}): pass another --store path") from exc
        return store

    def _migrate(self) -> None:
        with self.transaction():
            for table, columns in TABLES.items():
                self.conn.execute(_ddl(table, columns))
                have = {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns.items():
                    if name not in have:
                        decl = decl.replace("PRIMARY KEY", "").replace("NOT NULL", "")
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            for stmt in INDEXES:
                self.conn.execute(stmt)
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- writing ---------------------------------------------------------------
    def insert(self, table: str, row: Mapping[str, Any], *, replace: bool = False) -> bool:
        """Insert one row and commit. Returns False if the key already existed (and replace is False)."""
        return self.insert_many(table, [row], replace=replace) == 1

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]], *, replace: bool = False) -> int:
        """Insert rows in one transaction; existing keys are kept (or replaced). Returns rows written."""
        columns = TABLES[table]
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        written = 0
        with self.transaction() as conn:
            for row in rows:
                unknown = set(row) - set(columns)
                if unknown:
                    raise ValueError(f"unknown columns for {table}: {sorted(unknown)}")
                data = dict(row)
                if "created_at" in columns and data.get("created_at") is None:
                    data["created_at"] = time.time()
                names = list(data)
                sql = f"{verb} INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
                cur = conn.execute(sql, [_encode(data[n]) for n in names])
                written += cur.rowcount
        return written

    def update(self, table: str, key_column: str, key: Any, values: Mapping[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE {table} SET {sets} WHERE {key_column} = ?", [*map(_encode, values.values()), key])

    # -- reading ---------------------------------------------------------------
    def keys(self, table: str, key_column: str) -> set[str]:
        return {r[0] for r in self.conn.execute(f"SELECT {key_column} FROM {table}")}

    def count(self, table: str, where: str = "", params: Iterable[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.conn.execute(sql, list(params)).fetchone()[0])

    def rows(self, table: str, where: str = "", params: Iterable[Any] = (), order: str = "") -> list[dict[str, Any]]:
        """Rows as dicts, JSON columns decoded."""
        if table not in TABLES:
            raise UsageError(f"unknown table '{table}': tables are {', '.join(TABLES)}")
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else "")
        return [decode_row(r) for r in self.conn.execute(sql, list(params))]

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, list(params))]


def decode_row(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in JSON_COLUMNS & out.keys():
        if isinstance(out[k], str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError:
                pass
    return out


DEFAULT_STORE = Path("results") / "harness.sqlite"
