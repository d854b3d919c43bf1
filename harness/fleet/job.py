"""One fleet task on a board: the unchanged engine in a fresh process, `python -m harness.fleet.job JOB.json`.

The worker starts this process for each task, so what is measured (peak RSS, decode speed) is measured
in a process like a local `harness run`, without the Dask worker's memory or threads in it. The job
resolves the variant on the board, writes into the board's shard store, and reports on its stdout as
JSON lines (`plan` with the planned sample keys, then the engine's progress, then `done` or `error`);
the worker reads the rows from the shard and streams them to the coordinator.

Its stdin carries one line from the worker after `plan`: the keys the main store holds by then (a task
moved from a board that dropped off starts only once what that board measured has been gathered). Then
stdin is a lifeline: when the worker dies the pipe closes and the job interrupts itself (the run is then
`interrupted` in the shard, as after Ctrl-C). Exit codes as the CLI's: 0, 2 bad input, 1, 130.
"""

from __future__ import annotations

import _thread
import json
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any

from harness.errors import UsageError


class JsonLinesProgress:
    """harness.progress.Progress as JSON lines on a stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        try:
            self._stream.write(json.dumps({"event": event, **fields}) + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker is gone; the lifeline stops the job

    def start(self, total: int, description: str, done: int = 0) -> None:
        self.emit("start", total=total, description=description, done=done)

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.emit("advance", n=n, note=note)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def stop(self) -> None:
        self.emit("stop")


def _watch_lifeline(fd: int) -> None:
    """Interrupt the job (as Ctrl-C would) when the worker's end of stdin closes. Reads the raw descriptor
    (no Python buffer, whose lock would hold up the interpreter's exit)."""
    def watch() -> None:
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        _thread.interrupt_main()

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _read_line(fd: int) -> bytes:
    """One line from a raw descriptor (b'' at end of file), without buffering past it."""
    out = bytearray()
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        out += chunk
    return bytes(out)


def run(job: dict[str, Any], progress: JsonLinesProgress, stdin_fd: int) -> int:
    from harness import catalog, engine
    from harness.backends import Sampling
    from harness.devices import load_profile
    from harness.prompts import Prompt
    from harness.store import Store
    from harness.variants import check_variant_name, load_manifest

    with catalog.user_dirs(job["catalogs"]):
        profile = load_profile(job["profile"])
        if profile.name != job["device"]:
            raise UsageError(f"this board runs device profile '{profile.name}', not '{job['device']}'")
        manifest = load_manifest(job["model"])
        check_variant_name(manifest, job["variant"])
        plan = engine.Plan(device=profile, models=[(manifest, [job["variant"]])],
                           prompts=[Prompt(**p) for p in job["prompts"]], seeds=list(job["seeds"]),
                           sampling=Sampling(**job["sampling"]), run_metadata={"fleet": job["fleet"]})
        engine.prepare(plan, progress)
        keys = [s.key for s in engine.samples(plan)]
        with Store.open(job["store"]) as store:
            progress.emit("plan", sample_keys=keys)
            line = _read_line(stdin_fd)
            if not line:
                raise KeyboardInterrupt  # the worker is gone
            done = set(job["done_keys"]) | set(json.loads(line).get("done_keys", []))
            _watch_lifeline(stdin_fd)
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
    progress = JsonLinesProgress(events)
    try:
        job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        return run(job, progress, sys.stdin.fileno())
    except UsageError as exc:
        progress.emit("error", message=str(exc), usage=True)
        return 2
    except KeyboardInterrupt:
        progress.emit("error", message="interrupted", usage=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, with the traceback on stderr
        import traceback

        traceback.print_exc()
        progress.emit("error", message=f"{type(exc).__name__}: {exc}", usage=False)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
