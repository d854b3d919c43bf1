"""The memory roofline of decoding: this host's achievable bandwidth, and the bytes a model reads per token.

Decoding one token reads (about) every weight once, so tokens/s can never pass
bandwidth / bytes-per-token. `measure_bandwidth` estimates the achievable
bandwidth with numpy kernels on arrays far larger than any cache, run on
`threads` threads at once (numpy releases the GIL in these loops), best of N:
- read:  sum of a float32 array (bytes read = array size), the access pattern of decode;
- copy:  dst[:] = src (STREAM convention: 2 x array bytes);
- triad: a = b + s*c, done in place as two passes (counted as the 5 x array bytes actually moved).
GB/s use 1e9 bytes. `bytes_per_token` gives the weight bytes one decode step
reads for a model variant: GGUF tensors except a token-embedding table that is
only looked up (when the output matrix is separate), ONNX initializers except
tables only gathered from. The KV cache read is not counted (small at these
context lengths), so the fraction is a slight underestimate.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.variants import VariantFile

KERNELS = ("read", "copy", "triad")


def _run_parallel(fns: list[Callable[[], None]]) -> float:
    """Run the callables on one thread each, started together; wall seconds until all finish."""
    barrier = threading.Barrier(len(fns) + 1)

    def worker(fn: Callable[[], None]) -> None:
        barrier.wait()
        fn()

    threads = [threading.Thread(target=worker, args=(fn,), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure_bandwidth(threads: int = 1, array_bytes: int = 128 * 1024 * 1024, repeats: int = 5) -> dict[str, Any]:
    """Best-of-`repeats` GB/s per kernel, each thread working on its own arrays of `array_bytes`."""
    import numpy as np

    if threads < 1 or repeats < 1 or array_bytes < 1024 * 1024:
        raise ValueError("threads and repeats must be >= 1 and arrays at least 1 MiB")
    n = array_bytes // 4
    a = [np.ones(n, dtype=np.float32) for _ in range(threads)]
    b = [np.full(n, 2.0, dtype=np.float32) for _ in range(threads)]
    c = [np.full(n, 0.5, dtype=np.float32) for _ in range(threads)]
    sink = [0.0] * threads

    def read(i: int) -> None:
        sink[i] = float(np.add.reduce(b[i]))

    def copy(i: int) -> None:
        np.copyto(a[i], b[i])

    def triad(i: int) -> None:
        np.multiply(c[i], 3.0, out=a[i])
        np.add(a[i], b[i], out=a[i])

    kernels: dict[str, tuple[Callable[[int], None], int]] = {
        "read": (read, 1), "copy": (copy, 2), "triad": (triad, 5)}
    moved = {k: factor * n * 4 * threads for k, (_, factor) in kernels.items()}
    best: dict[str, float] = {}
    for name, (fn, _) in kernels.items():
        fn(0)  # touch the pages once before timing
        times = [_run_parallel([functools.partial(fn, i) for i in range(threads)]) for _ in range(repeats)]
        best[name] = moved[name] / min(times) / 1e9
    return {
        "threads": threads,
        "array_bytes": array_bytes,
        "repeats": repeats,
        "gbps": best,
        "bytes_moved": moved,
        "achievable_gbps": max(best.values()),
    }


def fraction_of_bound(decode_tps: float | None, bytes_per_token: int | None,
                      bandwidth_gbps: float | None) -> float | None:
    """Achieved weight-read bandwidth over the bound: tokens/s x bytes/token / (GB/s x 1e9)."""
    if not decode_tps or not bytes_per_token or not bandwidth_gbps:
        return None
    return decode_tps * bytes_per_token / (bandwidth_gbps * 1e9)


def bytes_per_token(vf: VariantFile) -> int | None:
    """Weight bytes read per decoded token for a model variant (None if unknown)."""
    onnx_meta = vf.metadata.get("onnx") if isinstance(vf.metadata, dict) else None
    if vf.backend == "onnx":
        value = (onnx_meta or {}).get("weight_bytes_per_token")
        return int(value) if value else vf.size_bytes
    from harness.variants.gguf import bytes_per_token as gguf_bytes_per_token

    try:
        return gguf_bytes_per_token(vf.path, vf.sha256)
    except (OSError, ValueError, ImportError):
        gg = vf.metadata.get("gguf", {}) if isinstance(vf.metadata, dict) else {}
        return gg.get("tensor_bytes") or vf.size_bytes


def cpu_flags_of_interest(flags: list[str]) -> list[str]:
    """The CPU flags that decide which matmul kernels llama.cpp and onnxruntime use."""
    prefixes = ("avx", "amx", "fma", "f16c", "sve", "asimd", "neon", "i8mm", "bf16", "fphp")
    return sorted(f for f in flags if f.startswith(prefixes))


def profile_toml(name: str, measured: dict[str, Any], host: dict[str, Any], flags: list[str]) -> str:
    """A device profile (devices/NAME.toml) for this host with its measured bandwidth."""
    cores = int(host.get("physical_cores") or 1)
    ram = int(host.get("ram_bytes") or 0)
    gpus = host.get("gpus") or []
    kind = "jetson" if host.get("jetson_release") else ("cuda" if gpus else "cpu")
    providers = ['"CUDAExecutionProvider"', '"CPUExecutionProvider"'] if kind != "cpu" else ['"CPUExecutionProvider"']
    g = measured["gbps"]
    when = time.strftime("%Y-%m-%d")
    cpu = str(host.get("cpu_model", "")).replace('"', "'")
    lines = [
        f"# Written by `harness devices probe --write {name}` on {when}.",
        f"# Measured with numpy on {measured['threads']} thread(s), {measured['array_bytes'] // 2**20} MiB arrays, "
        f"best of {measured['repeats']}:",
        "#   " + ", ".join(f"{k} {g[k]:.1f} GB/s" for k in KERNELS if k in g),
        f"# CPU flags (kernel-relevant): {' '.join(cpu_flags_of_interest(flags)) or '-'}",
        f'description = "This host: {cpu}, {cores} physical cores, measured {measured["achievable_gbps"]:.1f} GB/s"',
        f'kind = "{kind}"',
        "threads = 0",
        f"n_gpu_layers = {-1 if kind != 'cpu' else 0}",
        "n_batch = 512",
        "n_ctx = 2048",
        f"onnx_providers = [{', '.join(providers)}]",
        f'memory_budget = "{max(1, int(ram * 0.5 / 1e9))}GB"',
        f"peak_bandwidth_gbps = {measured['achievable_gbps']:.1f}  # measured, not the datasheet peak",
        f"cpu_cores = {cores}",
        f'ram = "{max(1, round(ram / 2**30))}GiB"',
    ]
    if gpus:
        lines.append(f'gpu = "{str(gpus[0].get("name", "")).replace(chr(34), chr(39))}"')
    lines.append(f'notes = "Measured by harness devices probe ({when}); the bound is the best of read/copy/triad."')
    return "\n".join(lines) + "\n"
