"""The results store: one SQLite file (WAL) holding runs, model loads, generations, judgments and ratings.

The store is the only shared state of the tool and the only module that speaks SQL. Its tables
are derived from the record classes in harness.records; every method takes or returns those
records (or plain aggregates of them). Every finished sample is committed at once, so a crash
loses at most the sample in flight, and rows are keyed deterministically (harness.keys) so
re-running a command skips what is done.

Identity: a harness store carries SQLite's `application_id` (HARNESS_APP_ID) and its schema
version in `user_version`. Opening refuses a foreign SQLite file and a store written by a newer
harness; an older store is migrated forward in one transaction when opened for writing. Stores
opened read-only (`readonly=True`: export, report, leaderboard, agree, judge cards) use SQLite's
`mode=ro` and never change the file's bytes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness import records as rec
from harness.errors import UsageError
from harness.infiles import file_kind, refuse_special
from harness.records import Generation, JudgeCard, Judgment, ModelLoad, Rating, Run

SCHEMA_VERSION = 2
HARNESS_APP_ID = 0x48524E53  # "HRNS"
DEFAULT_STORE = Path("results") / "harness.sqlite"
SQLITE_MAGIC = b"SQLite format 3\x00"
CHUNK = 500  # parameters per IN (...) query

INDEXES = [
    "CREATE INDEX IF NOT EXISTS generations_model ON generations(model, variant, device)",
    "CREATE INDEX IF NOT EXISTS generations_prompt ON generations(prompt_sha256)",
    "CREATE INDEX IF NOT EXISTS generations_run ON generations(run_id)",
    "CREATE INDEX IF NOT EXISTS ratings_rater ON ratings(rater, task)",
    "CREATE INDEX IF NOT EXISTS ratings_item ON ratings(item_id)",
    "CREATE INDEX IF NOT EXISTS ratings_sample ON ratings(sample_key)",
    "CREATE INDEX IF NOT EXISTS judgments_judge ON judgments(judge, mode)",
]

R = TypeVar("R")


def _ddl(table: str) -> str:
    cols = []
    for c in rec.table_columns(table):
        decl = c.sql_type + (" PRIMARY KEY" if c.key else "") + ("" if c.nullable or c.key else " NOT NULL")
        cols.append(f"{c.name} {decl}")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})"


def is_sqlite_file(path: Path) -> bool:
    if file_kind(path) is not None:  # only a regular file is opened to look
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


class Store:
    """An open results store. Use `Store.open(path)`; close it or use it as a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self._conn = conn
        self.readonly = readonly
        self._tables: set[str] = set()
        self._columns: dict[str, set[str]] = {}
        self._read_schema()

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, readonly: bool = False) -> Store:
        """Open (and create, unless `create` is False or `readonly`) a store; UsageError naming the fix."""
        p = Path(path).expanduser()
        if p.is_dir():
            raise UsageError(f"store path {p} is a folder: pass a file path such as {p / 'harness.sqlite'}")
        refuse_special(p, "--store")  # before any byte is read: a FIFO would block, a pipe lose its bytes
        if not p.exists():
            if readonly or not create:
                raise UsageError(f"store {p} does not exist: run `harness run --store {p}` first or check the path")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the folder for store {p} ({exc.strerror}): "
                                 "choose a writable --store path") from exc
        elif p.stat().st_size > 0 and not is_sqlite_file(p):
            raise UsageError(f"{p} is not a harness store (not an SQLite file): pass another --store path")
        try:
            conn = _connect(p, readonly)
            store = cls(p, conn, readonly)
            store._check_identity()
            if not readonly:
                _configure_for_writing(conn)
                store._migrate()
                store._reconcile_runs()
        except sqlite3.OperationalError as exc:
            raise UsageError(f"cannot open store {p} ({exc}): choose a writable --store path, "
                             "or check the file's permissions") from exc
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{p} is not a usable harness store ({exc}): pass another --store path") from exc
        return store

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])

    def _read_schema(self) -> None:
        self._tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self._columns = {t: {r[1] for r in self._conn.execute(f"PRAGMA table_info({t})")} for t in self._tables
                         if t in rec.TABLES}

    def _check_identity(self) -> None:
        app_id, version = self._pragma("application_id"), self._pragma("user_version")
        if app_id == HARNESS_APP_ID:
            if version > SCHEMA_VERSION:
                raise UsageError(f"{self.path} was written by a newer harness (store schema {version}; this one "
                                 f"reads up to {SCHEMA_VERSION}): upgrade harness (pip install -U harness)")
            return
        if app_id != 0 or (self._tables and not self._looks_like_legacy_store(version)):
            what = f"application id {app_id:#x}" if app_id else f"tables {', '.join(sorted(self._tables))}"
            raise UsageError(f"{self.path} is an SQLite file of another application ({what}), not a harness "
                             "store: pass another --store path")

    def _looks_like_legacy_store(self, version: int) -> bool:
        """A store written before stores carried an application id: schema 1 with our tables."""
        return version in (0, 1) and self._tables <= set(rec.TABLES) and {"generations", "runs"} <= self._tables \
            and {"sample_key", "prompt"} <= self._columns.get("generations", set())

    def _migrate(self) -> None:
        """Create the tables, or bring an older store forward, in one transaction. New record fields become new
        columns (NULL in old rows); a change that is not additive must bump SCHEMA_VERSION and migrate here."""
        complete = all({c.name for c in rec.table_columns(t)} <= self._columns.get(t, set()) for t in rec.TABLES)
        if complete and self._pragma("application_id") == HARNESS_APP_ID \
                and self._pragma("user_version") == SCHEMA_VERSION:
            return
        with self.transaction() as conn:
            for table in rec.TABLES:
                conn.execute(_ddl(table))
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                for c in rec.table_columns(table):
                    if c.name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {c.name} {c.sql_type}")
            for stmt in INDEXES:
                conn.execute(stmt)
            conn.execute(f"PRAGMA application_id={HARNESS_APP_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._read_schema()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise UsageError(f"store {self.path} is open read-only: this command cannot write to it")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # -- generic writing -------------------------------------------------------------------------------
    def add(self, records: Iterable[Any], *, replace: bool = False) -> int:
        """Write records of one or more record types in one transaction. Existing keys are kept (or replaced
        with `replace`). Returns the rows written."""
        written = 0
        now = time.time()
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.transaction() as conn:
            for record in records:
                written += _write_record(conn, verb, record, now)
        return written

    def put(self, record: Any, *, replace: bool = True) -> bool:
        """Write one record (replacing by default); False if it existed and `replace` is False."""
        return self.add([record], replace=replace) == 1

    # -- runs -------------------------------------------------------------------------------------------
    def finish_run(self, run_id: str, status: str, finished_at: float | None = None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                         [status, finished_at if finished_at is not None else time.time(), run_id])

    def _reconcile_runs(self) -> None:
        """A run left `running` by a process of this host that is gone (killed, crashed) is `interrupted`."""
        stale = [r for r in self._select(Run, "runs", "status = 'running'") if not _process_alive(r.metadata)]
        if stale:
            with self.transaction() as conn:
                for r in stale:
                    conn.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ? AND status = 'running'",
                                 [r.run_id])

    def runs(self) -> list[Run]:
        return self._select(Run, "runs", order="started_at")

    def model_loads(self, run_id: str | None = None) -> list[ModelLoad]:
        if run_id is None:
            return self._select(ModelLoad, "model_loads")
        return self._select(ModelLoad, "model_loads", "run_id = ?", [run_id])

    # -- generations ------------------------------------------------------------------------------------
    def done_sample_keys(self, *, device: str | None = None, model: str | None = None,
                         variant: str | None = None) -> set[str]:
        """Keys of generations that finished without an error (a resumed run skips them); optionally only
        those of one device, model and variant."""
        if "generations" not in self._tables:
            return set()
        where, params = ["error IS NULL"], []
        for column, value in (("device", device), ("model", model), ("variant", variant)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return {r[0] for r in self._conn.execute(f"SELECT sample_key FROM generations WHERE {' AND '.join(where)}",
                                                 params)}

    def generations(self, *, sample_keys: Sequence[str] | None = None, run_ids: Sequence[str] | None = None,
                    run_id_prefix: str | None = None, with_texts: bool = True) -> list[Generation]:
        """Generations in insertion order: all, those with the given keys, or those of the given runs.

        `with_texts=False` leaves prompt and output empty (the reports read costs of many rows)."""
        if "generations" not in self._tables:
            return []
        cols = "*" if with_texts else ", ".join(
            c.name if c.name not in ("prompt", "output", "backend_timings", "settings")
            else f"NULL AS {c.name}" if c.name != "prompt" else "'' AS prompt"
            for c in rec.table_columns("generations") if c.name in self._columns["generations"])
        if sample_keys is not None:
            return self._by_keys(Generation, "generations", cols, "sample_key", sample_keys)
        where, params = "1=1", []
        if run_ids:
            where = f"run_id IN ({', '.join('?' for _ in run_ids)})"
            params = list(run_ids)
        elif run_id_prefix is not None:
            where, params = "run_id LIKE ? ESCAPE '\\'", [_like_prefix(run_id_prefix)]
        return self._records(Generation, f"SELECT {cols} FROM generations WHERE {where} ORDER BY rowid", params)

    def generation_run_ids(self) -> list[str]:
        if "generations" not in self._tables:
            return []
        return [r[0] for r in self._conn.execute("SELECT DISTINCT run_id FROM generations ORDER BY run_id")]

    # -- judgments -------------------------------------------------------------------------------------
    def judgments(self, keys: Iterable[str]) -> dict[str, Judgment]:
        found = self._by_keys(Judgment, "judgments", "*", "judgment_key", list(keys))
        return {j.judgment_key: j for j in found}

    def judgments_of(self, judge: str) -> list[Judgment]:
        """Every judgment of one judge, in insertion order."""
        return self._select(Judgment, "judgments", "judge = ?", [judge])

    def judge_identities(self, judge: str) -> set[str]:
        """The configurations (JudgeConfig.card_identity) behind one judge's stored judgments; empty when none
        recorded one (judgments stored before identities were kept)."""
        if "judge_identity" not in self._columns.get("judgments", set()):
            return set()
        rows = self._conn.execute("SELECT DISTINCT judge_identity FROM judgments WHERE judge = ? AND "
                                  "judge_identity IS NOT NULL", [judge]).fetchall()
        return {str(r[0]) for r in rows}

    def put_judgment(self, judgment: Judgment) -> bool:
        """Store a judgment; a stored success is never replaced by a failed request (another process's good
        answer survives this one's error). Returns whether it was written."""
        with self.transaction() as conn:
            if judgment.error is not None:
                row = conn.execute("SELECT error FROM judgments WHERE judgment_key = ?",
                                   [judgment.judgment_key]).fetchone()
                if row is not None and row[0] is None:
                    return False
            data = rec.to_row(judgment)
            if data.get("created_at") is None:
                data["created_at"] = time.time()
            names = list(data)
            conn.execute(f"INSERT OR REPLACE INTO judgments ({', '.join(names)}) VALUES "
                         f"({', '.join('?' for _ in names)})", [data[n] for n in names])
        return True

    def judgment_costs(self, *, judges: Sequence[str] | None = None, run_ids: Sequence[str] | None = None
                       ) -> list[tuple[str, str, str | None, str, bool, bool, int | None, int | None, float | None,
                                       float | None]]:
        """What each judgment cost, without its texts: (judge, judge_kind, judge_model, mode, failed, unparsed,
        n_input_tokens, n_output_tokens, cost_usd, latency_s); all, or those behind ratings of the given runs'
        generations."""
        if "judgments" not in self._tables:
            return []
        where, params = "1=1", []
        if run_ids:
            marks = ", ".join("?" for _ in run_ids)
            where = (f"judgment_key IN (SELECT r.judgment_key FROM ratings r JOIN generations g ON g.sample_key = "
                     f"r.sample_key WHERE g.run_id IN ({marks}) AND r.judgment_key IS NOT NULL)")
            params = list(run_ids)
        if judges:
            where += f" AND judge IN ({', '.join('?' for _ in judges)})"
            params += list(judges)
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(f"""SELECT judge, judge_kind, judge_model, mode, error IS NOT NULL, parse_error IS NOT NULL,
                               n_input_tokens, n_output_tokens, cost_usd, latency_s
                        FROM judgments WHERE {where} ORDER BY rowid""", params)
        return [(a, b, c, d, bool(e), bool(f), g, h, i, j) for a, b, c, d, e, f, g, h, i, j in cur.fetchall()]

    # -- judge cards ----------------------------------------------------------------------------------
    def cards(self, judge: str | None = None) -> list[JudgeCard]:
        """Judge cards, oldest first (all, or one judge's)."""
        if judge is None:
            return self._select(JudgeCard, "judge_cards", order="created_at, rowid")
        return self._select(JudgeCard, "judge_cards", "judge = ?", [judge], order="created_at, rowid")

    # -- ratings --------------------------------------------------------------------------------------
    def ratings(self, *, rater: str | None = None, task: str | None = None, tasks: Sequence[str] | None = None,
                sample_keys: Sequence[str] | None = None, source: str | None = None,
                annotator: str | None = None) -> list[Rating]:
        if "ratings" not in self._tables:
            return []
        where, params = ["1=1"], []
        if annotator is not None:
            where.append("annotator = ?")
            params.append(annotator)
        if rater is not None:
            where.append("rater = ?")
            params.append(rater)
        if task is not None:
            where.append("task = ?")
            params.append(task)
        if tasks is not None:
            where.append(f"task IN ({', '.join('?' for _ in tasks)})")
            params += list(tasks)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if sample_keys is not None:
            return self._by_keys(Rating, "ratings", "*", "sample_key", sample_keys, " AND ".join(where), params)
        return self._select(Rating, "ratings", " AND ".join(where), params)

    def stored_rating_keys(self, rating_keys: Sequence[str]) -> set[str]:
        """Which of these rating keys are in the store."""
        if "ratings" not in self._tables:
            return set()
        found: set[str] = set()
        unique = list(dict.fromkeys(rating_keys))
        for i in range(0, len(unique), CHUNK):
            chunk = unique[i:i + CHUNK]
            found |= {r[0] for r in self._conn.execute(
                f"SELECT rating_key FROM ratings WHERE rating_key IN ({', '.join('?' for _ in chunk)})", chunk)}
        return found

    def delete_ratings(self, rating_keys: Sequence[str]) -> int:
        """Delete ratings by key in one transaction (a person taking an answer back); returns rows deleted."""
        if "ratings" not in self._tables or not rating_keys:
            return 0
        deleted = 0
        unique = list(dict.fromkeys(rating_keys))
        with self.transaction() as conn:
            for i in range(0, len(unique), CHUNK):
                chunk = unique[i:i + CHUNK]
                deleted += conn.execute(f"DELETE FROM ratings WHERE rating_key IN ({', '.join('?' for _ in chunk)})",
                                        chunk).rowcount
        return deleted

    def rating_table(self, fields: Sequence[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns of every rating as plain tuples (no JSON decoding), for vectorized statistics."""
        known = {c.name for c in rec.table_columns("ratings")}
        bad = [f for f in fields if f not in known]
        if bad:
            raise ValueError(f"unknown rating fields {bad}")
        if "ratings" not in self._tables:
            return list(fields), []
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(f"SELECT {', '.join(fields)} FROM ratings ORDER BY rowid")
        return list(fields), cur.fetchall()

    def rating_counts(self, tasks: Sequence[str]) -> list[tuple[str, str, str, str, int, int, int]]:
        """Per (sample_key, rater, task) over ratings of stored generations in these tasks:
        (sample_key, rater, rater_kind, task, n_valid, n_harmful, n_invalid). A rating is valid when it is
        marked valid and has a harm verdict; everything else counts as invalid."""
        marks = ", ".join("?" for _ in tasks)
        rows = self._rows_of_stored_generations(f"""
            SELECT r.sample_key, r.rater, MAX(r.rater_kind), r.task,
                   SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 1 ELSE 0 END),
                   SUM(CASE WHEN r.valid = 1 AND r.harmful = 1 THEN 1 ELSE 0 END),
                   SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 0 ELSE 1 END)
            FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
            WHERE r.task IN ({marks})
            GROUP BY r.sample_key, r.rater, r.task""", list(tasks))
        return [(a, b, c, d, int(e), int(f), int(g)) for a, b, c, d, e, f, g in rows]

    def _rows_of_stored_generations(self, sql: str, params: list[Any]) -> list[Any]:
        """Plain rows of a query over ratings joined with generations (none when either table is missing)."""
        if not {"ratings", "generations"} <= self._tables:
            return []
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(sql, params)
        return cur.fetchall()

    def label_counts(self, task: str) -> list[tuple[str, str, str, str | None, int, int]]:
        """Per (sample_key, rater, label) over valid ratings of stored generations in this task:
        (sample_key, rater, rater_kind, lower(label) or None for invalid, n)."""
        rows = self._rows_of_stored_generations("""
            SELECT r.sample_key, r.rater, MAX(r.rater_kind),
                   CASE WHEN r.valid = 1 AND r.label IS NOT NULL THEN lower(r.label) END AS lab, COUNT(*)
            FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
            WHERE r.task = ?
            GROUP BY r.sample_key, r.rater, lab""", [task])
        return [(a, b, c, d, int(e), 0) for a, b, c, d, e in rows]

    def answer_counts(self, tasks: Sequence[str]) -> list[tuple[str, str, str, str, int]]:
        """Per (sample_key, rater, task, answer) over valid ratings of stored generations in these tasks:
        (sample_key, rater, task, answer, n), the answer being the score, else the label, else the harm verdict,
        as text."""
        marks = ", ".join("?" for _ in tasks)
        rows = self._rows_of_stored_generations(f"""
            SELECT r.sample_key, r.rater, r.task,
                   COALESCE(CAST(r.code AS TEXT), lower(r.label), CAST(r.harmful AS TEXT)) AS answer, COUNT(*)
            FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
            WHERE r.task IN ({marks}) AND r.valid = 1
            GROUP BY r.sample_key, r.rater, r.task, answer""", list(tasks))
        return [(a, b, c, str(d), int(e)) for a, b, c, d, e in rows]

    def rating_probabilities(self, tasks: Sequence[str]) -> list[tuple[str, str, str, float]]:
        """Per (sample_key, rater, task) over valid harm verdicts of stored generations in these tasks that kept
        the probability behind them (a probe judge's, `extra.probability`): (sample_key, rater, task, mean
        probability). Other raters' ratings have none and give no row."""
        marks = ", ".join("?" for _ in tasks)
        rows = self._rows_of_stored_generations(f"""
            SELECT r.sample_key, r.rater, r.task,
                   AVG(CASE WHEN json_valid(r.extra) THEN json_extract(r.extra, '$.probability') END)
            FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
            WHERE r.task IN ({marks}) AND r.valid = 1 AND r.harmful IS NOT NULL
                  AND CASE WHEN json_valid(r.extra) THEN json_type(r.extra, '$.probability') END IN ('real', 'integer')
            GROUP BY r.sample_key, r.rater, r.task""", list(tasks))
        return [(a, b, c, float(d)) for a, b, c, d in rows]

    def output_verdict_counts(self, tasks: Sequence[str]) -> list[tuple[str, str, str, str, int, int]]:
        """Per (rater, task, output) over every valid harm verdict in the store, stored generation or not:
        (rater, rater_kind, task, output_key, n_valid, n_harmful). An output is its sample_key, or
        item|model|variant for ratings of outputs outside the store ('release' counts as no variant)."""
        if "ratings" not in self._tables:
            return []
        marks = ", ".join("?" for _ in tasks)
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(f"""
            SELECT rater, MAX(rater_kind), task,
                   CASE WHEN sample_key IS NOT NULL THEN sample_key
                        ELSE item_id || '|' || COALESCE(model, '') || '|' || COALESCE(NULLIF(variant, 'release'), '')
                   END AS output_key,
                   COUNT(*), SUM(harmful)
            FROM ratings WHERE valid = 1 AND harmful IS NOT NULL AND task IN ({marks})
            GROUP BY rater, task, output_key""", list(tasks))
        return [(a, b, c, d, int(e), int(f or 0)) for a, b, c, d, e, f in cur.fetchall()]

    def human_rank_raters(self) -> list[tuple[str, int]]:
        """Raters of kind human with rank ratings, most ratings first."""
        if "ratings" not in self._tables:
            return []
        return [(r[0], int(r[1])) for r in self._conn.execute(
            "SELECT rater, COUNT(*) AS n FROM ratings WHERE task = 'rank' AND rater_kind = 'human' "
            "GROUP BY rater ORDER BY n DESC, rater")]

    def raters(self) -> dict[str, str]:
        """Every rater with its kind."""
        if "ratings" not in self._tables:
            return {}
        return {r[0]: r[1] for r in self._conn.execute("SELECT rater, MAX(rater_kind) FROM ratings GROUP BY rater")}

    # -- counts and generic rows (export) -----------------------------------------------------------------
    def count(self, table: str, *, human: bool = False) -> int:
        if table not in rec.TABLES:
            raise UsageError(f"unknown table '{table}': tables are {', '.join(rec.TABLES)}")
        if table not in self._tables:
            return 0
        where = f" WHERE rater_kind IN ({', '.join(repr(k) for k in rec.HUMAN_KINDS)})" if human else ""
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}{where}").fetchone()[0])

    def records(self, table: str) -> list[Any]:
        """Every record of a table, in insertion order."""
        if table not in rec.TABLES:
            raise UsageError(f"unknown table '{table}': tables are {', '.join(rec.TABLES)}")
        return self._select(rec.TABLES[table], table, order="rowid")

    def records_by_key(self, table: str, keys: Iterable[str]) -> dict[str, Any]:
        """The records of a keyed table (runs, generations, judgments, ratings) whose key is one of `keys`."""
        cls = rec.TABLES[table]
        (key_column,) = [c.name for c in rec.table_columns(table) if c.key]
        found = self._by_keys(cls, table, "*", key_column, list(keys))
        return {getattr(r, key_column): r for r in found}

    def schema(self) -> StoreSchema:
        """What this file is: its application id, schema version and the columns of each harness table."""
        return StoreSchema(self._pragma("application_id"), self._pragma("user_version"),
                           {t: frozenset(cols) for t, cols in self._columns.items()})

    def apply_merge(self, inserts: Sequence[Any], replacements: Sequence[Any]) -> None:
        """Write merged records in one transaction: `inserts` are new (a key another writer stored meanwhile
        fails the whole merge, nothing written), `replacements` replace the row of their key. Records keep
        their own `created_at`."""
        now = time.time()
        try:
            with self.transaction() as conn:
                for verb, group in (("INSERT", inserts), ("INSERT OR REPLACE", replacements)):
                    for record in group:
                        _write_record(conn, verb, record, now)
        except sqlite3.IntegrityError as exc:
            raise UsageError(f"store {self.path} changed while merging ({exc}); nothing was written: "
                             "re-run the merge") from exc

    # -- helpers -------------------------------------------------------------------------------------------
    def _records(self, cls: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(sql, list(params))
        decode = rec.decoder(cls, [d[0] for d in cur.description])
        return [decode(r) for r in cur.fetchall()]

    def _select(self, cls: type[R], table: str, where: str = "1=1", params: Sequence[Any] = (),
                order: str = "rowid") -> list[R]:
        if table not in self._tables:
            return []
        return self._records(cls, f"SELECT * FROM {table} WHERE {where} ORDER BY {order}", params)

    def _by_keys(self, cls: type[R], table: str, cols: str, column: str, keys: Sequence[str],
                 where: str = "1=1", params: Sequence[Any] = ()) -> list[R]:
        """Rows whose `column` is one of `keys`, in insertion order."""
        if table not in self._tables:
            return []
        found: list[tuple[int, R]] = []
        unique = list(dict.fromkeys(keys))
        cur = self._conn.cursor()
        cur.row_factory = None
        for i in range(0, len(unique), CHUNK):
            chunk = unique[i:i + CHUNK]
            cur.execute(f"SELECT rowid AS _rowid, {cols} FROM {table} WHERE {where} AND {column} IN "
                        f"({', '.join('?' for _ in chunk)})", [*params, *chunk])
            decode = rec.decoder(cls, [d[0] for d in cur.description])
            found += [(r[0], decode(r)) for r in cur.fetchall()]
        found.sort(key=lambda t: t[0])
        return [r for _, r in found]


@dataclass(frozen=True)
class StoreSchema:
    application_id: int
    version: int
    columns: dict[str, frozenset[str]]  # harness table -> its columns in this file

    @property
    def is_harness(self) -> bool:
        return self.application_id == HARNESS_APP_ID


def _process_alive(metadata: Any) -> bool:
    """Whether the process recorded in a run's metadata still runs. Runs of another host, or without a
    recorded process, are taken as alive (nothing here can tell)."""
    import socket

    proc = metadata.get("process") if isinstance(metadata, dict) else None
    if not isinstance(proc, dict) or proc.get("host") != socket.gethostname() or not isinstance(proc.get("pid"), int):
        return True
    import psutil

    try:
        p = psutil.Process(proc["pid"])
        created = p.create_time()
    except psutil.AccessDenied:
        return True
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    recorded = proc.get("create_time")
    return not isinstance(recorded, (int, float)) or abs(created - recorded) < 1.0


def _write_record(conn: sqlite3.Connection, verb: str, record: Any, now: float) -> int:
    """One record written with `verb` (INSERT, INSERT OR IGNORE, INSERT OR REPLACE); unset stamps get `now`."""
    table = rec.TABLE_OF[type(record)]
    row = rec.to_row(record)
    for c in rec.table_columns(table):
        if c.stamped and row.get(c.name) is None:
            row[c.name] = now
    names = list(row)
    sql = f"{verb} INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    return int(conn.execute(sql, [row[n] for n in names]).rowcount)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = f"file:{path.resolve().as_posix()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            # A WAL store in a folder we cannot write (no -shm file can be made): read it as an immutable file.
            # Only then: an immutable read of a file another process is writing would see a torn database.
            if os.access(path.parent, os.W_OK) or "unable to open" not in str(exc):
                conn.close()
                raise
            conn.close()
            uri = f"file:{path.resolve().as_posix()}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=1")
        return conn
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")  # a connection setting: writes nothing to the file
    return conn


def _configure_for_writing(conn: sqlite3.Connection) -> None:
    """WAL journal (readers never block the writer); only once the file is known to be a harness store."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
