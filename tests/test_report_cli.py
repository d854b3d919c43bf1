"""`harness report` and the report written at the end of `harness run`: files, exit codes, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import run_harness
from storehelp import add_row, table_rows

from harness.store import Store


def digest(path: Path) -> str:
    """The store's bytes (the file and its WAL) and its content (rows of every table)."""
    import sqlite3

    h = hashlib.sha256()
    wal = path.with_name(path.name + "-wal")
    h.update(path.read_bytes())
    h.update(wal.read_bytes() if wal.exists() else b"")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        for table in ("runs", "model_loads", "generations", "judgments", "ratings"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def test_report_command_writes_everything(small_store: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    before = digest(small_store)
    out = tmp_path / "rep"
    r = cli("report", "--store", small_store, "--out", out)
    assert r.code == 0, r.err
    assert f"report:      {out / 'report.html'}" in r.out
    for name in ("report.html", "leaderboard.md", "tables/leaderboard.csv", "tables/leaderboard.parquet",
                 "tables/pareto.parquet", "tables/quantization_ladder.csv", "tables/judge_cost.csv"):
        assert (out / name).is_file(), name
    board = pd.read_parquet(out / "tables" / "leaderboard.parquet")
    assert sorted(board["variant"]) == ["Q4_1", "Q8_0"] and board["n"].tolist() == [5, 5]
    csv = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert csv["decode_tps"].round(6).tolist() == board["decode_tps"].round(6).tolist()
    html = (out / "report.html").read_text()
    assert "No judgments yet" in html and "smollm2-135m-instruct" in html
    assert digest(small_store) == before  # reporting never writes to the store


def test_report_of_one_run(small_store: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    with Store.open(small_store) as store:
        (run_id,) = {g["run_id"] for g in table_rows(store, "generations")}
        g = table_rows(store, "generations", "variant = 'Q4_1'")[0]
        add_row(store, "generations", {**g, "sample_key": "later", "run_id": "later-run", "variant": "Q2_K"})
    r = cli("report", "--store", small_store, "--out", tmp_path / "one", "--run", run_id)
    assert r.code == 0, r.err
    md = (tmp_path / "one" / "leaderboard.md").read_text()
    assert "| Q4_1 |" in md and "| Q8_0 |" in md and "| Q2_K |" not in md and run_id in md
    r = cli("report", "--store", small_store, "--out", tmp_path / "two", "--run", "later-run")
    md = (tmp_path / "two" / "leaderboard.md").read_text()
    assert "| Q2_K |" in md and "| Q4_1 |" not in md


@pytest.mark.parametrize("args, fragment", [
    (["--run", "no-such-run"], "run 'no-such-run' has no generations"),
    (["--rater", "nobody"], "--rater"),
    (["--judge", "nobody"], "--rater"),  # the old name of --rater
    (["--reference", "Q9_9"], "--reference with one of: Q4_1, Q8_0"),
    (["--bootstrap", "-5"], "--bootstrap"),
])
def test_report_bad_input_leaves_store_intact(small_store: Path, tmp_path: Path, cli, args: list[str],  # type: ignore[no-untyped-def]
                                              fragment: str) -> None:
    before = digest(small_store)
    r = cli("report", "--store", small_store, "--out", tmp_path / "rep", *args)
    assert r.code == 2, r.err
    assert fragment in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "rep" / "report.html").exists()
    assert digest(small_store) == before


def test_report_bad_paths(small_store: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("report", "--store", tmp_path / "missing.sqlite", "--out", tmp_path / "rep")
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "missing.sqlite").exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    r = cli("report", "--store", small_store, "--out", a_file)
    assert r.code == 2 and "is a file" in r.err and a_file.read_text() == "x"
    empty = tmp_path / "empty.sqlite"
    Store.open(empty).close()
    r = cli("report", "--store", empty, "--out", tmp_path / "rep2")
    assert r.code == 2 and "has no generations and no ratings" in r.err and "harness run" in r.err


def test_run_ends_with_report_and_terminal_leaderboard(tmp_path: Path) -> None:
    from harness.prompts import load_set, write_jsonl

    prompts = tmp_path / "one.jsonl"
    write_jsonl([p for p in load_set("default") if p.id == "off-001"], prompts)
    store = tmp_path / "s.sqlite"
    report_dir = tmp_path / "report-here"
    r = run_harness("run", "--model", "smollm2-135m-instruct:Q4_1", "--prompts", prompts, "--max-tokens", "8",
                    "--no-judge", "--quiet", "--store", store, "--report-dir", report_dir)
    assert r.returncode == 0, r.stderr
    assert (report_dir / "report.html").is_file() and (report_dir / "leaderboard.md").is_file()
    assert f"report:  {report_dir / 'report.html'}" in r.stdout.replace("\n", " ") or \
        str(report_dir / "report.html") in r.stdout.replace("\n", "")
    assert "leaderboard" in r.stdout and "Q4_1" in r.stdout
    md = (report_dir / "leaderboard.md").read_text()
    assert "| 1 | smollm2-135m-instruct | Q4_1 |" in md
    r = run_harness("run", "--model", "smollm2-135m-instruct:Q4_1", "--prompts", prompts, "--max-tokens", "8",
                    "--no-judge", "--no-report", "--quiet", "--store", store, "--report-dir", tmp_path / "not-here")
    assert r.returncode == 0 and not (tmp_path / "not-here").exists() and "report:" not in r.stdout
