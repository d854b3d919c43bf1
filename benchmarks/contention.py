"""Cost figures under a competing CPU load: the same plan quiet, and with a load this script starts itself.

    .venv/bin/python benchmarks/contention.py [--model smollm2-135m-instruct:Q4_1] [--prompts 20]
        [--max-tokens 48] [--load-on-s 2] [--load-off-s 2] [--threshold F] [--calibrate]

Runs (each into its own store under --out, through harness.api.run, no judges, no report):
  quiet       the plan on a quiet machine (run this script on one: nothing else busy)
  record      the same plan while one busy-loop process per allowed CPU runs in bursts (on --load-on-s,
              off --load-off-s; 0 off = always on); measurements are flagged, none re-measured
  remeasure   the same under the same load, --on-contention remeasure
  wait        the same, --on-contention wait
and prints decode tok/s medians as ratios to quiet: contended with the flagged samples counted (what a
harness without the flags would report), after excluding them (what harness reports by default), and
re-measured / waited. Then per sample: its decode against the same prompt's quiet decode, its interference,
steal and flag, so one can check that every sample the load slowed down is flagged ("slow and unflagged"
must be 0) and that the post-exclusion and re-measured medians are within 5% of quiet.

--calibrate instead sweeps a steady load of one process per CPU busy for a share of every 10 ms (0%, 2.5%,
5%, 10%, 20%, 40%, 100%) and prints, per level, the median interference the monitor saw and the decode
ratio to the 0% level: the data behind the default contention threshold (devices.DEFAULT_CONTENTION_THRESHOLD).

Never run this for figures on a shared machine: its load and everyone else's are indistinguishable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A busy loop: busy for `duty` of every `period_s`, in bursts of `on_s` seconds every `on_s + off_s` (off_s 0:
# always on). Started as one process per allowed CPU and stopped by PID.
LOAD = """
import sys, time
duty, period, on_s, off_s = map(float, sys.argv[1:5])
t0 = time.perf_counter()
while True:
    now = time.perf_counter()
    phase = (now - t0) % (on_s + off_s) if off_s > 0 else 0.0
    if phase >= on_s:  # off: sleep through to the next burst (polling here would itself wake the CPUs)
        time.sleep(on_s + off_s - phase)
        continue
    end = now + duty * period
    while time.perf_counter() < end:
        pass
    if duty < 1:
        time.sleep((1 - duty) * period)
