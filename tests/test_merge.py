"""`harness merge`: shards merge idempotently by key; another schema or a conflicting row is refused, main unchanged.

The first tests build shards from records written by hand (each expected count worked out from the rows);
the last one merges the two halves of a real plan run with `--shard 1/2` and `--shard 2/2`.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import REPO, run_harness
from storehelp import table_rows

from harness.records import Generation, Judgment, ModelLoad, Rating, Run
from harness.store import Store

FLEET_CATALOG = REPO / "tests" / "fixtures" / "fleet-catalog"


def _run(run_id: str, status: str = "finished") -> Run:
    return Run(run_id=run_id, started_at=1000.0, status=status, finished_at=1010.0 if status != "running" else None,
               command="harness run", device="laptop-cpu", planned=2, metadata={"host": {"cpu_model": "x"}})


def _gen(key: str, run_id: str, decode_tps: float = 50.0, error: str | None = None, output: str = "no") -> Generation:
    return Generation(sample_key=key, run_id=run_id, device="laptop-cpu", model="m", variant="Q4_1", backend="gguf",
                      prompt_id=f"p-{key}", prompt=f"prompt {key}", output=None if error else output,
                      decode_tps=None if error else decode_tps, error=error, created_at=2000.0,
                      backend_timings={"n_streamed_tokens": 3})


def _load(run_id: str) -> ModelLoad:
    return ModelLoad(run_id=run_id, model="m", variant="Q4_1", backend="gguf", device="laptop-cpu", load_s=0.5,
                     created_at=1001.0)


def _judgment(key: str, sample_key: str, raw: str = '{"score": 1}', latency_s: float = 0.2) -> Judgment:
    return Judgment(judgment_key=key, judge="j", judge_kind="openai", mode="score", item_id="p:1",
                    sample_keys=[sample_key], raw_response=raw, parsed={"score": int(raw[-2])}, latency_s=latency_s,
                    created_at=3000.0)


def _rating(key: str, sample_key: str, code: float = 1.0) -> Rating:
    return Rating(rating_key=key, source="judge:j", rater="j", rater_kind="judge", task="score", item_id="p:1",
                  sample_key=sample_key, code=code, harmful=int(code >= 2), created_at=3001.0)


def _store(path: Path, records: list) -> Path:
    with Store.open(path) as st:
        st.add(records)
    return path


def _all_rows(path: Path) -> dict[str, list[dict]]:
    with Store.open(path, readonly=True) as st:
        return {t: table_rows(st, t) for t in ("runs", "model_loads", "generations", "judgments", "ratings")}


def _table(out: str) -> dict[str, tuple[int, ...]]:
    """The per-table (added, replaced, unchanged, duplicates) of `harness merge`'s table."""
    found = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│") if c.strip()]
        if len(cells) == 5 and cells[0] in ("runs", "model_loads", "generations", "judgments", "ratings"):
            found[cells[0]] = tuple(int(c) for c in cells[1:])
    return found


def _counts(out: str) -> dict[str, tuple[int, ...]]:
    """The per-table (added, replaced, unchanged) of `harness merge`'s table."""
    return {t: c[:3] for t, c in _table(out).items()}


def test_two_shards_merged_twice_the_second_adds_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = _store(tmp_path / "a.sqlite", [_run("ra"), _load("ra"), _gen("k1", "ra"), _gen("k2", "ra"),
                                        _judgment("j1", "k1"), _rating("r1", "k1")])
    b = _store(tmp_path / "b.sqlite", [_run("rb"), _load("rb"), _gen("k3", "rb"),
                                        # the same judgment asked on another board (another task, another
                                        # latency): the same answer, so not a conflict
                                        _judgment("j1", "k3", latency_s=0.9), _rating("r3", "k3")])
    main = tmp_path / "main.sqlite"
    r = cli("merge", a, b, "--into", main)
    assert r.code == 0, r.err
    assert _counts(r.out) == {"runs": (2, 0, 0), "model_loads": (2, 0, 0), "generations": (3, 0, 0),
                              "judgments": (1, 0, 0), "ratings": (2, 0, 0)}
    first = _all_rows(main)
    assert sorted(g["sample_key"] for g in first["generations"]) == ["k1", "k2", "k3"]
    # Rows keep what the shard stored, created_at included.
    assert {g["created_at"] for g in first["generations"]} == {2000.0}
    assert first["judgments"][0]["sample_keys"] == ["k1"]  # the first shard's
    r = cli("merge", a, b, "--into", main)
    assert r.code == 0, r.err
    assert _counts(r.out) == {"runs": (0, 0, 2), "model_loads": (0, 0, 2), "generations": (0, 0, 3),
                              "judgments": (0, 0, 1), "ratings": (0, 0, 2)}
    assert _all_rows(main) == first


