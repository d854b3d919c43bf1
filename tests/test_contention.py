"""Measurement validity end to end, on real llama.cpp runs of the embedded model: warm-up, repeats, samples
flagged contended under a competing load this test starts (one busy process per allowed CPU), the
remeasure and wait policies, host warnings through the Progress, and bad settings."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_harness
from storehelp import table_rows

from harness.store import Store

BASE = ("run", "--model", "smollm2-135m-instruct:Q4_1", "--no-judge", "--no-report", "--quiet")


@pytest.fixture
def busy() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One spinning process per CPU this process may use, for the test's duration (stopped by PID)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def gens(store: Path) -> list[dict]:
    with Store.open(store, readonly=True) as st:
        return table_rows(st, "generations")


def leaderboard(store: Path) -> dict:
    r = run_harness("leaderboard", "--store", store, "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    return row


def flagged_as_the_rule_says(m: dict, threshold: float) -> bool:
    return m["contended"] == (m["interference_frac"] + (m["cpu_steal_frac"] or 0.0) > threshold)


def test_repeat_measures_each_sample_n_times_and_keeps_the_spread(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    r = run_harness(*BASE, "--limit", "3", "--max-tokens", "8", "--repeat", "3", "--contention-threshold", "1",
                    "--store", store)
    assert r.returncode == 0, r.stderr
    rows = gens(store)
    assert [g["warmup"] for g in rows] == [True, False, False]
    warm, *rest = rows
    assert warm["repeats"] == 1 and warm["measurements"] is None  # the warm-up is measured once
    values = []
    for g in rest:
        ms = g["measurements"]
        assert g["repeats"] == 3 and [m["repeat"] for m in ms] == [0, 1, 2]
        assert all(m["same_output"] and m["n_output_tokens"] == g["n_output_tokens"] for m in ms)  # greedy
        assert not any(m["contended"] for m in ms) and not g["contended"]  # threshold 1: never contended
        decode = [m["decode_tps"] for m in ms]
        assert g["decode_tps"] == pytest.approx(statistics.median(decode))
        assert g["peak_rss_bytes"] == max(m["peak_rss_bytes"] for m in ms)
        assert all(m["interference_frac"] is not None and 0 <= m["interference_frac"] <= 1 for m in ms)
        values += decode
    row = leaderboard(store)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    assert (row["n_cost"], row["n_warmup"], row["n_contended"]) == (6, 1, 0)
    assert row["decode_tps"] == pytest.approx(statistics.median(values))
    assert (row["decode_tps_q1"], row["decode_tps_q3"]) == (pytest.approx(q1), pytest.approx(q3))
    with Store.open(store, readonly=True) as st:
        meta = st.runs()[0].metadata or {}
    assert meta["measurement"]["repeat"] == 3 and meta["measurement"]["contention_threshold"] == 1.0


def test_samples_under_a_competing_load_are_flagged_and_left_out(tmp_path: Path, busy: list) -> None:
    store = tmp_path / "busy.sqlite"
    r = run_harness(*BASE, "--limit", "3", "--max-tokens", "6", "--store", store)
    assert r.returncode == 0, r.stderr
    rows = gens(store)
    assert len(rows) == 3
    for g in rows:  # every sample says what else ran, and its flag follows the rule (default threshold 0.05)
        assert g["interference_frac"] is not None and g["cpu_steal_frac"] is not None
        assert flagged_as_the_rule_says(g, 0.05), g
        assert g["settings"]["measurement"] == {"repeat": 1, "on_contention": "record", "contention_threshold": 0.05,
                                                 "max_remeasure": 3, "wait_timeout_s": 60.0}
    # one busy process per CPU takes about half the machine: every sample is contended
    assert all(g["contended"] for g in rows)
    row = leaderboard(store)
    assert (row["n_warmup"], row["n_contended"], row["n_cost"]) == (1, 2, 0)
    assert row["decode_tps"] is None  # nothing clean to take a median of: unknown, not a wrong number
    flagged = json.loads(run_harness("leaderboard", "--store", store, "--json", "--include-flagged").stdout)[0]
    assert flagged["n_cost"] == 3 and flagged["decode_tps"] == pytest.approx(
        statistics.median(g["decode_tps"] for g in rows))
    with Store.open(store, readonly=True) as st:
        meta = st.runs()[0].metadata or {}
    assert meta["measurement"]["host_readers"]["cpu_times"] == "procfs"


def test_remeasure_repeats_a_contended_measurement_up_to_the_limit(tmp_path: Path, busy: list) -> None:
    store = tmp_path / "again.sqlite"
    r = run_harness(*BASE, "--limit", "2", "--max-tokens", "4", "--on-contention", "remeasure", "--store", store)
    assert r.returncode == 0, r.stderr
    warm, g = gens(store)
    assert warm["warmup"] and warm["measurements"] is None  # no re-measuring a warm-up
    ms = g["measurements"]
    # attempts go on while contended, at most 1 + 3: every one but the last contended, the last clean or the 4th
    assert 2 <= len(ms) <= 4 and all(m["contended"] for m in ms[:-1]) and all(m["repeat"] == 0 for m in ms)
    assert (not ms[-1]["contended"]) or len(ms) == 4
    assert all(flagged_as_the_rule_says(m, 0.05) for m in ms)
    assert all(m["same_output"] for m in ms)  # greedy: the output is the first generation's, and it repeats
    clean = [m["decode_tps"] for m in ms if not m["contended"]]
    assert g["contended"] == (not clean)
    assert g["decode_tps"] == pytest.approx(statistics.median(clean or [m["decode_tps"] for m in ms]))


class Recorder:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, total: int, description: str, done: int = 0) -> None:
        pass

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def stop(self) -> None:
        pass


def plan(policy: object, device: object = None):  # type: ignore[no-untyped-def]
    from harness import engine
    from harness.backends import Sampling
    from harness.devices import load_profile
    from harness.prompts import load_set
    from harness.variants import parse_spec

    spec = engine.RunSpec(models=[parse_spec("smollm2-135m-instruct:Q4_1")], prompts=load_set("default")[:2],
                          seeds=[0], sampling=Sampling(max_tokens=4), policy=policy)  # type: ignore[arg-type]
    return engine.Plan(device=device or load_profile("laptop-cpu"), spec=spec)


def test_wait_watches_the_machine_before_measuring_again(tmp_path: Path, busy: list) -> None:
    from harness import engine

    progress = Recorder()
    p = plan(engine.MeasurePolicy(on_contention="wait", wait_timeout_s=1.0))
    with Store.open(tmp_path / "wait.sqlite") as st:
        engine.execute(p, st, progress)  # type: ignore[arg-type]
    warm, g = gens(tmp_path / "wait.sqlite")
    # The warm-up was contended, so before measuring the next sample it watched the machine (in 0.5 s looks)
    # for up to 1 s; still busy, it measured anyway, recorded the wait, flagged the sample and stopped there
    # (a wait that runs out ends the re-measuring: under a steady load it would never end).
    assert warm["contended"] and g["contended"] and g["measurements"] is None
    assert g["backend_timings"]["waited_for_calm_s"] >= 1.0
    assert any("still busy after" in m and "measuring anyway" in m for m in progress.messages)


def test_host_warnings_reach_the_progress_before_anything_runs(tmp_path: Path) -> None:
    from harness import engine
    from harness.devices import load_profile

    toml = tmp_path / "wide.toml"
    toml.write_text('kind = "cpu"\nthreads = 64\ncontention_threshold = 0.05\n')
    device = load_profile(str(toml))
    assert device.contention_threshold == 0.05
    progress = Recorder()
    p = plan(engine.MeasurePolicy(), device)
    engine.prepare(p, progress)  # type: ignore[arg-type]
    cores = len(os.sched_getaffinity(0))
    assert any(m.startswith(f"warning: the device profile runs 64 threads but this process may use {cores} core(s)")
               for m in progress.messages), progress.messages
    assert p.spec.policy.threshold(device) == 0.05


@pytest.mark.parametrize(("args", "says"), [
    (("--repeat", "0"), "--repeat must be a whole number from 1 to 100"),
    (("--contention-threshold", "1.5"), "--contention-threshold: a contention threshold is a share of the machine"),
    (("--contention-threshold", "0"), "a contention threshold is a share of the machine in (0, 1]"),
    (("--on-contention", "ignore"), "invalid choice: 'ignore'"),
])
def test_bad_measurement_settings_exit_2_and_write_nothing(tmp_path: Path, args: tuple, says: str) -> None:
    store = tmp_path / "s.sqlite"
    r = run_harness(*BASE, "--limit", "1", "--store", store, *args)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not store.exists()


def test_a_profile_threshold_outside_the_machine_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("contention_threshold = 2\n")
    r = run_harness(*BASE, "--limit", "1", "--device", toml, "--store", tmp_path / "s.sqlite")
    assert r.returncode == 2 and "contention_threshold" in r.stderr and "(0, 1]" in r.stderr
