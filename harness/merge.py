"""Merging stores: shards carried back from offline boards, and rows streamed in by a fleet run.

Every row is merged by its key (runs: run_id, generations: sample_key, judgments: judgment_key,
ratings: rating_key; a model load, which has no key of its own, by its run, model, variant, backend,
device and the time it was recorded), so merging the same shard twice adds nothing. Two rows under
one key must say the same thing; what is compared is their content, not bookkeeping:

- `created_at` (when a row was written) is never compared;
- a run's `status` and `finished_at` are its lifecycle: a finished or failed run replaces the same
  run still `running` or `interrupted` (an interrupted one replaces `running`);
- a judgment's provenance (which task first asked for it: `sample_keys`, `shown_order`; how it was
  obtained: `latency_s`, `attempts`, `cost_usd`) is not compared: the key already fixes what was asked;
- a row with an error (a failed sample, a failed judge request, a rating of one) is replaced by the
  same row without an error, and never replaces one: the store's own rule when a run is resumed;
- a generation measured again (a board re-ran part of a plan: the same sample key, output and identity,
  another run and other timings) is a duplicate, not a conflict: the row already there is kept and the
  duplicate counted (`MEASUREMENT` lists the fields a re-measurement may change).

Anything else that differs is a conflict (e.g. the same key with another output text, or another model
file). `plan_merge` first checks every incoming row's field types against its record (a shard is a file
someone else wrote: `decode_tps = 'fast'` would break every report of the main store), then every key,
before anything is written, and raises a UsageError naming the table, the key and the field; `apply`
writes the whole plan in one transaction.
The fleet coordinator (harness.fleet) merges each streamed batch with the same two functions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import records as rec
from harness.errors import UsageError
from harness.infiles import refuse_special
from harness.store import HARNESS_APP_ID, SCHEMA_VERSION, Store, is_sqlite_file

# A generation's measurement, not its identity: a second measurement of the same sample differs only here.
MEASUREMENT = {"generations": frozenset({
    "run_id", "backend_timings", "ttft_s", "prompt_tps", "decode_tps", "latency_s", "peak_rss_bytes",
    "peak_vram_bytes", "energy_j", "energy_source", "bandwidth_fraction", "interference_frac", "cpu_steal_frac",
    "cpu_mhz", "temp_c", "throttled", "contended", "warmup", "repeats", "measurements", "settings"})}
# Merge order: a row's run before its rows.
TABLES = ("runs", "model_loads", "generations", "judgments", "ratings")
NEVER_COMPARED = frozenset({"created_at"})
LIFECYCLE = {"runs": frozenset({"status", "finished_at"})}
PROVENANCE = {"judgments": frozenset({"sample_keys", "shown_order", "latency_s", "attempts", "cost_usd"})}
MODEL_LOAD_IDENTITY = ("run_id", "model", "variant", "backend", "device", "created_at")
# A run's status, by how final it is: a later state replaces an earlier one.
RUN_STATE_RANK = {"running": 0, "interrupted": 1, "failed": 2, "finished": 2}


@dataclass
class TableCounts:
    added: int = 0  # new keys
    replaced: int = 0  # a key whose row the source supersedes (a success over a failure, a finished run)
    unchanged: int = 0  # already there with the same content (or a better version of it)
    duplicates: int = 0  # the same sample measured again (other run, other timings): the first row kept
    conflicts: int = 0  # kept as it was although the source says otherwise (only with on_conflict="keep")


@dataclass
class MergePlan:
    inserts: list[Any] = field(default_factory=list)
    replacements: list[Any] = field(default_factory=list)
    counts: dict[str, TableCounts] = field(default_factory=lambda: {t: TableCounts() for t in TABLES})
    conflict_notes: list[str] = field(default_factory=list)  # with on_conflict="keep": what was not merged

    @property
    def n_written(self) -> int:
        return len(self.inserts) + len(self.replacements)


@dataclass(frozen=True)
class MergeResult:
    into: Path
    sources: list[Path]
    counts: dict[str, TableCounts]
    conflict_notes: list[str]


class Conflict(Exception):
    def __init__(self, fields: list[str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


# -- identity and content ---------------------------------------------------------------------------------
def record_key(table: str, record: Any) -> str:
    """The key a row is merged by."""
    if table == "model_loads":
        return "|".join(str(getattr(record, f)) for f in MODEL_LOAD_IDENTITY)
    (key_column,) = [c.name for c in rec.table_columns(table) if c.key]
    return str(getattr(record, key_column))


def _differing(table: str, old: Any, new: Any) -> list[str]:
    skip = NEVER_COMPARED | LIFECYCLE.get(table, frozenset()) | PROVENANCE.get(table, frozenset())
    return [f.name for f in dataclasses.fields(old) if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)]


def resolve(table: str, old: Any, new: Any) -> str:
    """What merging `new` onto `old` (same key) does: 'same', 'keep' (old stays), 'duplicate' (old stays: the
    same sample measured again) or 'replace'; raises Conflict naming the differing fields."""
    diff = _differing(table, old, new)
    if table == "runs":
        if diff:
            raise Conflict(diff)
        old_rank, new_rank = RUN_STATE_RANK.get(old.status, 0), RUN_STATE_RANK.get(new.status, 0)
        if (old.status, old.finished_at) == (new.status, new.finished_at):
            return "same"
        return "replace" if new_rank > old_rank else "keep"
    if not diff:
        return "same"
    if hasattr(old, "error"):
        if old.error is not None and new.error is None:
            return "replace"
        if new.error is not None:
            return "keep"
    measured = MEASUREMENT.get(table, frozenset())
    if set(diff) <= measured:
        return "duplicate"
    raise Conflict(sorted(diff, key=lambda name: name in measured))  # what makes it a conflict first


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _conflict_line(table: str, key: str, where_old: str, where_new: str, old: Any, new: Any, fields: list[str]) -> str:
    first = fields[0]
    more = f" (and {len(fields) - 1} more field{'s' if len(fields) > 2 else ''}: {', '.join(fields[1:4])})" \
        if len(fields) > 1 else ""
    return (f"{table} row {key} differs between {where_old} and {where_new} in {first} "
            f"({_show(getattr(old, first))} vs {_show(getattr(new, first))}){more}")


# -- planning and writing ---------------------------------------------------------------------------------
def plan_merge(main: Store | None, sources: Sequence[tuple[str, Mapping[str, Iterable[Any]]]], *,
               main_name: str = "the main store", on_conflict: str = "refuse") -> MergePlan:
    """Check every row of every source (its field types, then its key against the others and against `main`,
    None: an empty store) and return what to write. A row of the wrong types raises UsageError; with
    on_conflict='refuse' so does a conflict, before anything is written; with 'keep' the row already there (in
    main, or from an earlier source) is kept and noted."""
    if on_conflict not in ("refuse", "keep"):
        raise ValueError(f"on_conflict must be 'refuse' or 'keep', not {on_conflict!r}")
    check_types(sources)
    plan = MergePlan()
    for table in TABLES:
        incoming = _incoming(table, sources, plan, on_conflict)
        existing = _existing(main, table, list(incoming))
        for key, (record, where) in incoming.items():
            old = existing.get(key)
            if old is None:
                plan.inserts.append(record)
                plan.counts[table].added += 1
                continue
            verdict = _verdict(table, key, (old, main_name), (record, where), plan, on_conflict)
            if verdict == "replace":
                plan.replacements.append(record)
                plan.counts[table].replaced += 1
            elif verdict in ("same", "keep"):
                plan.counts[table].unchanged += 1
    return plan


def check_types(sources: Sequence[tuple[str, Mapping[str, Iterable[Any]]]]) -> None:
    """UsageError naming the first incoming row whose fields do not fit its record's types."""
    for where, tables in sources:
        for table in TABLES:
            for record in tables.get(table, ()):
                problem = rec.type_problem(record)
                if problem:
                    raise UsageError(f"merge refused, nothing written: {table} row {_show(record_key(table, record))} "
                                     f"of {where} has {problem}: the shard is damaged or was edited by hand; "
                                     "repair or drop that row in the shard, then merge again")


