"""Test helpers that read a store's tables with plain SQL on their own connection (what is really stored),
and build store records from dicts (fixtures written by hand)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from harness import records
from harness.store import Store


def _conn(store: Store) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{store.path.resolve()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def table_rows(store: Store, table: str, where: str = "1=1", params: Sequence[Any] = (), order: str = "rowid"
         ) -> list[dict[str, Any]]:
    """A table's rows as dicts (JSON decoded, booleans as bool), by plain SQL."""
    cls = records.TABLES[table]
    with _conn(store) as conn:
        conn.row_factory = None
        cur = conn.execute(f"SELECT * FROM {table} WHERE {where or '1=1'} ORDER BY {order or 'rowid'}", list(params))
        decode = records.decoder(cls, [d[0] for d in cur.description])
        return [asdict(decode(r)) for r in cur.fetchall()]


def query(store: Store, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with _conn(store) as conn:
        return [dict(r) for r in conn.execute(sql, list(params))]


def add_rows(store: Store, table: str, items: Iterable[Mapping[str, Any]], replace: bool = False) -> int:
    cls = records.TABLES[table]
    return store.add([cls(**dict(r)) for r in items], replace=replace)


def add_row(store: Store, table: str, item: Mapping[str, Any], replace: bool = False) -> bool:
    return add_rows(store, table, [item], replace=replace) == 1


def count(store: Store, table: str, where: str = "1=1", params: Sequence[Any] = ()) -> int:
    with _conn(store) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", list(params)).fetchone()[0])
