"""A quantization ladder measured side by side in one run: size, load time, peak RSS, TTFT, decode speed, roofline.

    .venv/bin/python benchmarks/quant_ladder.py [--model smollm2-135m-instruct]
        [--variants F16,Q8_0,Q4_1,Q4_K_M,Q4_0,Q2_K,onnx-fp32,onnx-int8] [--prompts 6] [--max-tokens 32]
        [--int8-study] [--loop-study]

Every variant is derived first (cached), then measured in its own child process (so peak RSS is that
variant's alone) on the same greedy prompts through the run engine's `measure`, after one warm-up
generation. The variants run round-robin --rounds times (a burst of load on a shared host hits all of
them alike); figures are medians over prompts, then over rounds. The roofline bound is this host's
bandwidth measured by `harness.roofline.measure_bandwidth` in each round (the best is kept); "of BW bound" = decode tok/s x weight bytes per
token / bound. "agree" is the mean fraction of the reference's greedy tokens (onnx-fp32: the shipped
weights in fp32) that a variant reproduces before its first different token.

--int8-study builds the onnxruntime int8 candidates from onnx-fp32 (quantize_dynamic default,
MatMul-only per-tensor, MatMul-only per-channel; block-wise MatMulNBits 8-bit with blocks of 32 and
128) and prints size, decode tok/s and drift from fp32: teacher-forced top-1 agreement with fp32's
greedy tokens and the mean KL divergence of the next-token distributions.
--loop-study compares the lean onnxruntime + tokenizers loop with optimum's ORTModelForCausalLM on
onnx-fp32 (same prompts, greedy, end-to-end tokens/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VARIANTS = "F16,Q8_0,Q4_1,Q4_K_M,Q4_0,Q2_K,onnx-fp32,onnx-int8"
PROMPT_IDS = ["disc-001", "off-001", "priv-001", "harm-001", "ben-001", "ben-021", "neg-001", "disc-002",
              "off-002", "priv-002"]


def pick_prompts(n: int) -> list[Any]:
    from harness.prompts import load_set

    all_prompts = load_set("default")
    by_id = {p.id: p for p in all_prompts}
    chosen = [by_id[i] for i in PROMPT_IDS if i in by_id]
    chosen += [p for p in all_prompts if p not in chosen]
    return chosen[:n]


class Recording:
    """A backend wrapper that keeps the token ids of each stream (for the agreement column)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens: list[int] = []

    def stream(self, prompt: str, sampling: Any) -> Any:
        self.tokens = []
        for tok in self.inner.stream(prompt, sampling):
            self.tokens.append(int(tok))
            yield tok

    def finish(self) -> Any:
        return self.inner.finish()


def child(args: argparse.Namespace) -> int:
    """Measure one variant in this process and print one JSON line."""
    from harness import engine
    from harness.backends import Sampling, get_backend
    from harness.devices import load_profile
    from harness.roofline import bytes_per_token
    from harness.trackers import _read_hwm_bytes, current_rss_bytes
    from harness.variants import load_manifest, resolve_variant

    manifest = load_manifest(args.model)
    device = load_profile(args.device)
    vf = resolve_variant(manifest, args.child)
    backend = get_backend(vf.backend)
    rss0 = current_rss_bytes()
    t0 = time.perf_counter()
    backend.load(vf, device, manifest)
    load_s = time.perf_counter() - t0
    rss_loaded = current_rss_bytes()
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    prompts = pick_prompts(args.prompts)
    rec = Recording(backend)
    list(backend.stream(prompts[0].text, sampling))  # warm-up
    rows, outputs = [], []
    for p in prompts:
        sample = engine.Sample("bench", vf, manifest, p, sampling, backend.version())
        rows.append(dataclasses.asdict(engine.measure(rec, sample, device, [], "bench")))  # type: ignore[arg-type]
        outputs.append(rec.tokens)
    backend.close()
    # VmHWM: the high-water mark of this process image (ru_maxrss would include the parent's at fork)
    hwm = _read_hwm_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.median(vals) if vals else None

    print(json.dumps({
        "variant": vf.variant, "backend": vf.backend, "size_bytes": vf.size_bytes, "load_s": load_s,
        "rss_before_load_bytes": rss0, "rss_after_load_bytes": rss_loaded, "peak_rss_bytes": hwm,
        "ttft_s": med("ttft_s"), "prompt_tps": med("prompt_tps"), "decode_tps": med("decode_tps"),
        "bytes_per_token": bytes_per_token(vf), "n_output_tokens": sum(r["n_output_tokens"] or 0 for r in rows),
        "outputs": outputs,
    }))
    return 0