def _incoming(table: str, sources: Sequence[tuple[str, Mapping[str, Iterable[Any]]]], plan: MergePlan,
              on_conflict: str) -> dict[str, tuple[Any, str]]:
    """The sources' rows of one table by key, one per key (the sources checked against each other)."""
    incoming: dict[str, tuple[Any, str]] = {}
    for where, tables in sources:
        for record in tables.get(table, ()):
            key = record_key(table, record)
            seen = incoming.get(key)
            if seen is None:
                incoming[key] = (record, where)
            elif _verdict(table, key, seen, (record, where), plan, on_conflict) == "replace":
                incoming[key] = (record, where)
    return incoming


def _verdict(table: str, key: str, old: tuple[Any, str], new: tuple[Any, str], plan: MergePlan,
             on_conflict: str) -> str:
    """resolve() on (record, where it comes from) pairs, counting duplicates; a conflict is refused (UsageError)
    or, with on_conflict='keep', noted and answered 'conflict'."""
    try:
        verdict = resolve(table, old[0], new[0])
    except Conflict as exc:
        line = _conflict_line(table, key, old[1], new[1], old[0], new[0], exc.fields)
        if on_conflict == "refuse":
            raise UsageError(_refusal(line)) from None
        plan.conflict_notes.append(line)
        plan.counts[table].conflicts += 1
        return "conflict"
    if verdict == "duplicate":
        plan.counts[table].duplicates += 1
    return verdict


