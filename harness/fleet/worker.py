"""A board's Dask worker and the task it runs for a fleet run.

`serve_worker` starts a worker with one thread that advertises `device:<profile> = 1` and reports the
board's host facts (harness.devices.detect_host, as `harness devices detect` prints them) to the
scheduler. `run_job` is the task: it starts `harness.fleet.job` in a fresh process on the board, reads
the rows that job commits to the board's shard store, and puts them on the fleet run's Dask queue as
they appear. Rows the shard already holds from an earlier attempt (a coordinator that crashed) and the
main store lacks are sent too, so nothing measured is measured again. A task the coordinator no longer
wants (cancelled, or the coordinator is gone) interrupts its job.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.fleet import INFO_KEY, PLUGIN_NAME, FleetJobError, device_resource, require_distributed
from harness.fleet.wire import JobSpec, encode
from harness.version import __version__

POLL_S = 0.5  # how often a task checks whether it is still wanted
ACK_POLL_S = 0.002  # how often a task looks for the coordinator's acknowledgement (the job waits meanwhile)
ACK_TIMEOUT_S = 60.0  # after this long without one the job goes on (rows already sent are not lost)


@dataclass(frozen=True)
class BoardConfig:
    """What a worker knows about its board."""

    device: str  # the device profile name it advertises
    profile_source: str  # the profile's file on this board
    device_reason: str
    store: str  # the board's shard store
    name: str
    catalogs: list[str] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """What the scheduler shows of this board."""
        return {"device": self.device, "device_reason": self.device_reason, "host": self.host, "pid": os.getpid(),
                "store": self.store, "name": self.name}


def board_config(device: str, store: str | Path | None, name: str | None, catalogs: list[str]) -> BoardConfig:
    """Resolve this board's device profile (a name, a .toml or 'auto') and read its host facts."""
    import socket

    from harness.devices import detect_host, resolve_device

    profile, why = resolve_device(device)
    host = detect_host().as_dict()
    host["hostname"] = socket.gethostname()
    host["harness_version"] = __version__
    shard = Path(store).expanduser() if store else Path("results") / f"shard-{profile.name}.sqlite"
    return BoardConfig(profile.name, profile.source, why, str(shard.resolve()), name or f"{socket.gethostname()}-"
                       f"{profile.name}", [str(Path(c).expanduser().resolve()) for c in catalogs], host)


def _plugin_class() -> type:
    distributed = require_distributed()

    class BoardPlugin(distributed.WorkerPlugin):  # type: ignore[misc, name-defined]
        name = PLUGIN_NAME

        def __init__(self, config: BoardConfig) -> None:
            self.config = config

    return BoardPlugin


async def serve_worker(scheduler: str, config: BoardConfig, *, listen_host: str | None = None,
                       on_ready: Callable[[str], None] | None = None, connect_timeout_s: float = 60.0) -> None:
    """Run a worker for this board until it is closed (Ctrl-C, SIGTERM, or the scheduler unreachable for
    `connect_timeout_s`: TimeoutError when it never answered)."""
    import dask

    distributed = require_distributed()
    host = listen_host or _listen_host(scheduler)
    plugin = _plugin_class()(config)
    with dask.config.set(BOARD_DASK_CONFIG):
        worker = distributed.Worker(
            scheduler, nthreads=1, name=config.name, resources={device_resource(config.device): 1}, host=host,
            dashboard=False, dashboard_address="127.0.0.1:0", memory_limit=0, plugins=(plugin,),
            death_timeout=connect_timeout_s,
            startup_information={INFO_KEY: lambda _w: config.info()})
    async with worker:
        if on_ready is not None:
            on_ready(worker.address)
        await worker.finished()


# A board's worker stays out of the way of what its job measures: Dask's statistical profiler samples the stack
# of the running task (ours waits on the job for its whole length) every 10 ms, and on a small board those
# wake-ups slow llama.cpp's spin-waiting decode threads (benchmarks/fleet_overhead.py).
BOARD_DASK_CONFIG = {"distributed.worker.profile.enabled": False}


def _listen_host(scheduler: str) -> str:
    """The local address that reaches the scheduler (loopback for a loopback scheduler), never all interfaces."""
    from urllib.parse import urlparse

    host = urlparse(scheduler if "://" in scheduler else f"tcp://{scheduler}").hostname or "127.0.0.1"
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
        return "127.0.0.1"
    from distributed.utils import get_ip

    return str(get_ip(host))


