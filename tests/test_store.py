from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.store import Store


def test_insert_is_idempotent_and_replace_overwrites(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as s:
        row = {"rating_key": "k1", "source": "t", "rater": "human", "rater_kind": "human", "task": "rank",
               "item_id": "i1", "valid": 1, "code": 2, "extra": {"note": "x"}}
        assert s.insert("ratings", row) is True
        assert s.insert("ratings", {**row, "code": 3}) is False
        assert s.rows("ratings")[0]["code"] == 2
        assert s.insert("ratings", {**row, "code": 3}, replace=True) is True
        rows = s.rows("ratings")
        assert len(rows) == 1 and rows[0]["code"] == 3 and rows[0]["extra"] == {"note": "x"}


def test_wal_mode(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_column_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as s, pytest.raises(ValueError, match="unknown columns"):
        s.insert("runs", {"run_id": "r", "started_at": 0, "status": "x", "bogus": 1})


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