def _refusal(line: str) -> str:
    return (f"merge refused, nothing written: {line}; the same key holds two different results (e.g. one sample "
            "with two different outputs): keep one of the two (merge the other into a separate store) or give each "
            "board its own device profile")


def _existing(main: Store | None, table: str, keys: list[str]) -> dict[str, Any]:
    if main is None or not keys:
        return {}
    if table == "model_loads":
        wanted = set(keys)
        return {k: r for r in main.model_loads() if (k := record_key(table, r)) in wanted}
    return main.records_by_key(table, keys)


def apply(main: Store, plan: MergePlan) -> None:
    """Write a plan in one transaction (nothing when it is empty)."""
    if plan.n_written:
        main.apply_merge(plan.inserts, plan.replacements)


# -- whole stores -------------------------------------------------------------------------------------------
def check_shard_schema(store: Store) -> None:
    """A shard must be a harness store of this schema version whose columns this harness knows."""
    schema = store.schema()
    if not schema.is_harness or schema.version != SCHEMA_VERSION:
        what = f"schema {schema.version}" if schema.application_id in (HARNESS_APP_ID, 0) else \
            f"application id {schema.application_id:#x}"
        raise UsageError(f"shard {store.path} is a store of another schema ({what}; this harness writes schema "
                         f"{SCHEMA_VERSION}): open it once with the same harness version as the main store "
                         "(`harness export` or `harness run --store` on it), then merge")
    for table, cols in schema.columns.items():
        unknown = sorted(cols - {c.name for c in rec.table_columns(table)})
        if unknown:
            raise UsageError(f"shard {store.path} has {table} columns this harness does not know "
                             f"({', '.join(unknown)}): it was written by a newer harness; upgrade harness "
                             "(pip install -U harness) before merging")


def read_tables(store: Store) -> dict[str, list[Any]]:
    return {table: store.records(table) for table in TABLES}


def merge_stores(shards: Sequence[str | Path], into: str | Path) -> MergeResult:
    """Merge shard stores into `into` (created if missing): everything is checked first, then written in one
    transaction; a shard of another schema or a conflicting row raises UsageError and writes nothing."""
    if not shards:
        raise UsageError("harness merge needs at least one shard: harness merge SHARD.sqlite... --into MAIN.sqlite")
    main_path = Path(into).expanduser()
    paths = [Path(s).expanduser() for s in shards]
    seen: dict[tuple[int, int], Path] = {}
    main_id = _file_id(main_path)
    sources: list[tuple[str, dict[str, list[Any]]]] = []
    for p in paths:
        refuse_special(p, "shard")  # before is_sqlite_file opens it: a FIFO would block
        if not p.is_file():
            raise UsageError(f"shard {p} does not exist: pass the path of a store file")
        if not is_sqlite_file(p):
            raise UsageError(f"shard {p} is not a harness store (not an SQLite file): pass a store file")
        fid = _file_id(p)
        if fid is not None and fid == main_id:
            raise UsageError(f"shard {p} is the main store {main_path} itself: pass another --into path")
        if fid in seen:
            raise UsageError(f"shard {p} is given twice (also as {seen[fid]}): pass each shard once")
        if fid is not None:
            seen[fid] = p
        with Store.open(p, readonly=True) as shard:
            check_shard_schema(shard)
            sources.append((str(p), read_tables(shard)))
    if main_path.exists():
        with Store.open(main_path, readonly=True) as main_ro:
            plan = plan_merge(main_ro, sources, main_name=str(main_path))
    else:
        plan = plan_merge(None, sources, main_name=str(main_path))
    with Store.open(main_path) as main:
        # Planned on a read-only view; apply() fails (and writes nothing) if another writer added a key since.
        apply(main, plan)
    return MergeResult(main_path, paths, plan.counts, plan.conflict_notes)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