# -- the task ---------------------------------------------------------------------------------------------
class ShardTail:
    """Reads the rows of a task's samples from the board's shard as the job commits them."""

    def __init__(self, path: str, attempt: str, main_has: set[str]) -> None:
        self.path = path
        self.attempt = attempt
        self.main_has = main_has  # keys the main store already holds: never sent
        self.planned: list[str] = []
        self._sent_generations: dict[str, float | None] = {}
        self._sent_runs: dict[str, tuple[str, float | None]] = {}
        self._sent_loads: set[str] = set()
        self.run_id: str | None = None

    def new_rows(self) -> dict[str, list[Any]]:
        from harness.merge import record_key
        from harness.store import Store

        if not Path(self.path).exists():
            return {}
        with Store.open(self.path, readonly=True) as shard:
            runs = {r.run_id: r for r in shard.runs()}
            if self.run_id is None:
                self.run_id = next((r.run_id for r in runs.values() if isinstance(r.metadata, dict)
                                    and (r.metadata.get("fleet") or {}).get("attempt") == self.attempt), None)
            todo = [k for k in self.planned if k not in self.main_has]
            gens = [g for g in shard.generations(sample_keys=todo)
                    if self._sent_generations.get(g.sample_key, -1.0) != g.created_at] if todo else []
            run_ids = {g.run_id for g in gens} | set(self._sent_runs) | ({self.run_id} if self.run_id else set())
            new_runs = [runs[r] for r in sorted(run_ids) if r in runs
                        and self._sent_runs.get(r) != (runs[r].status, runs[r].finished_at)]
            loads = [m for r in sorted(run_ids) for m in shard.model_loads(r)
                     if record_key("model_loads", m) not in self._sent_loads]
        for g in gens:
            self._sent_generations[g.sample_key] = g.created_at
        for r in new_runs:
            self._sent_runs[r.run_id] = (r.status, r.finished_at)
        self._sent_loads.update(record_key("model_loads", m) for m in loads)
        out: dict[str, list[Any]] = {"runs": new_runs, "model_loads": loads, "generations": gens}
        return {t: rows for t, rows in out.items() if rows}


def _still_wanted(worker: Any, key: Any) -> bool:
    ts = worker.state.tasks.get(key)
    return ts is not None and ts.state in ("executing", "long-running")


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen[Any], grace_s: float = 15.0, timeout_s: float = 30.0) -> None:
    """Stop a job: close its stdin (it stops at its next event, after the sample in hand, marking its run
    interrupted), then interrupt it (SIGINT, as Ctrl-C) if it lingers, then kill it."""
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    for step in ("wait", "interrupt", "kill"):
        if proc.poll() is not None:
            return
        if step == "interrupt":
            proc.send_signal(signal.SIGINT)
        elif step == "kill":
            proc.kill()
        try:
            proc.wait(timeout=grace_s if step == "wait" else timeout_s)
        except subprocess.TimeoutExpired:
            continue


class _Link:
    """A task's line to the coordinator: messages on the run's queue, answered through the task's variable
    ({"acked": {attempt: last message handled}, "done": keys the main store holds})."""

    def __init__(self, distributed: Any, spec: JobSpec, worker: Any, key: Any, base: dict[str, Any]) -> None:
        self.queue = distributed.Queue(spec.queue)
        self.variable = distributed.Variable(spec.done_variable)
        self.worker, self.key, self.base = worker, key, base
        self.seq = 0

    def state(self) -> dict[str, Any]:
        try:
            value = self.variable.get(timeout=5)
        except (TimeoutError, OSError):
            return {}
        return value if isinstance(value, dict) else {}

    def send(self, kind: str, wait: bool = True, **fields: Any) -> dict[str, Any]:
        """Put a message on the queue; with `wait`, return once the coordinator has handled it (committed its
        rows), or after ACK_TIMEOUT_S, or as soon as the task is no longer wanted."""
        self.seq += 1
        self.queue.put({**self.base, "type": kind, "seq": self.seq, **fields})
        if not wait:
            return {}
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while True:
            state = self.state()
            if (state.get("acked") or {}).get(self.base["attempt"], 0) >= self.seq:
                return state
            if time.monotonic() > deadline or not _still_wanted(self.worker, self.key):
                return state
            time.sleep(ACK_POLL_S)


class _NoLongerWanted(Exception):
    """The coordinator cancelled the task (or is gone): the job must not go on."""