def test_a_conflicting_row_is_refused_and_main_is_unchanged(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = _store(tmp_path / "a.sqlite", [_run("ra"), _gen("k1", "ra", decode_tps=50.0)])
    main = tmp_path / "main.sqlite"
    assert cli("merge", a, "--into", main).code == 0
    before = main.read_bytes()
    # The same sample with another output: a real conflict.
    twice = _store(tmp_path / "twice.sqlite", [_run("rb"), _gen("k1", "rb", output="yes"), _gen("k9", "rb")])
    r = cli("merge", twice, "--into", main)
    assert r.code == 2
    line = r.err.strip()
    assert "\n" not in line and "merge refused, nothing written" in line
    assert "generations row k1" in line and "output ('no' vs 'yes')" in line and "run_id" in line
    assert main.read_bytes() == before
    with Store.open(main, readonly=True) as st:
        assert st.count("generations") == 1  # k9 was not merged either
    # Two shards that disagree with each other: refused too, and a new main store is not even created.
    fresh = tmp_path / "fresh.sqlite"
    other = _store(tmp_path / "other.sqlite", [_run("rx"), _judgment("j1", "k1", raw='{"score": 3}')])
    mine = _store(tmp_path / "mine.sqlite", [_run("ry"), _judgment("j1", "k1", raw='{"score": 1}')])
    r = cli("merge", mine, other, "--into", fresh)
    assert r.code == 2 and "judgments row j1" in r.err and "raw_response" in r.err and "parsed" in r.err
    assert not fresh.exists()


def test_a_sample_measured_again_is_a_duplicate_not_a_conflict(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A board re-ran part of the plan: the same sample keys and outputs, another run id and other timings.
    a = _store(tmp_path / "a.sqlite", [_run("ra"), _gen("k1", "ra", decode_tps=50.0), _gen("k2", "ra")])
    main = tmp_path / "main.sqlite"
    assert cli("merge", a, "--into", main).code == 0
    again = _store(tmp_path / "again.sqlite", [_run("rb"), _gen("k1", "rb", decode_tps=61.5),
                                                _gen("k2", "rb", decode_tps=12.0), _gen("k9", "rb")])
    other = _store(tmp_path / "other.sqlite", [_run("rc"), _gen("k9", "rc", decode_tps=7.0)])
    r = cli("merge", again, other, "--into", main)
    assert r.code == 0, r.err
    # k1, k2 against main, k9 of `other` against `again`: three duplicates, the first row of each kept
    assert _table(r.out)["generations"] == (1, 0, 0, 3)
    with Store.open(main, readonly=True) as st:
        by_key = {g.sample_key: g for g in st.records("generations")}
    assert (by_key["k1"].decode_tps, by_key["k1"].run_id) == (50.0, "ra")
    assert (by_key["k9"].decode_tps, by_key["k9"].run_id) == (50.0, "rb")


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("generations.decode_tps", "'fast'", "decode_tps = 'fast' (a number)"),
    ("generations.seed", "'x'", "seed = 'x' (a whole number)"),
    ("generations.contended", "'maybe'", "contended = 'maybe' (true or false)"),
    ("generations.backend_timings", "'{not json'", "backend_timings = '{not json' (JSON, not text)"),
    ("generations.prompt", "NULL", "prompt = None (required, not empty)"),
    ("generations.energy_j", "9e999", "energy_j = inf (a finite number)"),
    ("judgments.sample_keys", "'[' || replace(hex(zeroblob(50000)), '00', '[')", "sample_keys = '[[["),
])
def test_a_shard_row_of_the_wrong_type_is_refused(cli, tmp_path: Path, column: str, value: str,
                                                  shown: str) -> None:  # type: ignore[no-untyped-def]
    shard = _store(tmp_path / "shard.sqlite", [_run("ra"), _gen("k1", "ra"), _gen("k2", "ra"), _judgment("j1", "k1")])
    table, col = column.split(".")
    key, key_column = ("k2", "sample_key") if table == "generations" else ("j1", "judgment_key")
    con = sqlite3.connect(shard)
    if value == "NULL":  # the NOT NULL constraint is the table's: rebuild the row in a copy without it
        con.execute("CREATE TABLE g2 AS SELECT * FROM generations")
        con.execute("DROP TABLE generations")
        con.execute("ALTER TABLE g2 RENAME TO generations")
    con.execute(f"UPDATE {table} SET {col} = {value} WHERE {key_column} = ?", [key])
    con.commit()
    con.close()
    main = _store(tmp_path / "main.sqlite", [_run("r0")])
    before = main.read_bytes()
    r = cli("merge", shard, "--into", main)
    assert r.code == 2, r.err
    line = r.err.strip()
    assert "\n" not in line and "Traceback" not in r.err
    assert f"{table} row '{key}'" in line and shown in line and "nothing written" in line, line
    assert main.read_bytes() == before


