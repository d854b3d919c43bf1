"""Decode tokens/s as harness records it, against llama.cpp's own timers and a bare llama-cpp-python loop.

All three are measured in one process, on the same model file, prompts and
settings, interleaved prompt by prompt so that machine noise hits them alike:

  harness   the run engine's measurement (harness.engine.measure): wall clock
            on the token stream, with memory sampling running
  llama     llama.cpp's internal eval timer for the same harness samples
            (llama_perf_context: n_eval / t_eval)
  bare      a plain `Llama.generate` loop with no harness code, timed the
            same way (tokens after the first / time from first to last token)

Prints per-prompt medians over the repeats and the ratios of the medians.
Target: harness within 2% of the bare loop.

    python benchmarks/decode_overhead.py [--variant Q4_1] [--prompts 8] [--max-tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.backends import Sampling
from harness.backends.llama_cpp import LlamaCppBackend
from harness.devices import resolve_device
from harness.engine import Sample, measure
from harness.llama_runtime import open_llama
from harness.prompts import load_set
from harness.variants import load_manifest, resolve_variant


def bare_decode_tps(llm, tokens: list[int], max_tokens: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """A plain llama-cpp-python loop: greedy, stop at end-of-generation or max_tokens."""
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
    return (n - 1) / (t_last - t_first), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variant", default="Q4_1")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    device, _ = resolve_device("auto")
    manifest = load_manifest(args.model)
    vf = resolve_variant(manifest, args.variant)
    prompts = [p for p in load_set("default") if not p.benign][: args.prompts]
    sampling = Sampling(max_tokens=args.max_tokens)

    backend = LlamaCppBackend()
    backend.load(vf, device, manifest)
    threads = device.resolved_threads()
    bare, _ = open_llama(model_path=str(vf.path), n_ctx=device.n_ctx, n_batch=device.n_batch, n_threads=threads,
                         n_threads_batch=threads, n_gpu_layers=device.n_gpu_layers, verbose=False)

    per_prompt: list[tuple[float, float, float]] = []
    print(f"{vf.model}:{vf.variant} on {device.name}, {threads} threads, {len(prompts)} prompts x {args.repeats} "
          f"repeats, greedy, up to {args.max_tokens} tokens")
    for p in prompts:
        sample = Sample("bench", vf, manifest, p, sampling, backend.version())
        tokens = backend._tokens(p.text)
        h, lc, b = [], [], []
        for _ in range(args.repeats):
            row = measure(backend, sample, device, [], "bench")
            h.append(row.decode_tps)
            lc.append((row.backend_timings or {})["llama_decode_tps"])
            tps, _n = bare_decode_tps(bare, tokens, args.max_tokens)
            b.append(tps)
        per_prompt.append((statistics.median(h), statistics.median(lc), statistics.median(b)))
        print(f"  {p.id:10s} harness {per_prompt[-1][0]:7.1f}  llama {per_prompt[-1][1]:7.1f}  bare {per_prompt[-1][2]:7.1f} tok/s"
              f"  ({row.n_output_tokens} tokens)")
    harness_tps = statistics.median(x[0] for x in per_prompt)
    llama_tps = statistics.median(x[1] for x in per_prompt)
    bare_tps = statistics.median(x[2] for x in per_prompt)
    ratio_bare = statistics.median(x[0] / x[2] for x in per_prompt)
    ratio_llama = statistics.median(x[0] / x[1] for x in per_prompt)
    ratio_bare_llama = statistics.median(x[2] / x[1] for x in per_prompt)
    print(f"median decode tok/s: harness {harness_tps:.1f}, llama.cpp internal {llama_tps:.1f}, bare loop {bare_tps:.1f}")
    print(f"harness / bare loop          = {ratio_bare:.3f}   (target >= 0.98)")
    print(f"harness / llama.cpp internal = {ratio_llama:.3f}")
    print(f"bare loop / llama.cpp internal = {ratio_bare_llama:.3f}")
    backend.close()
    bare.close()


if __name__ == "__main__":
    main()
