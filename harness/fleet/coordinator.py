"""The fleet run: split a plan by device, one Dask task per (device, model variant), gather rows into the main store.

Each task is pinned to its device by the resource `device:<name> = 1`, so a board runs one benchmark at
a time and loads each variant once. Tasks stream their rows over a Dask queue; each batch is merged into
the main store at once (harness.merge, the code `harness merge` uses), under the sample keys the board
computed, so a coordinator that crashes resumes like a local run: the same command skips what the main
store holds. After each message the task's Dask variable says which message was handled and which keys
the main store holds: the board's job waits for the first before it measures on (nothing of the fleet
runs during a measurement, harness.fleet.job), and a task Dask reschedules on another board with the same
device resource (its board dropped off) skips what was already gathered. A device with no worker for `wait_s` seconds is reported missing, its tasks
cancelled, and the run finishes the rest; re-running after the board is back completes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, UsageError
from harness.fleet import (
    DEFAULT_WAIT_S,
    DEVICE_RESOURCE_PREFIX,
    INFO_KEY,
    FleetJobError,
    device_resource,
    require_distributed,
)
from harness.fleet.wire import JobSpec, decode_tables
from harness.fleet.worker import run_job
from harness.progress import Progress, report_device
from harness.records import Generation, Run
from harness.store import Store
from harness.variants import ModelManifest

if TYPE_CHECKING:
    from harness.engine import RunSpec

POLL_S = 0.25
PRESENCE_EVERY_S = 1.0


@dataclass
class DeviceOutcome:
    device: str
    state: str  # waiting | running | done | missing | failed | interrupted
    planned: int
    done: int = 0  # of its planned samples, those the main store holds now (errors included)
    written: int = 0  # rows this run committed
    skipped: int = 0  # already in the main store
    decode_tps: float | None = None  # of the last row
    workers: list[dict[str, Any]] = field(default_factory=list)  # name, address, pid and host facts
    error: str | None = None


@dataclass(frozen=True)
class FleetResult:
    run_id: str
    scheduler: str
    status: str  # finished | interrupted (a device missing) | failed (a device's job failed)
    planned: int
    skipped: int
    written: int
    sample_keys: list[str]  # every planned sample a board reported (a missing device's are unknown)
    devices: list[DeviceOutcome]
    duplicates: list[str]  # rows measured twice (a task rescheduled mid-sample): the first one is kept


@dataclass
class _Task:
    spec: JobSpec
    future: Any
    variable: Any
    keys: list[str] = field(default_factory=list)  # its planned sample keys, as the board computed them
    already: set[str] = field(default_factory=set)  # of those, the ones the main store had when it was submitted
    committed: set[str] = field(default_factory=set)  # keys this run merged
    attempts: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # per attempt, the last message handled
    run_of_attempt: dict[str, str] = field(default_factory=dict)
    state: str = "waiting"  # waiting | running | done | missing | failed
    error: str | None = None


class FleetClient:
    """A connection to the fleet's scheduler."""

    def __init__(self, address: str, connect_timeout_s: float = 10.0) -> None:
        distributed = require_distributed()
        self.address = address
        try:
            self.client = distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach the fleet scheduler at {address} ({exc}): start it with `harness fleet "
                             "scheduler` and pass its address, e.g. --fleet tcp://127.0.0.1:8786") from exc

    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's workers by address (name, resources, the board's host facts under INFO_KEY)."""
        return dict(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def devices(self) -> dict[str, list[dict[str, Any]]]:
        """Every device some worker offers, with those workers."""
        out: dict[str, list[dict[str, Any]]] = {}
        for address, w in self.workers().items():
            for resource in w.get("resources") or {}:
                if resource.startswith(DEVICE_RESOURCE_PREFIX):
                    # As plain JSON values: Dask's messages turn lists into tuples.
                    out.setdefault(resource[len(DEVICE_RESOURCE_PREFIX):], []).append(
                        _plain({"address": address, "name": w.get("name"), **(w.get(INFO_KEY) or {})}))
        return out

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def choose_devices(fleet: FleetClient, requested: Sequence[str] | None) -> list[str]:
    """The devices to run on: those named (each offered now, or a known profile whose board may still join),
    or every device the fleet offers now."""
    from harness.devices import list_profiles

    offered = fleet.devices()
    if not requested:
        if not offered:
            raise UsageError(f"no worker is connected to the fleet at {fleet.address}: start `harness fleet worker "
                             f"--scheduler {fleet.address} --device NAME` on each board, or name the devices "
                             "with --device")
        return sorted(offered)
    known = {p.name for p in list_profiles()}
    out = []
    for name in dict.fromkeys(requested):
        if name == "auto" or name.endswith(".toml"):
            raise UsageError(f"--device {name}: a fleet run names device profiles its workers offer "
                             f"({', '.join(sorted(offered)) or 'none connected yet'})")
        if name not in offered and name not in known:
            raise UsageError(f"no worker offers device '{name}' and no device profile has that name: check the name "
                             f"(offered now: {', '.join(sorted(offered)) or 'none'})")
        out.append(name)
    return out


def run_fleet(store: Store, fleet: FleetClient, *, devices: Sequence[str], spec: RunSpec, progress: Progress,
              command: str = "", wait_s: float = DEFAULT_WAIT_S, finish: bool = True) -> FleetResult:
    """Run the plan on the fleet into `store`; see the module docstring. Like harness.engine.execute, the
    run's row stays `running` with `finish=False` when it finished (the caller judges and reports next)."""
    return FleetRun(store, fleet, devices, spec, progress, command, wait_s).run(finish)