def test_a_success_replaces_a_failure_and_a_finished_run_a_running_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main = _store(tmp_path / "main.sqlite", [_run("ra", status="running"), _gen("k1", "ra", error="boom"),
                                             _gen("k2", "ra")])
    shard = _store(tmp_path / "shard.sqlite", [_run("ra", status="finished"), _gen("k1", "ra", decode_tps=40.0),
                                               _gen("k2", "ra", error="later failure")])
    r = cli("merge", shard, "--into", main)
    assert r.code == 0, r.err
    counts = _counts(r.out)
    assert counts["runs"] == (0, 1, 0) and counts["generations"] == (0, 1, 1)
    rows = _all_rows(main)
    assert rows["runs"][0]["status"] == "finished" and rows["runs"][0]["finished_at"] == 1010.0
    by_key = {g["sample_key"]: g for g in rows["generations"]}
    assert by_key["k1"]["error"] is None and by_key["k1"]["decode_tps"] == 40.0
    assert by_key["k2"]["error"] is None and by_key["k2"]["decode_tps"] == 50.0  # a failure never replaces a result
    # The other way round: main's finished run stays finished.
    assert cli("merge", _store(tmp_path / "old.sqlite", [_run("ra", status="running")]), "--into", main).code == 0
    assert _all_rows(main)["runs"][0]["status"] == "finished"


def test_a_shard_of_another_schema_is_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main = _store(tmp_path / "main.sqlite", [_run("ra"), _gen("k1", "ra")])
    before = main.read_bytes()
    old = _store(tmp_path / "old.sqlite", [_run("rb"), _gen("k2", "rb")])
    con = sqlite3.connect(old)
    con.execute("PRAGMA user_version=1")
    con.close()
    r = cli("merge", old, "--into", main)
    assert r.code == 2 and "another schema (schema 1; this harness writes schema 2)" in r.err
    newer = _store(tmp_path / "newer.sqlite", [_run("rc")])
    con = sqlite3.connect(newer)
    con.execute("ALTER TABLE generations ADD COLUMN quantum_flux REAL")
    con.close()
    r = cli("merge", newer, "--into", main)
    assert r.code == 2 and "generations columns this harness does not know (quantum_flux)" in r.err
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE notes (t TEXT)")
    con.close()
    r = cli("merge", foreign, "--into", main)
    assert r.code == 2 and "not a harness store" in r.err
    assert cli("merge", main, "--into", main).code == 2
    assert cli("merge", tmp_path / "nope.sqlite", "--into", main).code == 2
    assert main.read_bytes() == before


def _split_run(store: Path, prompts: Path, part: str | None) -> None:
    args = ["--catalog", FLEET_CATALOG, "run", "--device", "laptop-cpu", "--model", "smollm2-135m-instruct:Q4_1",
            "--prompts", prompts, "--max-tokens", "8", "--no-judge", "--no-report", "--quiet", "--store", store]
    r = run_harness(*args, *(["--shard", part] if part else []))
    assert r.returncode == 0, r.stderr
    r = run_harness("judge", "--store", store, "--judge", "refusal-detector", "--quiet")
    assert r.returncode == 0, r.stderr


