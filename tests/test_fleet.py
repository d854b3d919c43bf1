"""Fleet runs on a real Dask scheduler and real worker processes on 127.0.0.1, with real llama.cpp inference.

Two workers stand for two boards: one advertises device:laptop-cpu, the other device:server-cpu (the test
catalog's profiles, on one thread each, since both share this machine). Every row must come from the
worker of its device (its pid in the row's run, the host facts it reported to the scheduler), each sample
exactly once; a worker killed by its PID mid-run leaves its device missing, and a re-run after a new
worker joins completes the plan without a duplicate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO
from storehelp import table_rows

from harness.fleet.coordinator import FleetClient
from harness.store import Store

pytest.importorskip("distributed", reason="the fleet extra (distributed) is not installed")

CATALOG = REPO / "tests" / "fixtures" / "fleet-catalog"
MODEL = "smollm2-135m-instruct:Q4_1"
MAX_TOKENS = 8
HOST_FIELDS = ("cpu_model", "physical_cores", "logical_cores", "ram_bytes", "machine", "system", "gpus",
               "jetson_release", "board_model")


def _free_port() -> int:
    from harness.judging.local_server import free_port

    return free_port()


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.log.read_text(errors="replace")
            if text in out:
                return out
            if self.process.poll() is not None:
                raise AssertionError(f"{self.process.args} exited {self.process.returncode}: {out[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.process.args}: no {text!r} within {timeout_s} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """A scheduler and workers on 127.0.0.1, each its own `python -m harness` process, stopped by PID."""

    root: Path
    port: int = field(default_factory=_free_port)
    procs: list[Proc] = field(default_factory=list)
    workers: dict[str, Proc] = field(default_factory=dict)  # by worker name

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> Proc:
        log = self.root / f"{name}.log"
        with open(log, "wb") as fh:
            process = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=fh, stderr=subprocess.STDOUT,
                                       cwd=REPO)
        proc = Proc(process, log)
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> None:
        self._start("scheduler", "fleet", "scheduler", "--port", str(self.port)).wait_for("fleet scheduler at")

    def start_worker(self, device: str, name: str, wait: bool = True) -> Proc:
        proc = self._start(name, "--catalog", str(CATALOG), "fleet", "worker", "--scheduler", self.address,
                           "--device", device, "--name", name, "--store", str(self.root / f"{name}.sqlite"))
        self.workers[name] = proc
        if wait:
            proc.wait_for(f"fleet worker {name} at")
            self.wait_until(lambda devices: any(w["name"] == name for ws in devices.values() for w in ws))
        return proc

    def wait_until(self, condition, timeout_s: float = 30.0) -> dict:  # type: ignore[no-untyped-def]
        with FleetClient(self.address) as fleet:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                devices = fleet.devices()
                if condition(devices):
                    return devices
                time.sleep(0.2)
        raise AssertionError(f"the fleet never reached the expected state: {devices}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for proc in self.procs:
            assert proc.process.poll() is not None, f"{proc.process.args} (pid {proc.pid}) still running"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start_scheduler()
        yield c
    finally:
        c.stop()


class Recorder:
    """A Progress that keeps every device line, and runs a hook on each."""

    def __init__(self, hook=None) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[tuple[str, int, int, str]] = []
        self.messages: list[str] = []
        self.hook = hook

    def start(self, total: int, description: str, done: int = 0) -> None:
        self.total = total

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def stop(self) -> None:
        pass

    def device(self, name: str, done: int, total: int, state: str, decode_tps: float | None = None) -> None:
        self.lines.append((name, done, total, state))
        if self.hook is not None:
            self.hook(name, done, state)


def _prompts(tmp_path: Path, ids: list[str]) -> Path:
    from harness.prompts import load_set, write_jsonl

    by_id = {p.id: p for p in load_set("default")}
    path = tmp_path / "prompts.jsonl"
    write_jsonl([by_id[i] for i in ids], path)
    return path


def _planned_keys(devices: list[str], prompts: Path) -> dict[str, str]:
    """The sample keys of the plan, computed here by the engine's own planning (nothing generated): key -> device."""
    from harness import catalog, engine
    from harness.backends import Sampling
    from harness.devices import load_profile
    from harness.prompts import load_set
    from harness.variants import parse_spec

    out = {}
    with catalog.user_dirs([CATALOG]):
        for device in devices:
            spec = engine.RunSpec(models=[parse_spec(MODEL)], prompts=load_set(str(prompts)), seeds=[0],
                                  sampling=Sampling(max_tokens=MAX_TOKENS))
            plan = engine.Plan(device=load_profile(device), spec=spec)
            engine.prepare(plan)
            out.update({s.key: device for s in engine.samples(plan)})
    return out