class FleetRun:
    """One fleet run: a task per (device, model variant) on the boards, and the main store their rows go into.

    `run()` writes the run's row, submits the tasks, follows them until every one has ended, and settles each
    device's outcome. Each message a task sends is handled by its own method (`on_started`, `on_plan`,
    `on_message`, `on_rows`) and then acknowledged through the task's variable.
    """

    def __init__(self, store: Store, fleet: FleetClient, devices: Sequence[str], spec: RunSpec,
                 progress: Progress, command: str = "", wait_s: float = DEFAULT_WAIT_S) -> None:
        from harness import engine

        self.distributed = require_distributed()
        self.store, self.fleet, self.devices, self.spec = store, fleet, list(devices), spec
        self.progress, self.command, self.wait_s = progress, command, wait_s
        self.run_id = engine.new_run_id()
        self.variants = [(m, v) for m, vs in spec.models for v in vs]
        planned = len(spec.cells()) * len(self.variants)
        self.outcomes = {d: DeviceOutcome(d, "waiting", planned) for d in self.devices}
        self.tasks: dict[str, _Task] = {}
        self.duplicates: list[str] = []  # rows measured twice (a task rescheduled mid-sample)
        self.missing_since: dict[str, float] = {}
        self.cancelled_missing: set[str] = set()  # devices given up on: no worker offered them for wait_s
        self.queue: Any = None
        self.status = "failed"

    @property
    def total(self) -> int:
        return sum(o.planned for o in self.outcomes.values())

    def run(self, finish: bool = True) -> FleetResult:
        self._start()
        self.progress.start(self.total, "generating on the fleet")
        for o in self.outcomes.values():
            report_device(self.progress, o.device, 0, o.planned, o.state)
        try:
            self._follow()
            self._settle()
        except KeyboardInterrupt:
            self.status = "interrupted"
            for t in self.tasks.values():
                t.future.cancel()
            raise
        except OSError as exc:  # the scheduler went away
            raise HarnessError(f"lost the fleet scheduler at {self.fleet.address} ({exc}): the rows gathered so far "
                               "are stored; re-run the same command when it is back") from exc
        finally:
            self._close(finish)
        outcomes = list(self.outcomes.values())
        return FleetResult(self.run_id, self.fleet.address, self.status, self.total, sum(o.skipped for o in outcomes),
                           sum(o.written for o in outcomes), [k for t in self.tasks.values() for k in t.keys],
                           outcomes, self.duplicates)

    # -- starting ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        """The run's row in the main store, the queue the rows come back on, and every task submitted."""
        from harness import engine

        offered = self.fleet.devices()
        fleet = {"scheduler": self.fleet.address, "devices": list(self.devices),
                 "workers": {d: offered.get(d, []) for d in self.devices}}
        metadata = engine.run_metadata(self.spec, [{"model": m.name, "variant": v} for m, v in self.variants],
                                       {"distributed": self.distributed.__version__}, {"fleet": fleet})
        self.store.put(Run(run_id=self.run_id, started_at=time.time(), status="running", command=self.command,
                           device=",".join(self.devices), planned=self.total, metadata=metadata))
        self.queue = self.distributed.Queue(f"harness-{self.run_id}", client=self.fleet.client)
        for device in self.devices:
            for manifest, variant in self.variants:
                self._submit(device, manifest, variant)

    def _submit(self, device: str, manifest: ModelManifest, variant: str) -> None:
        client = self.fleet.client
        key = f"harness-{self.run_id}-{device}-{manifest.name}-{variant}"
        done = sorted(self.store.done_sample_keys(device=device, model=manifest.name, variant=variant))
        variable = self.distributed.Variable(f"{key}-done", client=client)
        variable.set({"acked": {}, "done": done})
        spec = JobSpec(device=device, plan=self.spec.for_variant(manifest, variant).to_wire(), command=self.command,
                       queue=self.queue.name, done_variable=variable.name, done_keys=done,
                       fleet={"scheduler": self.fleet.address, "coordinator_run": self.run_id, "task": key})
        future = client.submit(run_job, spec.as_dict(), key=key, resources={device_resource(device): 1},
                               pure=False, retries=0)
        self.tasks[key] = _Task(spec, future, variable)

    # -- following ------------------------------------------------------------------------------------
    def _follow(self) -> None:
        """Handle messages and watch the devices' presence until every task has ended, then read what is left."""
        last_presence = 0.0
        while any(not t.future.done() for t in self.tasks.values()):
            self._drain(POLL_S)
            now = time.monotonic()
            if now - last_presence >= PRESENCE_EVERY_S:
                last_presence = now
                self._watch_presence(now)
        while self.queue.qsize() > 0:
            self._drain(POLL_S)

    def _drain(self, wait: float) -> None:
        try:
            first = self.queue.get(timeout=wait)
        except TimeoutError:
            return
        self.handle(first)
        for msg in self.queue.get(batch=True):
            self.handle(msg)

    def _watch_presence(self, now: float) -> None:
        """A device no worker has offered for `wait_s`: reported missing, its tasks cancelled."""
        present = self.fleet.devices()
        for device in self.devices:
            if all(t.future.done() for t in self._tasks_of(device)):
                continue
            if device in present:
                self.missing_since.pop(device, None)
                continue
            since = self.missing_since.setdefault(device, now)
            if self.outcomes[device].state != "missing" and now - since >= self.wait_s:
                self.outcomes[device].state = "missing"
                self.cancelled_missing.add(device)
                for t in self._tasks_of(device):
                    if not t.future.done():
                        t.future.cancel()
                self.progress.message(f"{device}: no worker offers it for {self.wait_s:.0f} s: reported missing")
                self._show(device)

    def handle(self, msg: dict[str, Any]) -> None:
        """One message from a task, then its acknowledgement (the board's job waits for it before it measures on:
        harness.fleet.job's lock step)."""
        task = self.tasks.get(msg.get("task", ""))
        if task is None:
            return
        handlers = {"started": self.on_started, "plan": self.on_plan, "message": self.on_message,
                    "rows": self.on_rows}
        try:
            handler = handlers.get(str(msg.get("type")))
            if handler is not None:
                handler(task, msg)
        finally:
            task.acked[str(msg.get("attempt"))] = int(msg.get("seq", 0))
            task.variable.set({"acked": dict(task.acked), "done": sorted(set(task.spec.done_keys) | task.committed)})

    def on_started(self, task: _Task, msg: dict[str, Any]) -> None:
        """An attempt began on a worker (a later one: the task was rescheduled, the earlier attempt is over)."""
        device = task.spec.device
        o = self.outcomes[device]
        if task.attempts:
            self._interrupt_attempt(task, task.attempts[-1])
            self.progress.message(f"{device}: {task.spec.model}:{task.spec.variant} rescheduled on "
                                  f"{msg.get('worker')}")
        task.attempts.append(msg["attempt"])
        task.state = "running"
        if o.state in ("waiting", "missing"):
            o.state = "running"
        worker = {"name": msg.get("worker"), "address": msg.get("worker_address"), "pid": msg.get("worker_pid"),
                  "host": _plain(msg.get("host"))}
        if worker not in o.workers:
            o.workers.append(worker)
        self._show(device)

    def on_plan(self, task: _Task, msg: dict[str, Any]) -> None:
        """The task's sample keys, as the board computed them."""
        device = task.spec.device
        task.keys = list(msg.get("keys") or [])
        before = len(task.already | task.committed)
        task.already = set(task.keys) & set(task.spec.done_keys)
        self.outcomes[device].skipped = sum(len(t.already) for t in self._tasks_of(device))
        self.progress.advance(len(task.already | task.committed) - before)
        self._show(device)

    def on_message(self, task: _Task, msg: dict[str, Any]) -> None:
        self.progress.message(f"{task.spec.device}: {msg.get('text', '')}")

    def on_rows(self, task: _Task, msg: dict[str, Any]) -> None:
        """Rows the board committed: merged into the main store at once (harness.merge)."""
        from harness.merge import apply, plan_merge

        device = task.spec.device
        o = self.outcomes[device]
        records = decode_tables(msg.get("rows") or {})
        for r in records.get("runs", []):
            attempt = ((r.metadata or {}).get("fleet") or {}).get("attempt")
            if attempt:
                task.run_of_attempt[attempt] = r.run_id
        plan = plan_merge(self.store, [(f"device {device}", records)], on_conflict="keep")
        apply(self.store, plan)
        self.duplicates.extend(plan.conflict_notes)
        written = {g.sample_key for g in plan.inserts + plan.replacements if isinstance(g, Generation)}
        new = written - task.committed - task.already
        task.committed |= written
        o.written += len(new)
        gens = records.get("generations", [])
        if gens and gens[-1].decode_tps:
            o.decode_tps = gens[-1].decode_tps
        if new:
            label = f"{device} {task.spec.model}:{task.spec.variant}"
            self.progress.advance(len(new), f"{label} {o.decode_tps:.0f} tok/s" if o.decode_tps else label)
        self._show(device)

    # -- ending -----------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Every task's outcome, each device's from its tasks', and the run's status from the devices'."""
        for t in self.tasks.values():
            _settle(t, t.spec.device in self.cancelled_missing)
            if t.state != "done" and t.attempts:
                self._interrupt_attempt(t, t.attempts[-1])
        for device, o in self.outcomes.items():
            states = [t.state for t in self._tasks_of(device)]
            errors = [t.error for t in self._tasks_of(device) if t.error]
            o.state = "failed" if "failed" in states else "missing" if "missing" in states else "done"
            o.error = errors[0] if errors else None
            self._show(device)
        final = {o.state for o in self.outcomes.values()}
        self.status = "failed" if "failed" in final else "interrupted" if "missing" in final else "finished"

    def _close(self, finish: bool) -> None:
        self.progress.stop()
        if self.status != "finished" or finish:
            self.store.finish_run(self.run_id, self.status)
        for t in self.tasks.values():
            try:
                t.variable.delete()
            except Exception:  # noqa: BLE001 - the scheduler may be gone; its variables go with it
                pass
        try:
            self.queue.close()
        except Exception:  # noqa: BLE001
            pass

    def _interrupt_attempt(self, task: _Task, attempt: str) -> None:
        """An attempt that will not finish (its board dropped off, or the task was given up): its run is
        `interrupted` in the main store, as a killed local run is once found dead."""
        run_id = task.run_of_attempt.get(attempt)
        if run_id is None:
            return
        run = self.store.records_by_key("runs", [run_id]).get(run_id)
        if run is not None and run.status == "running":
            self.store.finish_run(run_id, "interrupted")

    def _tasks_of(self, device: str) -> list[_Task]:
        return [t for t in self.tasks.values() if t.spec.device == device]

    def _show(self, device: str) -> None:
        o = self.outcomes[device]
        o.done = sum(len(t.already | t.committed) for t in self._tasks_of(device))
        report_device(self.progress, device, o.done, o.planned, o.state, o.decode_tps)


