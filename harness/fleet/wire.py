"""What travels between a board and the coordinator: the job's description, and store rows as plain values.

Rows travel as their column values (harness.records.to_row: JSON text for JSON fields, 0/1 for booleans),
which Dask's messages carry as they are, and are decoded back into records by the same code that reads
them from SQLite, so a row arrives exactly as the board stored it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import records as rec


@dataclass(frozen=True)
class JobSpec:
    """One task: a model variant on a device, over the plan's prompts and seeds."""

    device: str  # the device profile the board advertises
    plan: dict[str, Any]  # harness.engine.RunSpec.to_wire() of the run's spec narrowed to the task's variant
    command: str
    queue: str  # the Dask queue the rows go to
    done_variable: str  # the Dask variable holding the keys the main store has for this task
    done_keys: list[str] = field(default_factory=list)  # those keys when the task was submitted
    fleet: dict[str, Any] = field(default_factory=dict)  # provenance: scheduler, coordinator run, task

    @property
    def model(self) -> str:
        """The model manifest's name (resolved on the board)."""
        return str(self.plan["models"][0][0])

    @property
    def variant(self) -> str:
        return str(self.plan["models"][0][1][0])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [rec.to_row(r) for r in records]


def decode(table: str, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    cls = rec.TABLES[table]
    out = []
    for row in rows:
        names = list(row)
        out.append(rec.decoder(cls, names)([row[n] for n in names]))
    return out


def encode_tables(tables: Mapping[str, Iterable[Any]]) -> dict[str, list[dict[str, Any]]]:
    return {t: encode(rs) for t, rs in tables.items()}


def decode_tables(tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, list[Any]]:
    return {t: decode(t, rs) for t, rs in tables.items()}