def _fleet_run(cluster: Cluster, store: Path, prompts: Path, progress: Recorder, wait_s: float = 120.0):  # type: ignore[no-untyped-def]
    import harness

    return harness.run(MODEL, device=["laptop-cpu", "server-cpu"], fleet=cluster.address, prompts=str(prompts),
                       max_tokens=MAX_TOKENS, store=store, judge=False, report=False, progress=progress,
                       fleet_wait_s=wait_s)


def _rows(store: Path, table: str) -> list[dict]:
    with Store.open(store, readonly=True) as st:
        return table_rows(st, table)


def test_a_fleet_run_measures_each_device_on_its_worker(cluster: Cluster, tmp_path: Path) -> None:
    laptop = cluster.start_worker("laptop-cpu", "w-laptop")
    server = cluster.start_worker("server-cpu", "w-server")
    reported = cluster.wait_until(lambda d: {"laptop-cpu", "server-cpu"} <= set(d))
    prompts = _prompts(tmp_path, ["disc-001", "ben-001", "off-001"])
    store = tmp_path / "main.sqlite"
    progress = Recorder()
    result = _fleet_run(cluster, store, prompts, progress)
    assert result.status == "finished" and result.fleet is not None and result.fleet.status == "finished"
    assert (result.planned, result.written, result.skipped) == (6, 6, 0)
    expected = _planned_keys(["laptop-cpu", "server-cpu"], prompts)
    gens = _rows(store, "generations")
    assert len(gens) == 6 and {g["sample_key"]: g["device"] for g in gens} == expected
    assert all(g["error"] is None and 0 < g["n_output_tokens"] <= MAX_TOKENS and g["decode_tps"] > 0 for g in gens)
    assert sorted(result.sample_keys) == sorted(expected)

    runs = {r["run_id"]: r for r in _rows(store, "runs")}
    pids = {"laptop-cpu": laptop.pid, "server-cpu": server.pid}
    names = {"laptop-cpu": "w-laptop", "server-cpu": "w-server"}
    for g in gens:
        meta = runs[g["run_id"]]["metadata"]
        fleet = meta["fleet"]
        assert (fleet["worker"], fleet["worker_pid"]) == (names[g["device"]], pids[g["device"]])
        # The engine ran in its own process on the board, not inside the Dask worker.
        assert meta["process"]["pid"] != pids[g["device"]]
        assert meta["device_profile"]["name"] == g["device"] and meta["device_profile"]["threads"] == 1
        facts = reported[g["device"]][0]["host"]
        assert {k: meta["host"][k] for k in HOST_FIELDS} == {k: facts[k] for k in HOST_FIELDS}
        assert fleet["coordinator_run"] == result.run_id
    coordinator = runs[result.run_id]
    assert coordinator["status"] == "finished" and coordinator["planned"] == 6
    assert coordinator["metadata"]["fleet"]["scheduler"] == cluster.address
    loads = _rows(store, "model_loads")
    assert sorted(m["device"] for m in loads) == ["laptop-cpu", "server-cpu"]
    # Each device's line ends at 3/3, done; each board's shard holds its own rows.
    for device in ("laptop-cpu", "server-cpu"):
        assert [line for line in progress.lines if line[0] == device][-1] == (device, 3, 3, "done")
    for name, device in (("w-laptop", "laptop-cpu"), ("w-server", "server-cpu")):
        shard = _rows(cluster.root / f"{name}.sqlite", "generations")
        assert {g["sample_key"] for g in shard} == {k for k, d in expected.items() if d == device}

    again = _fleet_run(cluster, store, prompts, Recorder())
    assert (again.status, again.written, again.skipped) == ("finished", 0, 6)
    assert _rows(store, "generations") == gens