def test_the_shards_of_a_split_plan_merge_into_the_whole_plan(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from harness import catalog, engine
    from harness.backends import Sampling
    from harness.devices import load_profile
    from harness.prompts import load_set, write_jsonl
    from harness.variants import parse_spec

    by_id = {p.id: p for p in load_set("default")}
    chosen = [by_id[i] for i in ("disc-001", "off-001", "priv-001", "ben-001")]
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(chosen, prompts)
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    _split_run(one, prompts, "1/2")
    _split_run(two, prompts, "2/2")
    with catalog.user_dirs([FLEET_CATALOG]):
        spec = engine.RunSpec(models=[parse_spec("smollm2-135m-instruct:Q4_1")], prompts=load_set(str(prompts)),
                              seeds=[0], sampling=Sampling(max_tokens=8))
        plan = engine.Plan(device=load_profile("laptop-cpu"), spec=spec)
        engine.prepare(plan)
        all_keys = {s.key: s.prompt.id for s in engine.samples(plan)}
    rows_one, rows_two = _all_rows(one), _all_rows(two)
    # Round robin over the plan's prompts (one seed): the 1st and 3rd, then the 2nd and 4th.
    assert [g["prompt_id"] for g in rows_one["generations"]] == ["disc-001", "priv-001"]
    assert [g["prompt_id"] for g in rows_two["generations"]] == ["off-001", "ben-001"]
    shard_one, shard_two = rows_one["runs"][0]["metadata"]["shard"], rows_two["runs"][0]["metadata"]["shard"]
    assert (shard_one["part"], shard_one["of"], shard_two["part"]) == (1, 2, 2)
    assert shard_one["plan"] == shard_two["plan"]  # both boards were given the same plan
    assert rows_one["runs"][0]["planned"] == 2

    main = tmp_path / "main.sqlite"
    r = cli("merge", one, two, "--into", main)
    assert r.code == 0, r.err
    n = len(all_keys)
    assert _counts(r.out) == {"runs": (2, 0, 0), "model_loads": (2, 0, 0), "generations": (n, 0, 0),
                              "judgments": (n, 0, 0), "ratings": (n, 0, 0)}
    merged = _all_rows(main)
    assert {g["sample_key"] for g in merged["generations"]} == set(all_keys)
    assert len(merged["generations"]) == n
    r = cli("merge", two, one, "--into", main)
    assert r.code == 0 and _counts(r.out)["generations"] == (0, 0, n)
    assert _all_rows(main) == merged

    # A shard whose measurement of a sample differs from the one merged: refused, main byte for byte unchanged.
    bad = tmp_path / "bad.sqlite"
    shutil.copy(one, bad)
    key = rows_one["generations"][0]["sample_key"]
    con = sqlite3.connect(bad)
    con.execute("UPDATE generations SET output = 'tampered' WHERE sample_key = ?", [key])
    con.commit()
    con.close()
    before = main.read_bytes()
    r = cli("merge", bad, "--into", main)
    assert r.code == 2 and f"generations row {key}" in r.err and "output" in r.err
    assert main.read_bytes() == before


def test_shard_and_fleet_options_are_checked(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "s.sqlite"
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        r = cli("run", "--shard", bad, "--store", store, "--no-judge", "--no-report", "--quiet")
        assert r.code == 2 and "--shard" in r.err, (bad, r.err)
    r = cli("run", "--device", "laptop-cpu", "--device", "server-cpu", "--store", store, "--quiet")
    assert r.code == 2 and "--fleet" in r.err
    r = cli("run", "--fleet", "tcp://127.0.0.1:9", "--shard", "1/2", "--store", store, "--quiet")
    assert r.code == 2 and "drop --shard or --fleet" in r.err
    assert not store.exists()


@pytest.mark.parametrize("table", ["runs", "generations", "judgments", "ratings"])
def test_records_by_key_reads_keyed_tables(tmp_path: Path, table: str) -> None:
    recs = {"runs": _run("ra"), "generations": _gen("k1", "ra"), "judgments": _judgment("j1", "k1"),
            "ratings": _rating("r1", "k1")}
    path = _store(tmp_path / "s.sqlite", list(recs.values()))
    with Store.open(path, readonly=True) as st:
        found = st.records_by_key(table, ["ra", "k1", "j1", "r1", "missing"])
    assert list(found.values()) == [recs[table]]