def _plain(value: Any) -> Any:
    """A value as JSON would give it back: tuples as lists, keys as strings."""
    return json.loads(json.dumps(value, default=str))


def _settle(task: _Task, cancelled_for_missing: bool) -> None:
    """A finished future's outcome, as the task's state and error."""
    future = task.future
    if future.status == "finished":
        result = future.result()
        task.state = "done" if result.get("status") == "finished" else "missing" if cancelled_for_missing \
            else "failed"
        if task.state == "failed":
            task.error = f"{task.spec.model}:{task.spec.variant} was cancelled on its board"
        return
    if future.status == "cancelled":
        task.state = "missing" if cancelled_for_missing else "failed"
        if not cancelled_for_missing:
            task.error = f"{task.spec.model}:{task.spec.variant} was cancelled by the scheduler"
        return
    exc = future.exception()
    task.state = "failed"
    if isinstance(exc, FleetJobError):
        task.error = exc.message
    elif type(exc).__name__ == "KilledWorker":
        task.error = (f"{task.spec.model}:{task.spec.variant}: every worker that ran it died (Dask's "
                      "distributed.scheduler.allowed-failures): check the board, then re-run")
    else:
        task.error = f"{task.spec.model}:{task.spec.variant}: {type(exc).__name__}: {exc}"