def prefix_agreement(ref: list[int], other: list[int]) -> float:
    k = 0
    for a, b in zip(ref, other):
        if a != b:
            break
        k += 1
    return k / max(len(ref), 1)


def ladder(args: argparse.Namespace) -> list[dict[str, Any]]:
    from harness.devices import physical_cores
    from harness.roofline import measure_bandwidth
    from harness.variants import load_manifest, resolve_variant

    manifest = load_manifest(args.model)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:  # derive everything first, with progress
        resolve_variant(manifest, v, lambda msg: print(f"  {msg}", file=sys.stderr))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    bandwidth: list[dict[str, Any]] = []
    for rnd in range(args.rounds):  # round-robin, so a burst of load elsewhere hits every variant alike
        bandwidth.append(measure_bandwidth(threads=physical_cores(), repeats=3))
        for v in variants:
            cmd = [sys.executable, __file__, "--child", v, "--model", args.model, "--device", args.device,
                   "--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens)]
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            if r.returncode != 0:
                print(f"{v}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
                continue
            runs[v].append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"  round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    bound = max(b["achievable_gbps"] for b in bandwidth)
    kernels = {k: max(b["gbps"][k] for b in bandwidth) for k in bandwidth[0]["gbps"]}
    print(f"host bandwidth (numpy, {bandwidth[0]['threads']} threads, best over rounds): "
          + ", ".join(f"{k} {v:.1f}" for k, v in kernels.items()) + f" GB/s -> bound {bound:.1f} GB/s")
    results = []
    for _v, rs in runs.items():
        if not rs:
            continue
        first = rs[0]
        results.append({**first, **{k: statistics.median(r[k] for r in rs)
                                    for k in ("load_s", "peak_rss_bytes", "ttft_s", "decode_tps")}})
    ref_variant = "onnx-fp32" if "onnx-fp32" in runs and runs["onnx-fp32"] else results[0]["variant"]
    ref = next(r for r in results if r["variant"] == ref_variant)
    print(f"\n{args.model}: {args.prompts} prompts x {args.max_tokens} greedy tokens, device profile {args.device}; "
          f"medians of {args.rounds} round(s); greedy agreement vs {ref_variant}")
    head = f"{'variant':<10} {'backend':<7} {'size MB':>8} {'load s':>7} {'peak RSS MB':>11} {'TTFT s':>7} " \
           f"{'decode tok/s':>12} {'MB/token':>9} {'of BW bound':>11} {'agree':>6} {'exact':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        frac = r["decode_tps"] * r["bytes_per_token"] / (bound * 1e9) if r["decode_tps"] else None
        agree = statistics.mean(prefix_agreement(a, b) for a, b in zip(ref["outputs"], r["outputs"]))
        exact = sum(a == b for a, b in zip(ref["outputs"], r["outputs"]))
        print(f"{r['variant']:<10} {r['backend']:<7} {r['size_bytes'] / 1e6:>8.0f} {r['load_s']:>7.2f} "
              f"{r['peak_rss_bytes'] / 1e6:>11.0f} {r['ttft_s']:>7.3f} {r['decode_tps']:>12.1f} "
              f"{r['bytes_per_token'] / 1e6:>9.0f} {frac:>11.0%} {agree:>6.2f} {exact:>3}/{len(ref['outputs'])}")
    return results


# -- int8 study ------------------------------------------------------------------------------------


def _full_logits(sess: Any, ids: list[int]) -> Any:
    import numpy as np

    feed = {}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values."):
            feed[i.name] = np.zeros([1] + [d if isinstance(d, int) else 0 for d in i.shape[1:]], np.float32)
    feed["input_ids"] = np.asarray([ids], np.int64)
    feed["attention_mask"] = np.ones((1, len(ids)), np.int64)
    feed["position_ids"] = np.arange(len(ids), dtype=np.int64)[None]
    return sess.run(["logits"], feed)[0][0].astype(np.float64)


def _log_softmax(x: Any) -> Any:
    import numpy as np

    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def int8_study(args: argparse.Namespace) -> None:
    import logging
    import shutil

    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from harness.backends import Sampling
    from harness.backends.onnx import OnnxBackend
    from harness.devices import load_profile
    from harness.variants import load_manifest, resolve_variant
    from harness.variants.onnx import _fold_initializer_transposes

    logging.getLogger().setLevel(logging.ERROR)  # the quantizers log every node
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.ERROR)
    manifest = load_manifest(args.model)
    device = load_profile(args.device)
    fp32 = resolve_variant(manifest, "onnx-fp32")
    src = fp32.path.parent
    tmp = Path(tempfile.mkdtemp(prefix="int8-study-"))

    def folder(name: str) -> Path:
        d = tmp / name
        d.mkdir()
        for f in src.iterdir():
            if f.name not in ("model.onnx", "harness-variant.json"):
                shutil.copy(f, d / f.name)
        return d

    def nbits(name: str, block: int) -> Path:
        d = folder(name)
        model = onnx.load(str(src / "model.onnx"))
        _fold_initializer_transposes(model)
        q = MatMulNBitsQuantizer(model, bits=8, block_size=block, is_symmetric=True, accuracy_level=4,
                                 op_types_to_quantize=("MatMul",))
        q.process()
        onnx.save_model(q.model.model, str(d / "model.onnx"))
        return d

    def dynamic(name: str, **kw: Any) -> Path:
        d = folder(name)
        quantize_dynamic(str(src / "model.onnx"), str(d / "model.onnx"), weight_type=QuantType.QInt8, **kw)
        return d

    print("\nbuilding int8 candidates from onnx-fp32 ...", file=sys.stderr)
    candidates = {
        "fp32 (reference)": src,
        "dynamic, all ops, per-tensor": dynamic("dyn-default"),
        "dynamic, MatMul, per-tensor": dynamic("dyn-matmul", op_types_to_quantize=["MatMul"]),
        "dynamic, MatMul, per-channel": dynamic("dyn-matmul-pc", op_types_to_quantize=["MatMul"], per_channel=True),
        "MatMulNBits 8b, block 32 (chosen)": nbits("nbits-b32", 32),
        "MatMulNBits 8b, block 128": nbits("nbits-b128", 128),
    }
    prompts = pick_prompts(args.prompts)
    greedy = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    results: dict[str, dict[str, Any]] = {}
    ref_sequences: list[tuple[int, list[int]]] = []
    from dataclasses import replace

    for label, d in candidates.items():
        b = OnnxBackend()
        b.load(replace(fp32, path=d / "model.onnx"), device, manifest)
        list(b.stream(prompts[0].text, greedy))  # warm-up
        tps, agree, kl = [], [], []
        for i, p in enumerate(prompts):
            toks = list(b.stream(p.text, greedy))
            tps.append(b.finish().timings["onnx_decode_tps"] or 0.0)
            prompt_ids = b._tokens(p.text)
            if not ref_sequences or len(ref_sequences) <= i:
                ref_sequences.append((len(prompt_ids), prompt_ids + toks))
            n, seq = ref_sequences[i]
            logits = _full_logits(b._sess, seq)[n - 1:-1]
            target = np.asarray(seq[n:])
            agree.append(float(np.mean(logits.argmax(-1) == target)))
            if label == "fp32 (reference)":
                results.setdefault("_ref_logp", {})[i] = _log_softmax(logits)
            else:
                ref_lp = results["_ref_logp"][i]
                lp = _log_softmax(logits)
                kl.append(float(np.mean((np.exp(ref_lp) * (ref_lp - lp)).sum(-1))))
        b.close()
        results[label] = {"size": (d / "model.onnx").stat().st_size, "tps": statistics.median(tps),
                          "agree": statistics.mean(agree), "kl": statistics.mean(kl) if kl else 0.0}
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nint8 candidates ({len(prompts)} prompts x {args.max_tokens} greedy tokens; drift vs fp32, teacher-forced)")
    head = f"{'candidate':<36} {'size MB':>8} {'decode tok/s':>12} {'top-1 agree':>11} {'mean KL':>8}"
    print(head)
    print("-" * len(head))
    for label, r in results.items():
        if label.startswith("_"):
            continue
        print(f"{label:<36} {r['size'] / 1e6:>8.0f} {r['tps']:>12.1f} {r['agree']:>11.3f} {r['kl']:>8.4f}")


# -- loop study ------------------------------------------------------------------------------------


def loop_study(args: argparse.Namespace) -> None:
    from harness.backends import Sampling
    from harness.backends.onnx import OnnxBackend
    from harness.devices import load_profile
    from harness.variants import load_manifest, resolve_variant

    manifest = load_manifest(args.model)
    device = load_profile(args.device)
    vf = resolve_variant(manifest, "onnx-fp32")
    prompts = pick_prompts(args.prompts)
    greedy = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    lean = OnnxBackend()
    lean.load(vf, device, manifest)
    list(lean.stream(prompts[0].text, greedy))

    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    so = ort.SessionOptions()
    so.intra_op_num_threads = device.resolved_threads()
    torch.set_num_threads(device.resolved_threads())
    ortm = ORTModelForCausalLM.from_pretrained(str(vf.path.parent), use_cache=True, use_io_binding=False,
                                               session_options=so, provider="CPUExecutionProvider")
    pad = 2

    def run_ortm(ids: list[int]) -> tuple[float, list[int]]:
        x = torch.tensor([ids])
        t0 = time.perf_counter()
        out = ortm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.max_tokens, do_sample=False,
                            eos_token_id=2, pad_token_id=pad)
        dt = time.perf_counter() - t0
        return dt, out[0, len(ids):].tolist()

    run_ortm(lean._tokens(prompts[0].text))  # warm-up
    lean_tps, ortm_tps, same = [], [], 0
    for i in range(2):  # alternate, twice over the prompts
        for p in prompts:
            ids = lean._tokens(p.text)
            t0 = time.perf_counter()
            toks = list(lean.stream(p.text, greedy))
            dt_lean = time.perf_counter() - t0
            dt_o, otoks = run_ortm(ids)
            lean_tps.append(len(toks) / dt_lean)
            ortm_tps.append(len(otoks) / dt_o)
            same += int(i == 0 and toks[: len(otoks)] == otoks[: len(toks)])
    lean.close()
    a, b = statistics.median(lean_tps), statistics.median(ortm_tps)
    print(f"\ngeneration loop on onnx-fp32 ({len(prompts)} prompts x {args.max_tokens} greedy tokens, x2, "
          f"end-to-end tokens/s incl. prefill; medians)")
    print(f"  lean onnxruntime + tokenizers loop : {a:6.1f} tok/s")
    print(f"  optimum ORTModelForCausalLM        : {b:6.1f} tok/s")
    print(f"  ratio lean / ORTModelForCausalLM   : {a / b:6.2f}x   same greedy tokens on {same}/{len(prompts)} prompts")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--device", default="laptop-cpu", help="device profile for threads and context (default laptop-cpu)")
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3, help="round-robin repetitions of the ladder (default 3)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--int8-study", action="store_true")
    p.add_argument("--loop-study", action="store_true")
    p.add_argument("--no-ladder", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if not args.no_ladder:
        ladder(args)
    if args.int8_study:
        int8_study(args)
    if args.loop_study:
        loop_study(args)
    return 0


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    sys.exit(main())
