"""Decode tokens/s as harness records it, against native llama.cpp (llama-bench) and llama-cpp-python's own timers.

Rounds alternate, so that machine noise hits both sides alike: llama-bench, then harness, then llama-bench, ...

  llama-bench  `llama-bench -p 0 -n N -t T -fa auto,off -d 0,D` of a native build of the same vendored llama.cpp
               (benchmarks/_llama_bench.py finds or builds it): the decode (tg) tok/s a user of llama.cpp gets, in
               four tests per round:
                 -fa auto -d 0   llama-bench's defaults (the issue's reference): flash attention auto (on for the
                                 CPU), an empty context of n_ctx = N, so llama.cpp attends over N KV cells
                 -fa off  -d D   "matched": the settings harness decodes with. Flash attention off, as
                                 llama-cpp-python's `Llama` has it and harness keeps it (turning it on changes
                                 greedy outputs); depth D such that llama.cpp attends over as many KV cells as in
                                 harness's median sample (the used cells rounded up to 256, as llama.cpp does for
                                 any n_ctx >= 256)
                 and the two between, which split the gap into flash attention and the KV window
  harness      the run engine's measurement (harness.measurement.measure, with its memory and host monitors
               running): wall clock on the token stream, median over the prompts
  llama timer  llama.cpp's internal eval timer (llama_perf_context: n_eval / t_eval) for the same harness samples
  bare         a plain `Llama.generate` loop with no harness code (its sampler chain included), timed the same way

Prints each round (with the share of the CPUs other processes used: harness.telemetry.interference; above a few
percent the round says little) and the medians over rounds of each figure and of the per-round ratios.
Target: harness / llama-bench matched >= 0.97. The gap between llama-bench's defaults and matched is flash attention
and the KV window: settings of the measurement, not harness's overhead.

    python benchmarks/decode_overhead.py --llama-bench /path/to/llama-bench [--rounds 3] [--prompts 8]
        [--max-tokens 128] [--variant Q4_1] [--bench-repetitions 3] [--no-bare]
    python benchmarks/decode_overhead.py --build-llama-bench ...   # build it first into the harness cache

Without a llama-bench (none given, none in $HARNESS_LLAMA_BENCH or the cache) it compares harness with the
llama.cpp timer and the bare loop only. Figures mean something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _llama_bench import BenchRun, build_llama_bench, find_llama_bench, run_llama_bench

from harness.backends import Sampling
from harness.backends.llama_cpp import LlamaCppBackend
from harness.devices import resolve_device
from harness.llama_runtime import open_llama, system_info
from harness.measurement import Sample, measure
from harness.prompts import load_set
from harness.telemetry.interference import HostMonitor, interference, parse_proc_stat, parse_self_stat
from harness.variants import load_manifest, resolve_variant

KV_PAD = 256  # llama.cpp attends over the used KV cells rounded up to 256, never more than n_ctx (llama-kv-cache.cpp)


def bare_decode_tps(llm: Any, tokens: list[int], max_tokens: int) -> float:
    """A plain llama-cpp-python loop: greedy, stop at end-of-generation or max_tokens; tokens after the first over
    the time from the first to the last."""
    import llama_cpp

    llm.reset()
    vocab = llm._model.vocab
    n = 0
    t_first = t_last = 0.0
    for tok in llm.generate(tokens, top_k=40, top_p=0.95, min_p=0.05, temp=0.0, repeat_penalty=1.0, reset=True):
        now = time.perf_counter()
        if n == 0:
            t_first = now
        t_last = now
        n += 1
        if llama_cpp.llama_vocab_is_eog(vocab, tok) or n >= max_tokens:
            break
    return (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else float("nan")


def matched_depth(prompt_lengths: list[int], max_tokens: int, n_ctx: int) -> int:
    """The llama-bench depth D at which decoding N tokens attends over as many KV cells as harness's median sample:
    llama.cpp's window is the used cells rounded up to 256, capped at n_ctx; llama-bench's n_ctx is D + N."""
    used = int(statistics.median(prompt_lengths)) + max_tokens
    window = min(n_ctx, -(-used // KV_PAD) * KV_PAD)
    return max(0, window - max_tokens)


BENCH_CONFIGS = (("auto", "defaults"), ("off", "matched"))  # flash attention as llama-bench takes it, and a name


@dataclass
class Round:
    bench: dict[tuple[str, int], float] = field(default_factory=dict)  # (flash attention, depth) -> tg tok/s
    bench_interference: float | None = None
    harness: list[float] = field(default_factory=list)
    llama_timer: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    harness_interference: float | None = None

    def median(self, name: str) -> float | None:
        values = [v for v in getattr(self, name) if v == v]
        return statistics.median(values) if values else None


def _cpu() -> tuple[Any, float | None]:
    return parse_proc_stat(Path("/proc/stat").read_text()), parse_self_stat(Path("/proc/self/stat").read_text())


def _fmt(x: float | None, spec: str = "7.1f") -> str:
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variant", default="Q4_1")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-bench", help="path of a llama-bench binary (else $HARNESS_LLAMA_BENCH, else the cache)")
    ap.add_argument("--build-llama-bench", action="store_true",
                    help="build llama-bench from the installed llama-cpp-python's vendored source into the cache")
    ap.add_argument("--build-jobs", type=int, default=2)
    ap.add_argument("--bench-repetitions", type=int, default=3, help="llama-bench -r: repetitions per test")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare llama-cpp-python loop")
    args = ap.parse_args()

    binary = find_llama_bench(args.llama_bench)
    if binary is None and args.build_llama_bench:
        binary = build_llama_bench(args.build_jobs)

    device, _ = resolve_device("auto")
    manifest = load_manifest(args.model)
    vf = resolve_variant(manifest, args.variant)
    prompts = [p for p in load_set("default") if not p.benign][: args.prompts]
    sampling = Sampling(max_tokens=args.max_tokens)
    threads = device.resolved_threads()

    backend = LlamaCppBackend()
    backend.load(vf, device, manifest)
    bare = None
    if not args.no_bare:
        bare, _ = open_llama(model_path=str(vf.path), n_ctx=device.n_ctx, n_batch=device.n_batch, n_threads=threads,
                             n_threads_batch=threads, n_gpu_layers=device.n_gpu_layers, verbose=False)
    samples = [Sample("bench", vf, manifest, p, sampling, backend.version()) for p in prompts]
    tokens = [backend._tokens(s.model_input) for s in samples]
    depth = matched_depth([len(t) for t in tokens], args.max_tokens, device.n_ctx)
    monitor = HostMonitor()

    print(f"{vf.model}:{vf.variant} on {device.name}, {threads} threads, n_ctx {device.n_ctx}, {len(prompts)} prompts "
          f"x {args.max_tokens} greedy tokens, {args.rounds} rounds")
    print(f"llama-cpp-python system info: {system_info().strip()}")
    if binary is None:
        print("no llama-bench (give --llama-bench PATH, set $HARNESS_LLAMA_BENCH, or --build-llama-bench): "
              "comparing with llama-cpp-python's timers only")
    else:
        print(f"llama-bench: {binary}: defaults (-fa auto -d 0) and matched (-fa off -d {depth}: a KV window of "
              f"{depth + args.max_tokens} cells, as harness's median prompt of "
              f"{int(statistics.median(len(t) for t in tokens))} tokens)")
    configs = [("auto", 0), ("off", 0), ("auto", depth), ("off", depth)]  # defaults first, matched last
    names = {("auto", 0): "defaults", ("off", depth): "matched"}
    header = " ".join(f"{'fa ' + fa + ' d' + str(d):>12s}" for fa, d in configs) if binary is not None else ""
    print(f"{'round':>5s} {header} {'interf':>7s} | {'harness':>8s} {'llama tmr':>9s} {'bare':>7s} {'interf':>7s}"
          + (f" | {'h/dflt':>7s} {'h/mtch':>7s}" if binary is not None else ""))

    rounds: list[Round] = []
    for i in range(args.rounds):
        r = Round()
        if binary is not None:
            run: BenchRun = run_llama_bench(binary, vf.path, threads=threads, n_gen=args.max_tokens,
                                            repetitions=args.bench_repetitions, flash_attn="auto,off",
                                            depths=(0, depth))
            r.bench = {(res.flash_attn, res.n_depth): res.tg_tps for res in run.results}
            r.bench_interference = run.interference_frac
        before = _cpu()
        for s, toks in zip(samples, tokens):
            row = measure(backend, s, device, [], "bench", monitor)
            if row.decode_tps is not None:
                r.harness.append(row.decode_tps)
            timer = (row.backend_timings or {}).get("llama_decode_tps")
            if timer is not None:
                r.llama_timer.append(timer)
            if bare is not None:
                r.bare.append(bare_decode_tps(bare, toks, args.max_tokens))
        after = _cpu()
        if before[0] is not None and after[0] is not None and before[1] is not None and after[1] is not None:
            f, steal = interference(before[0], after[0], before[1], after[1])
            r.harness_interference = None if f is None else f + (steal or 0.0)
        rounds.append(r)
        h = r.median("harness")
        line = f"{i + 1:5d} "
        if binary is not None:
            line += " ".join(_fmt(r.bench.get(c), "12.1f") for c in configs) + " "
        line += (f"{_fmt(r.bench_interference, '7.3f')} | {_fmt(h, '8.1f')} {_fmt(r.median('llama_timer'), '9.1f')} "
                 f"{_fmt(r.median('bare'))} {_fmt(r.harness_interference, '7.3f')}")
        if binary is not None:
            line += " | " + " ".join(_fmt(h / b if h and (b := r.bench.get(c)) else None, "7.3f")
                                      for c in (configs[0], configs[-1]))
        print(line, flush=True)

    def med(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None and v == v]
        return statistics.median(known) if known else None

    def ratio(num: Any, den: Any) -> float | None:
        """Median over rounds of the per-round ratio of two figures (a list name, or a llama-bench config)."""
        def figure(r: Round, which: Any) -> float | None:
            return r.median(which) if isinstance(which, str) else r.bench.get(which)

        return med([(a / b) if (a := figure(r, num)) and (b := figure(r, den)) else None for r in rounds])

    print(f"median decode tok/s over rounds: harness {_fmt(med([r.median('harness') for r in rounds]), '.1f')}, "
          f"llama.cpp timer {_fmt(med([r.median('llama_timer') for r in rounds]), '.1f')}, "
          f"bare loop {_fmt(med([r.median('bare') for r in rounds]), '.1f')}")
    if binary is not None:
        print("llama-bench tg tok/s: " + ", ".join(
            f"-fa {fa} -d {d}{' (' + names[(fa, d)] + ')' if (fa, d) in names else ''} "
            f"{_fmt(med([r.bench.get((fa, d)) for r in rounds]), '.1f')}" for fa, d in configs))
        print(f"harness / llama-bench defaults (-fa auto -d 0)   = {_fmt(ratio('harness', configs[0]), '.3f')}")
        print(f"harness / llama-bench matched (-fa off -d {depth:<3d})  = {_fmt(ratio('harness', configs[-1]), '.3f')}"
              "   (target >= 0.97: what harness's own code costs)")
        print(f"llama-bench -fa off / auto, empty context       = {_fmt(ratio(configs[1], configs[0]), '.3f')}"
              "   (flash attention: off in harness, as llama-cpp-python's Llama has it)")
        print(f"llama-bench -d {depth:<3d} / -d 0, flash attention off = {_fmt(ratio(configs[3], configs[1]), '.3f')}"
              f"   (the KV window: {depth + args.max_tokens} cells against {args.max_tokens})")
    print(f"harness / llama.cpp internal timer = {_fmt(ratio('harness', 'llama_timer'), '.3f')}")
    if bare is not None:
        print(f"harness / bare Llama.generate loop = {_fmt(ratio('harness', 'bare'), '.3f')}")
    worst = med([max([x for x in (r.bench_interference, r.harness_interference) if x is not None], default=0.0)
                 for r in rounds])
    print(f"median over rounds of the worst interference: {_fmt(worst, '.3f')}"
          + ("   (the machine was busy: these figures mean little)" if worst and worst > 0.05 else ""))
    backend.close()
    if bare is not None:
        bare.close()


if __name__ == "__main__":
    main()
