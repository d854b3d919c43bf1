"""What a fleet run costs and whether it changes what is measured: the same plan locally and through a one-worker fleet.

A scheduler and one worker (for this machine's device profile) are started on 127.0.0.1 before anything
is timed, as a board's worker would already be running. Each round then runs the same plan twice, into
fresh stores, alternating which goes first so drift hits both alike:

  local   `harness run --device D ...` (a fresh process, as a user runs it)
  fleet   `harness run --fleet ADDRESS --device D ...`: the worker runs the engine in a fresh process on
          the "board" and streams the rows back

Both record the same samples under the same sample keys, so decode tok/s is compared sample by sample.
Prints the ratio fleet / local of wall time (overhead: connecting, the job's process start, streaming)
and the median of the per-sample ratios of recorded decode tok/s, TTFT and peak RSS. Target: decode
within 2% (the fleet path must not change what is measured). Run it on a quiet machine: llama.cpp's
decode collapses under any other CPU load.

    python benchmarks/fleet_overhead.py [--device auto] [--prompts 8] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.devices import resolve_device
from harness.judging.local_server import free_port
from harness.store import Store


def start(args: list[str], log: Path, ready: str, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while ready not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{' '.join(args)} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def median(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="device profile (default: the one detected here)")
    ap.add_argument("--model", default="smollm2-135m-instruct:Q4_1")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    profile, why = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="harness-fleet-overhead-"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    print(f"device {profile.name} ({why}); {args.model}; {args.prompts} prompts x {args.max_tokens} tokens; "
          f"{args.rounds} round(s); scratch {work}")
    scheduler = start(["fleet", "scheduler", "--port", str(port)], work / "scheduler.log", "fleet scheduler at")
    worker = None
    try:
        worker = start(["fleet", "worker", "--scheduler", address, "--device", profile.source, "--name", "bench",
                        "--store", str(work / "shard.sqlite")], work / "worker.log", "fleet worker bench at")
        common = ["run", "--device", profile.name, "--model", args.model, "--limit", str(args.prompts),
                  "--max-tokens", str(args.max_tokens), "--no-judge", "--no-report", "--quiet"]
        walls: dict[str, list[float]] = {"local": [], "fleet": []}
        per_sample: dict[str, list[float | None]] = {"decode_tps": [], "ttft_s": [], "peak_rss_bytes": []}
        for r in range(args.rounds):
            order = ["local", "fleet"] if r % 2 == 0 else ["fleet", "local"]
            gens = {}
            for how in order:
                store = work / f"round{r}-{how}.sqlite"
                shard = work / "shard.sqlite"
                if how == "fleet" and shard.exists():
                    shard.unlink()  # the board measures again each round (its shard would skip the samples)
                cmd = [sys.executable, "-m", "harness", *common, "--store", str(store),
                       *(["--fleet", address] if how == "fleet" else [])]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True)
                walls[how].append(time.perf_counter() - t0)
                if done.returncode != 0:
                    raise SystemExit(f"{how} run failed ({done.returncode}): {done.stderr[-2000:]}")
                with Store.open(store, readonly=True) as st:
                    gens[how] = {g.sample_key: g for g in st.generations()}
                assert len(gens[how]) == args.prompts, (how, len(gens[how]))
            assert set(gens["local"]) == set(gens["fleet"]), "the two paths planned different samples"
            for key, local in gens["local"].items():
                fleet = gens["fleet"][key]
                for name in per_sample:
                    per_sample[name].append(ratio(getattr(fleet, name), getattr(local, name)))
            print(f"round {r + 1}: wall local {walls['local'][-1]:.2f} s, fleet {walls['fleet'][-1]:.2f} s")
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)

    wall_ratio = statistics.median(walls["fleet"]) / statistics.median(walls["local"])
    decode = median(per_sample["decode_tps"])
    print(f"wall time   fleet / local = {wall_ratio:.3f} (median of {args.rounds} round(s))")
    print(f"decode tok/s fleet / local = {decode:.4f} (median of per-sample ratios)")
    print(f"TTFT        fleet / local = {median(per_sample['ttft_s']):.4f}")
    print(f"peak RSS    fleet / local = {median(per_sample['peak_rss_bytes']):.4f}")
    verdict = "within" if abs(decode - 1) <= 0.02 else "OUTSIDE"
    print(f"decode {verdict} 2% of local")


if __name__ == "__main__":
    main()