def run_job(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: run one (device, variant) job on this board and stream its rows to the coordinator.

    Lock step with the job: after each of its events the job waits until this task has sent the new rows
    and the coordinator has committed them, so none of this runs while the engine measures."""
    distributed = require_distributed()
    spec = JobSpec(**spec_dict)
    worker = distributed.get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise FleetJobError(spec.device, f"worker {worker.name} was not started by `harness fleet worker`")
    board: BoardConfig = plugin.config
    if board.device != spec.device:
        raise FleetJobError(spec.device, f"worker {board.name} runs device '{board.device}'", usage=True)
    return BoardJob(distributed, spec, worker, board).run()


class BoardJob:
    """One attempt at a task on this board: the job's process, its events, and the rows sent on."""

    def __init__(self, distributed: Any, spec: JobSpec, worker: Any, board: BoardConfig) -> None:
        self.spec, self.worker, self.board = spec, worker, board
        self.key = worker.get_current_task()
        self.attempt = uuid.uuid4().hex[:12]
        self.link = _Link(distributed, spec, worker, self.key, {
            "task": str(self.key), "device": spec.device, "model": spec.model, "variant": spec.variant,
            "attempt": self.attempt})
        self.main_has = set(spec.done_keys) | set(self.link.state().get("done") or [])  # shared with the tail
        self.tail = ShardTail(board.store, self.attempt, self.main_has)
        self.proc: subprocess.Popen[str] | None = None
        self.error: dict[str, Any] | None = None  # the job's `error` event
        self.cancelled = False

    def run(self) -> dict[str, Any]:
        job = self._job()
        self.link.send("started", wait=False, worker=self.board.name, worker_address=self.worker.address,
                       host=self.board.host, worker_pid=os.getpid())
        Path(self.board.store).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
            stderr_tail = self._run_process(Path(tmp), job)
        if self.cancelled:
            return {"status": "cancelled", "attempt": self.attempt, "run_id": self.tail.run_id}
        assert self.proc is not None
        if self.proc.returncode != 0:
            message = ((self.error or {}).get("message")
                       or f"the job exited with code {self.proc.returncode}: {stderr_tail}")
            raise FleetJobError(self.spec.device, message, usage=bool((self.error or {}).get("usage")))
        return {"status": "finished", "attempt": self.attempt, "run_id": self.tail.run_id, "ended": time.time()}

    def _job(self) -> dict[str, Any]:
        """What the job's process is given (harness.fleet.job): the task, and this board's settings."""
        fleet = {**self.spec.fleet, "attempt": self.attempt, "worker": self.board.name,
                 "worker_address": self.worker.address, "worker_pid": os.getpid(),
                 "device_reason": self.board.device_reason}
        return {**asdict(self.spec), "done_keys": sorted(self.main_has), "fleet": fleet,
                "profile": self.board.profile_source, "store": self.board.store, "catalogs": self.board.catalogs}

    def _run_process(self, tmp: Path, job: dict[str, Any]) -> str:
        """Run the job to its end (or until the task is no longer wanted); the tail of its stderr."""
        job_file = tmp / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        with open(tmp / "stderr.log", "w+b") as err:
            self.proc = proc = subprocess.Popen(
                [sys.executable, "-m", "harness.fleet.job", str(job_file)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8")
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
            try:
                self._follow(lines)
            except _NoLongerWanted:
                self.cancelled = True
                _stop(proc)
            except BaseException:
                _stop(proc)  # the queue is gone (scheduler lost) or the worker is closing: stop the job
                raise
            finally:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    _stop(proc)
                if proc.stdin is not None and not proc.stdin.closed:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
            self.send_rows()
            err.seek(0)
            return err.read()[-2000:].decode("utf-8", "replace").strip()

    def _follow(self, lines: queue.Queue[str | None]) -> None:
        """Handle the job's events until its stdout ends (or the task is no longer wanted)."""
        assert self.proc is not None
        while True:
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                line = ""
            if not _still_wanted(self.worker, self.key):
                self.cancelled = True
                _stop(self.proc)
                return
            if line is None:
                return
            if line:
                self.on_event(json.loads(line))

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "plan":
            self.tail.planned = list(event["sample_keys"])
            state = self.link.send("plan", keys=self.tail.planned)
            self.main_has |= set(state.get("done") or [])
            self.send_rows()  # what the shard holds from an earlier attempt and the main store lacks
            self.reply(done_keys=sorted(self.main_has & set(self.tail.planned)))
        elif kind == "message":
            self.link.send("message", text=event.get("text", ""))
            self.reply()
        elif kind in ("start", "advance", "stop"):
            self.send_rows()
            self.reply()
        elif kind == "done":
            self.send_rows()
        elif kind == "error":
            self.error = event

    def send_rows(self) -> None:
        rows = self.tail.new_rows()
        if rows:
            self.link.send("rows", rows={t: encode(rs) for t, rs in rows.items()})

    def reply(self, **fields: Any) -> None:
        """Let the job go on (it waits after each event, see harness.fleet.job), if the task is still wanted."""
        if not _still_wanted(self.worker, self.key):
            raise _NoLongerWanted()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(fields) + "\n")
        self.proc.stdin.flush()