def test_a_board_killed_mid_run_is_missing_then_a_rerun_completes_it(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker("laptop-cpu", "w-laptop")
    doomed = cluster.start_worker("server-cpu", "w-server-1")
    prompts = _prompts(tmp_path, ["disc-001", "ben-001", "off-001", "priv-001"])
    store = tmp_path / "main.sqlite"
    killed: list[int] = []

    def kill_on_first_server_row(device: str, done: int, state: str) -> None:
        if device == "server-cpu" and done >= 1 and not killed:
            doomed.kill()
            killed.append(doomed.pid)

    first = _fleet_run(cluster, store, prompts, Recorder(kill_on_first_server_row), wait_s=3.0)
    assert killed and first.status == "interrupted" and first.fleet is not None
    outcome = {o.device: o for o in first.fleet.devices}
    assert outcome["laptop-cpu"].state == "done" and outcome["laptop-cpu"].done == 4
    assert outcome["server-cpu"].state == "missing" and 1 <= outcome["server-cpu"].done < 4
    gens = _rows(store, "generations")
    by_device = {d: [g for g in gens if g["device"] == d] for d in ("laptop-cpu", "server-cpu")}
    assert len(by_device["laptop-cpu"]) == 4 and 1 <= len(by_device["server-cpu"]) < 4
    runs = {r["run_id"]: r for r in _rows(store, "runs")}
    dead_run = runs[by_device["server-cpu"][0]["run_id"]]
    assert dead_run["status"] == "interrupted" and dead_run["metadata"]["fleet"]["worker_pid"] == doomed.pid
    assert runs[first.run_id]["status"] == "interrupted"
    # The job of the killed worker stopped with it (its lifeline closed).
    job_pid = dead_run["metadata"]["process"]["pid"]
    deadline = time.monotonic() + 20
    while _alive(job_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(job_pid), f"the job {job_pid} of the killed worker still runs"

    replacement = cluster.start_worker("server-cpu", "w-server-2")
    second = _fleet_run(cluster, store, prompts, Recorder())
    assert second.status == "finished"
    expected = _planned_keys(["laptop-cpu", "server-cpu"], prompts)
    final = _rows(store, "generations")
    assert len(final) == len(expected) == 8 and {g["sample_key"]: g["device"] for g in final} == expected
    assert len({(g["device"], g["prompt_id"]) for g in final}) == 8
    assert second.written == 8 - len(gens) and second.skipped == len(gens)
    # The rows the killed board measured keep its facts; the rest are the replacement's.
    runs = {r["run_id"]: r for r in _rows(store, "runs")}
    measured_by = {g["sample_key"]: runs[g["run_id"]]["metadata"]["fleet"]["worker_pid"] for g in final
                   if g["device"] == "server-cpu"}
    before = {g["sample_key"] for g in by_device["server-cpu"]}
    assert all(measured_by[k] == doomed.pid for k in before)
    assert all(pid == replacement.pid for k, pid in measured_by.items() if k not in before)


def test_a_task_moves_to_another_board_with_the_same_device(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker("laptop-cpu", "w-laptop")
    boards = {name: cluster.start_worker("server-cpu", name) for name in ("w-server-1", "w-server-2")}
    prompts = _prompts(tmp_path, ["disc-001", "ben-001", "off-001", "priv-001"])
    store = tmp_path / "main.sqlite"
    killed: list[str] = []

    def kill_the_busy_board(device: str, done: int, state: str) -> None:
        if device != "server-cpu" or done < 1 or killed:
            return
        runs = {r["run_id"]: r for r in _rows(store, "runs")}
        busy = next(runs[g["run_id"]]["metadata"]["fleet"]["worker"] for g in _rows(store, "generations")
                    if g["device"] == "server-cpu")
        boards[busy].kill()
        killed.append(busy)

    result = _fleet_run(cluster, store, prompts, Recorder(kill_the_busy_board), wait_s=60.0)
    assert killed and result.status == "finished", result.fleet
    expected = _planned_keys(["laptop-cpu", "server-cpu"], prompts)
    final = _rows(store, "generations")
    assert {g["sample_key"]: g["device"] for g in final} == expected and len(final) == 8
    runs = {r["run_id"]: r for r in _rows(store, "runs")}
    server_rows = [g for g in final if g["device"] == "server-cpu"]
    workers = [runs[g["run_id"]]["metadata"]["fleet"]["worker"] for g in server_rows]
    (other,) = set(boards) - set(killed)
    # The killed board's rows first, then the other board's: nothing measured twice (the moved task skipped
    # what was gathered), nothing lost.
    assert workers[0] == killed[0] and set(workers) == {killed[0], other}
    assert workers == sorted(workers, key=lambda w: w != killed[0])
    assert result.fleet is not None and not result.fleet.duplicates
    outcome = {o.device: o for o in result.fleet.devices}
    assert outcome["server-cpu"].state == "done" and outcome["server-cpu"].done == 4
    assert [w["name"] for w in outcome["server-cpu"].workers] == [killed[0], other]
    assert runs[server_rows[0]["run_id"]]["status"] == "interrupted"
    assert runs[server_rows[-1]["run_id"]]["status"] == "finished"


def test_a_coordinator_killed_mid_run_resumes_like_a_local_run(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker("laptop-cpu", "w-laptop")
    cluster.start_worker("server-cpu", "w-server")
    prompts = _prompts(tmp_path, ["disc-001", "ben-001", "off-001", "priv-001"])
    store = tmp_path / "main.sqlite"
    with open(tmp_path / "coordinator.log", "wb") as log:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "harness", "--catalog", str(CATALOG), "run", "--fleet", cluster.address,
             "--device", "laptop-cpu", "--device", "server-cpu", "--model", MODEL, "--prompts", str(prompts),
             "--max-tokens", str(MAX_TOKENS), "--no-judge", "--no-report", "--quiet", "--store", str(store)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not store.exists() or not _count(store)):
        time.sleep(0.05)
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.wait(timeout=10)
    gathered = _count(store)
    assert 1 <= gathered < 8
    # The boards notice (their tasks are cancelled) and stop their jobs, which mark their runs interrupted.
    shards = [cluster.root / f"{name}.sqlite" for name in ("w-laptop", "w-server")]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(r["status"] == "running" for sh in shards for r in _shard_runs(sh)):
        time.sleep(0.2)
    assert all(r["status"] in ("interrupted", "finished") for sh in shards for r in _shard_runs(sh))

    again = _fleet_run(cluster, store, prompts, Recorder())
    assert again.status == "finished"
    expected = _planned_keys(["laptop-cpu", "server-cpu"], prompts)
    final = _rows(store, "generations")
    assert {g["sample_key"]: g["device"] for g in final} == expected and len(final) == 8
    assert again.skipped == gathered and again.written == 8 - gathered
    # Each sample was measured once: what a board measured but never delivered came from its shard.
    assert sum(len(_settled_rows(sh)) for sh in shards) == 8


def _settled_rows(shard: Path, wait_s: float = 30.0) -> list[dict]:
    """A board's generations once its last job has let go of the shard. A job's process may still be closing the
    shard (its last checkpoint) just after the coordinator has what it needs; a read-only open in that instant
    can fail, so the test waits for the close, a bounded while, instead of racing it."""
    from harness.errors import UsageError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _rows(shard, "generations")
        except UsageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _shard_runs(shard: Path) -> list[dict]:
    """A board's runs; none while its job has not created the shard yet (or is creating it)."""
    from harness.errors import UsageError

    try:
        return _rows(shard, "runs") if shard.exists() else []
    except UsageError:
        return []


def _count(store: Path) -> int:
    try:
        return len(_rows(store, "generations"))
    except Exception:  # noqa: BLE001 - the store is being created
        return 0


def test_fleet_input_errors_name_the_fix(cli, cluster: Cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "s.sqlite"
    r = cli("run", "--fleet", cluster.address, "--store", store, "--no-judge", "--no-report", "--quiet")
    assert r.code == 2 and "no worker is connected" in r.err and "harness fleet worker" in r.err
    r = cli("run", "--fleet", cluster.address, "--device", "toaster-9000", "--store", store, "--quiet")
    assert r.code == 2 and "no worker offers device 'toaster-9000'" in r.err
    r = cli("run", "--fleet", f"tcp://127.0.0.1:{_free_port()}", "--store", store, "--quiet")
    assert r.code == 2 and "cannot reach the fleet scheduler" in r.err
    r = cli("run", "--fleet-wait", "5", "--store", store, "--quiet")
    assert r.code == 2 and "--fleet-wait is for fleet runs" in r.err
    assert not store.exists()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_job_waits_for_its_worker_after_each_event() -> None:
    """The lock step that keeps the fleet's work out of every measurement: `advance` returns only once the
    worker has answered; a closed pipe (the worker gone) stops the job as Ctrl-C would."""
    import io
    import threading

    from harness.fleet.job import LockStepProgress, WorkerGone

    events = io.StringIO()
    read_fd, write_fd = os.pipe()
    progress = LockStepProgress(events, read_fd)
    returned = threading.Event()
    worker = threading.Thread(target=lambda: (progress.advance(1, "Q4_1 80 tok/s"), returned.set()))
    worker.start()
    time.sleep(0.3)
    assert not returned.is_set() and '"event": "advance"' in events.getvalue()
    os.write(write_fd, b"{}\n")
    worker.join(5)
    assert returned.is_set()
    assert progress.emit("done", status="finished") == {}  # final events wait for nothing
    os.close(write_fd)
    with pytest.raises(WorkerGone):
        progress.advance()
    progress.stop()  # in the engine's cleanup: never raises
    os.close(read_fd)


def test_the_progress_display_has_a_line_per_device() -> None:
    import io

    from rich.console import Console

    from harness.cli.progress import RichProgress
    from harness.progress import NoProgress, report_device

    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=160, force_terminal=False))
    progress.start(6, "generating on the fleet")
    report_device(progress, "laptop-cpu", 0, 3, "waiting")
    report_device(progress, "laptop-cpu", 3, 3, "done", 81.25)
    report_device(progress, "server-cpu", 1, 3, "missing")
    progress.stop()
    text = out.getvalue()
    assert "laptop-cpu" in text and "3/3" in text and "81.2 tok/s, done" in text
    assert "server-cpu" in text and "1/3" in text and "missing" in text
    report_device(NoProgress(), "laptop-cpu", 1, 3, "running")  # a Progress without device lines: nothing happens