"""


@contextmanager
def competing_load(duty: float = 1.0, on_s: float = 1.0, off_s: float = 0.0, period_s: float = 0.01
                   ) -> Iterator[list[int]]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(duty), str(period_s), str(on_s), str(off_s)])
             for _ in range(cpus)]
    try:
        time.sleep(0.2)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def run(name: str, out: Path, args: argparse.Namespace, **kw: Any) -> Any:
    import harness

    kw.setdefault("contention_threshold", args.threshold)
    return harness.run(args.model, prompts=args.prompt_set, limit=args.prompts, max_tokens=args.max_tokens,
                       store=out / f"{name}.sqlite", judge=False, report=False,
                       command=f"benchmarks/contention.py {name}", **kw)


def decode_median(gens: list[Any], include_flagged: bool) -> tuple[float | None, int, int]:
    from harness.rates import cost_summaries

    (c,) = cost_summaries(gens, include_flagged=include_flagged)
    return c.decode_tps, c.n_cost, c.n_contended


def ratio(x: float | None, quiet: float | None) -> str:
    return "-" if x is None or not quiet else f"{x / quiet:.3f}"


def compare(args: argparse.Namespace, out: Path) -> None:
    results = {"quiet": run("quiet", out, args)}
    on, off = args.load_on_s, args.load_off_s
    for name, policy in (("record", "record"), ("remeasure", "remeasure"), ("wait", "wait")):
        if name not in args.runs:
            continue
        with competing_load(1.0, on, off):
            results[name] = run(name, out, args, on_contention=policy)
    results["quiet-after"] = run("quiet-after", out, args)  # the machine itself may drift over the runs
    quiet_gens = results["quiet"].generations
    q, q_n, q_flagged = decode_median(quiet_gens, False)
    q_after, _, _ = decode_median(results["quiet-after"].generations, False)
    threshold = (quiet_gens[0].settings or {}).get("measurement", {}).get("contention_threshold")
    print(f"{args.model}, {args.prompts} prompts x {args.max_tokens} tokens; load: one busy process per CPU, "
          f"{on:g} s on / {off:g} s off; contention threshold {threshold}")
    print(f"quiet                      decode median {q:.1f} tok/s  (n={q_n}, flagged contended on the quiet "
          f"machine: {q_flagged})" if q else "quiet: no clean decode measurement: the machine was not quiet")
    print(f"quiet again after the loaded runs: {ratio(q_after, q)} of quiet  (drift of the machine itself, which "
          "no in-VM counter sees)")
    if "record" in results:
        g = results["record"].generations
        every, n_every, _ = decode_median(g, True)
        clean, n_clean, n_flagged = decode_median(g, False)
        print(f"contended, flags ignored   {ratio(every, q)} of quiet  (n={n_every})")
        print(f"contended, after exclusion {ratio(clean, q)} of quiet  (n={n_clean}; {n_flagged} contended "
              "sample(s) left out)")
    for name in ("remeasure", "wait"):
        if name in results:
            clean, n_clean, n_flagged = decode_median(results[name].generations, False)
            print(f"contended, {name:<15} {ratio(clean, q)} of quiet  (n={n_clean}; {n_flagged} still contended)")
    quiet_by_prompt = {g.prompt_id: g.decode_tps for g in quiet_gens}
    print("\nper sample: run, prompt, decode tok/s, ratio to quiet, interference, steal, contended, warm-up, "
          "measurements")
    slow_unflagged = 0
    for name, res in results.items():
        for g in res.generations:
            qd = quiet_by_prompt.get(g.prompt_id)
            r = g.decode_tps / qd if g.decode_tps and qd else None
            if not name.startswith("quiet") and not g.warmup and not g.contended and r is not None and r < 0.9:
                slow_unflagged += 1
            print(f"  {name:<9} {g.prompt_id:<9} {g.decode_tps or 0:7.1f} {f'{r:.2f}' if r else '-':>5} "
                  f"{g.interference_frac if g.interference_frac is not None else float('nan'):6.3f} "
                  f"{g.cpu_steal_frac if g.cpu_steal_frac is not None else float('nan'):6.3f} "
                  f"{'contended' if g.contended else '-':<9} {'warm-up' if g.warmup else '-':<7} "
                  f"{len(g.measurements) if g.measurements else 1}")
    print(f"\nslow (under 0.9 of quiet) and unflagged samples under load: {slow_unflagged} (must be 0)")
    with_load = [g for n, res in results.items() if not n.startswith("quiet") for g in res.generations
                 if not g.warmup]
    print(f"samples under load flagged contended: {sum(bool(g.contended) for g in with_load)} of {len(with_load)}")


def calibrate(args: argparse.Namespace, out: Path) -> None:
    levels = [0.0, 0.025, 0.05, 0.10, 0.20, 0.40, 1.0]
    rows = []
    for duty in levels:
        if duty == 0:
            res = run(f"duty-{duty}", out, args, contention_threshold=1.0)
        else:
            with competing_load(duty):
                res = run(f"duty-{duty}", out, args, contention_threshold=1.0)
        gens = [g for g in res.generations if not g.warmup and g.decode_tps]
        rows.append((duty, statistics.median(g.interference_frac or 0 for g in gens),
                     statistics.median(g.decode_tps for g in gens)))
    base = rows[0][2]
    print("busy share of each CPU, median interference seen, median decode tok/s, ratio to no load")
    for duty, frac, decode in rows:
        print(f"  {duty:6.1%}   {frac:6.3f}   {decode:7.1f}   {decode / base:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct:Q4_1")
    ap.add_argument("--prompt-set", default="default")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--load-on-s", type=float, default=2.0)
    ap.add_argument("--load-off-s", type=float, default=2.0)
    ap.add_argument("--threshold", type=float, default=None, help="contention threshold (default: the profile's)")
    ap.add_argument("--runs", default="record,remeasure,wait", help="which contended runs (comma-separated)")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", default=None, help="folder for the stores (default: a temporary one)")
    args = ap.parse_args()
    args.runs = {r.strip() for r in args.runs.split(",") if r.strip()}
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        (calibrate if args.calibrate else compare)(args, out)


if __name__ == "__main__":
    main()
