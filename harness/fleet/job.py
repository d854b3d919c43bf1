"""One fleet task on a board: the unchanged engine in a fresh process, `python -m harness.fleet.job JOB.json`.

The worker starts this process for each task, so what is measured (peak RSS, decode speed, load time)
is measured in a process like a local `harness run`, without the Dask worker's memory or threads in it.
The job resolves the variant on the board, writes into the board's shard store, and reports on its
stdout as JSON lines: `plan` (the planned sample keys), then the engine's progress (`start`, `advance`
after each committed sample, `message`, `stop`), then `done` or `error`.

Lock step: after each event but `done` and `error` the job waits for one line on its stdin. The worker
writes it once it has streamed the new rows and the coordinator has committed them, so nothing of the
fleet (reading the shard, sending rows, merging them) runs while the engine measures a sample. The line
after `plan` carries the keys the main store holds by then, so a task moved from a board that dropped
off skips what that board measured. The end of stdin means the worker is gone: the job stops as after
Ctrl-C (its run `interrupted` in the shard). Exit codes as the CLI's: 0, 2 bad input, 1, 130.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from harness.errors import UsageError

FINAL_EVENTS = ("done", "error")  # the worker does not answer these


class WorkerGone(KeyboardInterrupt):
    """The worker's end of stdin closed: stop as Ctrl-C would (the engine marks the run interrupted)."""


def read_line(fd: int) -> bytes:
    """One line from a raw descriptor (b'' at end of file), without reading past it."""
    out = bytearray()
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        out += chunk
    return bytes(out)


class LockStepProgress:
    """harness.progress.Progress as JSON lines on a stream, each answered by the worker before the job goes on."""

    def __init__(self, events: IO[str], replies_fd: int) -> None:
        self._events = events
        self._replies = replies_fd

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        try:
            self._events.write(json.dumps({"event": event, **fields}) + "\n")
            self._events.flush()
        except (BrokenPipeError, ValueError) as exc:
            if event in FINAL_EVENTS:
                return {}
            raise WorkerGone() from exc
        if event in FINAL_EVENTS:
            return {}
        line = read_line(self._replies)
        if not line:
            raise WorkerGone()
        reply = json.loads(line)
        return reply if isinstance(reply, dict) else {}

    def start(self, total: int, description: str, done: int = 0) -> None:
        self.emit("start", total=total, description=description, done=done)

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.emit("advance", n=n, note=note)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def stop(self) -> None:
        try:
            self.emit("stop")
        except WorkerGone:
            pass  # stop() runs in the engine's cleanup; the run is marked by whatever ended it


def run(job: dict[str, Any], progress: LockStepProgress) -> int:
    from harness import catalog, engine
    from harness.devices import load_profile
    from harness.store import Store

    with catalog.user_dirs(job["catalogs"]):
        profile = load_profile(job["profile"])
        if profile.name != job["device"]:
            raise UsageError(f"this board runs device profile '{profile.name}', not '{job['device']}'")
        plan = engine.Plan(device=profile, spec=engine.RunSpec.from_wire(job["plan"]),
                           run_metadata={"fleet": job["fleet"]})
        engine.prepare(plan, progress)
        keys = [s.key for s in engine.samples(plan)]
        with Store.open(job["store"]) as store:
            reply = progress.emit("plan", sample_keys=keys)
            done = set(job["done_keys"]) | set(reply.get("done_keys", []))
            res = engine.execute(plan, store, progress, command=job["command"], done_elsewhere=done)
        progress.emit("done", run_id=res.run_id, written=res.written, skipped=res.skipped, status=res.status)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.fleet.job JOB.json", file=sys.stderr)
        return 2
    # Events go to the original stdout; anything else that writes to fd 1 (a C library) goes to stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    progress = LockStepProgress(events, sys.stdin.fileno())
    try:
        job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        return run(job, progress)
    except UsageError as exc:
        progress.emit("error", message=str(exc), usage=True)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, SIGINT from the worker, or the worker gone
        progress.emit("error", message="interrupted", usage=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, with the traceback on stderr
        import traceback

        traceback.print_exc()
        progress.emit("error", message=f"{type(exc).__name__}: {exc}", usage=False)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
