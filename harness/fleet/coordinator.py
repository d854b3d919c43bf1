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

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.backends import Sampling
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
from harness.prompts import Prompt
from harness.records import Generation, Run
from harness.store import Store
from harness.variants import ModelManifest
from harness.version import __version__

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


def run_fleet(store: Store, fleet: FleetClient, *, devices: Sequence[str],
              models: Sequence[tuple[ModelManifest, list[str]]], prompts: Sequence[Prompt], seeds: Sequence[int],
              sampling: Sampling, progress: Progress, command: str = "", wait_s: float = DEFAULT_WAIT_S,
              finish: bool = True) -> FleetResult:
    """Run the plan on the fleet into `store`; see the module docstring. Like harness.engine.execute, the
    run's row stays `running` with `finish=False` when it finished (the caller judges and reports next)."""
    from harness import engine
    from harness.merge import apply, plan_merge

    distributed = require_distributed()
    client = fleet.client
    run_id = engine.new_run_id()
    variants = [(m.name, v) for m, vs in models for v in vs]
    n_samples = len(prompts) * len(seeds)
    outcomes = {d: DeviceOutcome(d, "waiting", n_samples * len(variants)) for d in devices}
    offered = fleet.devices()
    store.put(Run(run_id=run_id, started_at=time.time(), status="running", command=command,
                  device=",".join(devices), planned=sum(o.planned for o in outcomes.values()),
                  metadata={"fleet": {"scheduler": fleet.address, "devices": list(devices),
                                      "workers": {d: offered.get(d, []) for d in devices}},
                            "versions": {"harness": __version__, "distributed": distributed.__version__},
                            "sampling": sampling.as_dict(), "seeds": list(seeds),
                            "models": [{"model": m, "variant": v} for m, v in variants],
                            "prompt_sets": sorted({p.prompt_set for p in prompts}),
                            "process": engine.process_identity()}))
    queue = distributed.Queue(f"harness-{run_id}", client=client)
    tasks: dict[str, _Task] = {}
    prompt_dicts = [dataclasses.asdict(p) for p in prompts]
    sampling_dict = {k: v for k, v in sampling.as_dict().items() if k != "seed"}
    for device in devices:
        for model, variant in variants:
            key = f"harness-{run_id}-{device}-{model}-{variant}"
            done = sorted(store.done_sample_keys(device=device, model=model, variant=variant))
            variable = distributed.Variable(f"{key}-done", client=client)
            variable.set({"acked": {}, "done": done})
            spec = JobSpec(device=device, model=model, variant=variant, prompts=prompt_dicts, seeds=list(seeds),
                           sampling=sampling_dict, command=command, queue=queue.name, done_variable=variable.name,
                           done_keys=done, fleet={"scheduler": fleet.address, "coordinator_run": run_id, "task": key})
            future = client.submit(run_job, spec.as_dict(), key=key, resources={device_resource(device): 1},
                                   pure=False, retries=0)
            tasks[key] = _Task(spec, future, variable)
    total = sum(o.planned for o in outcomes.values())
    progress.start(total, "generating on the fleet")
    duplicates: list[str] = []
    for o in outcomes.values():
        report_device(progress, o.device, 0, o.planned, o.state)

    def device_done(device: str) -> int:
        return sum(len(t.already | t.committed) for t in tasks.values() if t.spec.device == device)

    def show(device: str) -> None:
        o = outcomes[device]
        o.done = device_done(device)
        report_device(progress, device, o.done, o.planned, o.state, o.decode_tps)

    def handle(msg: dict[str, Any]) -> None:
        task = tasks.get(msg.get("task", ""))
        if task is None:
            return
        try:
            handle_for(task, msg)
        finally:
            # The board's job waits for this before it measures on (harness.fleet.job: lock step).
            task.acked[str(msg.get("attempt"))] = int(msg.get("seq", 0))
            task.variable.set({"acked": dict(task.acked), "done": sorted(set(task.spec.done_keys) | task.committed)})

    def handle_for(task: _Task, msg: dict[str, Any]) -> None:
        device = task.spec.device
        o = outcomes[device]
        kind = msg.get("type")
        if kind == "started":
            if task.attempts:
                _interrupt_attempt(store, task, task.attempts[-1])
                progress.message(f"{device}: {task.spec.model}:{task.spec.variant} rescheduled on {msg.get('worker')}")
            task.attempts.append(msg["attempt"])
            task.state = "running"
            if o.state in ("waiting", "missing"):
                o.state = "running"
            worker = {"name": msg.get("worker"), "address": msg.get("worker_address"), "pid": msg.get("worker_pid"),
                      "host": _plain(msg.get("host"))}
            if worker not in o.workers:
                o.workers.append(worker)
            show(device)
        elif kind == "plan":
            task.keys = list(msg.get("keys") or [])
            before = len(task.already | task.committed)
            task.already = set(task.keys) & set(task.spec.done_keys)
            o.skipped = sum(len(t.already) for t in tasks.values() if t.spec.device == device)
            progress.advance(len(task.already | task.committed) - before)
            show(device)
        elif kind == "message":
            progress.message(f"{device}: {msg.get('text', '')}")
        elif kind == "rows":
            records = decode_tables(msg.get("rows") or {})
            for r in records.get("runs", []):
                attempt = ((r.metadata or {}).get("fleet") or {}).get("attempt")
                if attempt:
                    task.run_of_attempt[attempt] = r.run_id
            plan = plan_merge(store, [(f"device {device}", records)], on_conflict="keep")
            apply(store, plan)
            duplicates.extend(plan.conflict_notes)
            written = {g.sample_key for g in plan.inserts + plan.replacements if isinstance(g, Generation)}
            new = written - task.committed - task.already
            task.committed |= written
            o.written += len(new)
            gens = records.get("generations", [])
            if gens and gens[-1].decode_tps:
                o.decode_tps = gens[-1].decode_tps
            if new:
                label = f"{device} {task.spec.model}:{task.spec.variant}"
                progress.advance(len(new), f"{label} {o.decode_tps:.0f} tok/s" if o.decode_tps else label)
            show(device)

    def drain(wait: float) -> None:
        try:
            first = queue.get(timeout=wait)
        except TimeoutError:
            return
        handle(first)
        for msg in queue.get(batch=True):
            handle(msg)

    missing_since: dict[str, float] = {}
    cancelled_missing: set[str] = set()
    last_presence = 0.0
    status = "failed"
    try:
        while any(not t.future.done() for t in tasks.values()):
            drain(POLL_S)
            now = time.monotonic()
            if now - last_presence >= PRESENCE_EVERY_S:
                last_presence = now
                present = fleet.devices()
                for device in devices:
                    if all(t.future.done() for t in tasks.values() if t.spec.device == device):
                        continue
                    if device in present:
                        missing_since.pop(device, None)
                        continue
                    since = missing_since.setdefault(device, now)
                    if outcomes[device].state != "missing" and now - since >= wait_s:
                        outcomes[device].state = "missing"
                        cancelled_missing.add(device)
                        for t in tasks.values():
                            if t.spec.device == device and not t.future.done():
                                t.future.cancel()
                        progress.message(f"{device}: no worker offers it for {wait_s:.0f} s: reported missing")
                        show(device)
        while queue.qsize() > 0:
            drain(POLL_S)
        for t in tasks.values():
            _settle(t, t.spec.device in cancelled_missing)
            if t.state != "done" and t.attempts:
                _interrupt_attempt(store, t, t.attempts[-1])
        for device, o in outcomes.items():
            states = [t.state for t in tasks.values() if t.spec.device == device]
            errors = [t.error for t in tasks.values() if t.spec.device == device and t.error]
            o.state = "failed" if "failed" in states else "missing" if "missing" in states else "done"
            o.error = errors[0] if errors else None
            show(device)
        final = {o.state for o in outcomes.values()}
        status = "failed" if "failed" in final else "interrupted" if "missing" in final else "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        for t in tasks.values():
            t.future.cancel()
        raise
    except OSError as exc:  # the scheduler went away
        raise HarnessError(f"lost the fleet scheduler at {fleet.address} ({exc}): the rows gathered so far are "
                           "stored; re-run the same command when it is back") from exc
    finally:
        progress.stop()
        if status != "finished" or finish:
            store.finish_run(run_id, status)
        for t in tasks.values():
            try:
                t.variable.delete()
            except Exception:  # noqa: BLE001 - the scheduler may be gone; its variables go with it
                pass
        try:
            queue.close()
        except Exception:  # noqa: BLE001
            pass
    keys = [k for t in tasks.values() for k in t.keys]
    return FleetResult(run_id, fleet.address, status, total, sum(o.skipped for o in outcomes.values()),
                       sum(o.written for o in outcomes.values()), keys, list(outcomes.values()), duplicates)


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


def _interrupt_attempt(store: Store, task: _Task, attempt: str) -> None:
    """An attempt that will not finish (its board dropped off, or the task was given up): its run is
    `interrupted` in the main store, as a killed local run is once found dead."""
    run_id = task.run_of_attempt.get(attempt)
    if run_id is None:
        return
    run = store.records_by_key("runs", [run_id]).get(run_id)
    if run is not None and run.status == "running":
        store.finish_run(run_id, "interrupted")
