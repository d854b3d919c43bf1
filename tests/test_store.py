from pathlib import Path

import pytest
from storehelp import add_row, table_rows

from harness.errors import UsageError
from harness.store import Store


def test_insert_is_idempotent_and_replace_overwrites(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as s:
        row = {"rating_key": "k1", "source": "t", "rater": "human", "rater_kind": "human", "task": "rank",
               "item_id": "i1", "valid": 1, "code": 2, "extra": {"note": "x"}}
        assert add_row(s, "ratings", row) is True
        assert add_row(s, "ratings", {**row, "code": 3}) is False
        assert table_rows(s, "ratings")[0]["code"] == 2
        assert add_row(s, "ratings", {**row, "code": 3}, replace=True) is True
        rows = table_rows(s, "ratings")
        assert len(rows) == 1 and rows[0]["code"] == 3 and rows[0]["extra"] == {"note": "x"}


def test_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    with Store.open(tmp_path / "s.sqlite"):
        with sqlite3.connect(tmp_path / "s.sqlite") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_column_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as s, pytest.raises(TypeError, match="bogus"):
        add_row(s, "runs", {"run_id": "r", "started_at": 0, "status": "x", "bogus": 1})


def test_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    p = tmp_path / "notes.sqlite"
    p.write_text("these are my notes, not a database\n" * 3)
    before = p.read_bytes()
    with pytest.raises(UsageError, match="not a harness store"):
        Store.open(p)
    assert p.read_bytes() == before


def test_folder_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder"):
        Store.open(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        Store.open(tmp_path / "none.sqlite", create=False)


def _bytes(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_a_new_store_carries_the_application_id_and_schema_version(tmp_path: Path) -> None:
    import sqlite3

    from harness.store import HARNESS_APP_ID, SCHEMA_VERSION

    Store.open(tmp_path / "s.sqlite").close()
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == HARNESS_APP_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_foreign_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    import sqlite3

    p = tmp_path / "other.sqlite"
    with sqlite3.connect(p) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER, note TEXT)")
        conn.execute("INSERT INTO runs VALUES (1, 'mine')")
    before = _bytes(p)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(UsageError, match="another application"):
            Store.open(p, **kwargs)  # type: ignore[arg-type]
    assert _bytes(p) == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from harness.store import SCHEMA_VERSION

    p = tmp_path / "s.sqlite"
    Store.open(p).close()
    with sqlite3.connect(p) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = _bytes(p)
    with pytest.raises(UsageError, match="newer harness"):
        Store.open(p)
    assert _bytes(p) == before


def test_a_schema_1_store_is_migrated_forward_and_keeps_its_rows(tmp_path: Path) -> None:
    """A store written before stores carried an application id (schema 1): migrated on a writing open."""
    import sqlite3

    from harness.store import HARNESS_APP_ID, SCHEMA_VERSION

    p = tmp_path / "old.sqlite"
    with sqlite3.connect(p) as conn:
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, "
                     "status TEXT NOT NULL, command TEXT, device TEXT, planned INTEGER, metadata TEXT)")
        conn.execute("CREATE TABLE generations (sample_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, created_at REAL "
                     "NOT NULL, device TEXT NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL, backend TEXT NOT "
                     "NULL, prompt_id TEXT NOT NULL, prompt TEXT NOT NULL, output TEXT, error TEXT)")
        conn.execute("INSERT INTO generations VALUES ('k', 'r', 0, 'd', 'm', 'v', 'gguf', 'p', 'hi', 'out', NULL)")
        conn.execute("PRAGMA user_version=1")
    with Store.open(p, readonly=True) as s:  # read-only: readable as it is, nothing written
        assert [g.output for g in s.generations()] == ["out"] and s.count("ratings") == 0
    with Store.open(p) as s:
        assert [g.sample_key for g in s.generations()] == ["k"] and s.done_sample_keys() == {"k"}
    with sqlite3.connect(p) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == HARNESS_APP_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        cols = {r[1] for r in conn.execute("PRAGMA table_info(generations)")}
        assert {"decode_tps", "peak_rss_bytes", "settings"} <= cols


def test_read_only_opening_never_changes_the_bytes(tmp_path: Path) -> None:
    import os

    p = tmp_path / "s.sqlite"
    with Store.open(p) as s:
        add_row(s, "ratings", {"rating_key": "k1", "source": "t", "rater": "human", "rater_kind": "human",
                               "task": "rank", "item_id": "i1", "valid": 1, "code": 2})
    before = _bytes(p)
    with Store.open(p, readonly=True) as s:
        assert s.count("ratings") == 1
        with pytest.raises(UsageError, match="read-only"):
            s.add([])
    assert _bytes(p) == before
    os.chmod(p, 0o444)
    try:
        with Store.open(p, readonly=True) as s:  # a read-only file can still be read
            assert s.count("ratings") == 1
    finally:
        os.chmod(p, 0o644)
    assert _bytes(p) == before


def test_a_run_whose_process_is_gone_is_interrupted_on_the_next_open(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from harness.records import Run

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    p = tmp_path / "s.sqlite"
    with Store.open(p) as s:
        s.put(Run(run_id="gone", started_at=0.0, status="running",
                  metadata={"process": {"host": socket.gethostname(), "pid": pid, "create_time": 1.0}}))
        s.put(Run(run_id="elsewhere", started_at=0.0, status="running",
                  metadata={"process": {"host": "another-host", "pid": pid, "create_time": 1.0}}))
    with Store.open(p) as s:
        status = {r.run_id: r.status for r in s.runs()}
    assert status == {"gone": "interrupted", "elsewhere": "running"}  # another host's run cannot be judged here
