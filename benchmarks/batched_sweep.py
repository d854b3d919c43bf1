"""Plan throughput single-stream against batched llama.cpp generation, and whether the outputs stay the same.

One process, one model file, one plan of prompts (greedy): single-stream (`LlamaCppBackend`, one prompt after the
other) and batched (`harness.backends.llama_batch.BatchedLlama`, continuous batching) at each batch size N, every
mode loaded once and run once per round, the order rotated from round to round so that machine noise hits them
alike. Prints, side by side:

  plan tok/s     generated tokens of the whole plan over its wall time (tokenizing included), median over rounds
  x single       the ratio to single-stream measured in the same round, median over rounds
  identical      the share of outputs byte-identical to single-stream's
  same verdict   the share with the same refusal-detector verdict (harness.judging.refusal) as single-stream's
  interference   the largest share of the CPUs other processes used during the mode's runs (/proc/stat)

A batch's tokens per second are the batch's throughput, never one user's speed: cost stays single-stream.
--onnx VARIANT (e.g. onnx-int8, exported with `harness models export-onnx MODEL --int8`) adds the same for
onnxruntime (`harness.backends.onnx_batch.BatchedOnnx`), its ratios and shares against ONNX single-stream.

    python benchmarks/batched_sweep.py [--model smollm2-135m-instruct] [--variant Q4_1] [--prompts 32]
        [--max-tokens 64] [--batch 1,2,4,8,16] [--rounds 3] [--n-ctx N] [--onnx VARIANT] [--quick]

--quick is a smoke run (4 prompts, 8 tokens, N = 1 and 2, one round): its figures mean nothing. Run for figures
only on a quiet machine: other processes' load and batching's gain are indistinguishable.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.backends import Sampling, SequenceRequest
from harness.backends.llama_batch import BatchedLlama
from harness.backends.llama_cpp import LlamaCppBackend
from harness.devices import resolve_device
from harness.judging.refusal import detect_refusal
from harness.prompts import Prompt, load_set
from harness.telemetry.interference import interference, parse_proc_stat, parse_self_stat
from harness.variants import load_manifest, resolve_variant


@dataclass
class Mode:
    """One backend single-stream (batch 0) or batched at `batch`, with what its rounds measured."""

    backend: str  # llama.cpp | onnx
    batch: int
    generator: Any
    tps: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    interference: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.backend} " + ("single" if self.batch == 0 else f"N={self.batch}")


def cpu_reading() -> tuple[Any, float | None]:
    return (parse_proc_stat(Path("/proc/stat").read_text()),
            parse_self_stat(Path("/proc/self/stat").read_text()))


def run_single(backend: Any, prompts: list[Prompt], sampling: Sampling) -> tuple[list[str], int]:
    outputs, generated = [], 0
    for p in prompts:
        for _ in backend.stream(p.text, sampling):
            pass
        result = backend.finish()
        outputs.append(result.output)
        generated += result.n_output_tokens
    return outputs, generated


def run_batched(generator: Any, prompts: list[Prompt], sampling: Sampling) -> tuple[list[str], int]:
    requests = [SequenceRequest(tuple(generator.prompt_tokens(p.text)), sampling) for p in prompts]
    results, throughput = generator.run(requests)
    return [r.text for r in results], throughput.n_generated_tokens


def run_round(modes: list[Mode], prompts: list[Prompt], sampling: Sampling, round_no: int) -> None:
    """Every mode once, in an order rotated by the round number; ratios against this round's single-stream of the
    same backend."""
    order = modes[round_no % len(modes):] + modes[:round_no % len(modes)]
    tps: dict[tuple[str, int], float] = {}
    for mode in order:
        before, own_before = cpu_reading()
        started = time.perf_counter()
        if mode.batch == 0:
            outputs, generated = run_single(mode.generator, prompts, sampling)
        else:
            outputs, generated = run_batched(mode.generator, prompts, sampling)
        wall_s = time.perf_counter() - started
        after, own_after = cpu_reading()
        if before is not None and after is not None and own_before is not None and own_after is not None:
            frac, steal = interference(before, after, own_before, own_after)
            if frac is not None:
                mode.interference.append(frac + (steal or 0.0))
        tps[mode.backend, mode.batch] = generated / wall_s
        mode.tps.append(tps[mode.backend, mode.batch])
        if not mode.outputs:
            mode.outputs = outputs
    for mode in modes:
        mode.ratios.append(tps[mode.backend, mode.batch] / tps[mode.backend, 0])


def load_modes(backend: str, single_type: Any, batched_type: Any, variant: Any, device: Any, manifest: Any,
               batches: list[int]) -> list[Mode]:
    single = single_type()
    single.load(variant, device, manifest)
    modes = [Mode(backend, 0, single)]
    for n in batches:
        generator = batched_type()
        generator.load(variant, device, manifest, n)
        modes.append(Mode(backend, n, generator))
    return modes


def plan_prompts(count: int) -> list[Prompt]:
    """`count` prompts of the default set, spread over it (every category, harmful and benign)."""
    every = load_set("default")
    step = max(1, len(every) // max(1, count))
    return every[::step][:count]


def share(a: list[Any], b: list[Any]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else float("nan")


def report(modes: list[Mode]) -> None:
    singles = {m.backend: m for m in modes if m.batch == 0}
    print(f"{'mode':16s} {'plan tok/s':>10s} {'x single':>9s} {'identical':>10s} {'same verdict':>13s} "
          f"{'interference':>13s}")
    for mode in modes:
        single = singles[mode.backend]
        verdicts = [detect_refusal(o).label for o in single.outputs]
        same_verdict = share([detect_refusal(o).label for o in mode.outputs], verdicts)
        worst = f"{max(mode.interference):.3f}" if mode.interference else "-"
        print(f"{mode.name:16s} {statistics.median(mode.tps):10.1f} {statistics.median(mode.ratios):9.2f} "
              f"{share(mode.outputs, single.outputs):10.1%} {same_verdict:13.1%} {worst:>13s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variant", default="Q4_1")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", default="1,2,4,8,16", help="batch sizes, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=0, help="context per sequence (default: the device profile's)")
    ap.add_argument("--onnx", default="", metavar="VARIANT", help="also onnxruntime on this variant, e.g. onnx-int8")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 prompts, 8 tokens, N = 1, 2, one round")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.max_tokens, args.batch, args.rounds = 4, 8, "1,2", 1

    device, _ = resolve_device("auto")
    if args.n_ctx:
        device = replace(device, n_ctx=args.n_ctx)
    manifest = load_manifest(args.model)
    variant = resolve_variant(manifest, args.variant)
    prompts = plan_prompts(args.prompts)
    sampling = Sampling(max_tokens=args.max_tokens)

    batches = [int(x) for x in args.batch.split(",")]
    modes = load_modes("llama.cpp", LlamaCppBackend, BatchedLlama, variant, device, manifest, batches)
    if args.onnx:
        from harness.backends.onnx import OnnxBackend
        from harness.backends.onnx_batch import BatchedOnnx

        onnx_variant = resolve_variant(manifest, args.onnx)
        modes += load_modes("onnx", OnnxBackend, BatchedOnnx, onnx_variant, device, manifest, batches)
    print(f"{variant.model}:{variant.variant} on {device.name}, {device.resolved_threads()} threads, n_ctx "
          f"{device.n_ctx} per sequence, {len(prompts)} prompts x up to {args.max_tokens} tokens, greedy, "
          f"{args.rounds} rounds" + (" (--quick: figures meaningless)" if args.quick else ""))
    for round_no in range(args.rounds):
        run_round(modes, prompts, sampling, round_no)
    report(modes)
    for mode in modes:
        mode.generator.close()


if __name__ == "__main__":
    main()
