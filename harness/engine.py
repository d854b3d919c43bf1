"""The run engine: a plan of device x model variants x prompts x seeds, executed resumably.

Every sample has a deterministic key; a sample whose key is already in the
store (without an error) is skipped, so re-running the same command after a
crash or Ctrl-C finishes the rest. Each model variant is loaded once, every
finished sample is committed at once, and the engine (not the backend) times
the token stream and samples memory and telemetry around it.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.backends import Backend, Sampling, get_backend
from harness.cache import text_sha256
from harness.devices import DeviceProfile
from harness.errors import UsageError
from harness.models import ModelManifest, VariantFile, resolve_variant, variant_backend
from harness.prompts import Prompt
from harness.store import Store
from harness.telemetry import TelemetrySource, merge_readings, open_sources
from harness.trackers import PeakRSSTracker, current_rss_bytes


@dataclass
class Sample:
    key: str
    variant: VariantFile
    manifest: ModelManifest
    prompt: Prompt
    sampling: Sampling


@dataclass
class Plan:
    device: DeviceProfile
    models: list[tuple[ModelManifest, list[str]]]
    prompts: list[Prompt]
    seeds: list[int]
    sampling: Sampling
    variants: list[tuple[ModelManifest, VariantFile]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(v) for _, v in self.models) * len(self.prompts) * len(self.seeds)


def sample_key(variant: VariantFile, backend_version: str, device: str, sampling: Sampling, prompt: Prompt) -> str:
    """Deterministic identity of one generation: same inputs, same key."""
    ident = {
        "model_sha256": variant.sha256,
        "model": variant.model,
        "variant": variant.variant,
        "backend": variant.backend,
        "backend_version": backend_version,
        "device": device,
        "sampling": sampling.as_dict(),
        "prompt_id": prompt.id,
        "prompt_sha256": prompt.sha256,
    }
    return text_sha256(json.dumps(ident, sort_keys=True))[:32]


def backend_version(name: str) -> str:
    """The inference library version, without loading a model."""
    from importlib import metadata

    dist = {"gguf": "llama-cpp-python", "onnx": "onnxruntime"}[name]
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError as exc:
        extra = "gguf" if name == "gguf" else "onnx"
        raise UsageError(f"{dist} is not installed: pip install 'harness[{extra}]'") from exc


def prepare(plan: Plan, progress: Callable[[str], None] | None = None) -> None:
    """Resolve (derive if needed) every variant file and check it fits the device's memory budget."""
    plan.variants = []
    for manifest, variants in plan.models:
        for v in variants:
            vf = resolve_variant(manifest, v, progress)
            if vf.size_bytes > plan.device.memory_budget_bytes:
                raise UsageError(
                    f"{manifest.name}:{v} is {vf.size_bytes / 1e9:.2f} GB, over the {plan.device.memory_budget_bytes / 1e9:.2f} GB "
                    f"memory budget of device '{plan.device.name}': choose a smaller variant or another device profile"
                )
            plan.variants.append((manifest, vf))


def samples(plan: Plan) -> Iterator[Sample]:
    versions: dict[str, str] = {}
    for manifest, vf in plan.variants:
        bv = versions.setdefault(vf.backend, backend_version(vf.backend))
        for prompt in plan.prompts:
            for seed in plan.seeds:
                s = Sampling(**{**plan.sampling.as_dict(), "seed": seed})
                yield Sample(sample_key(vf, bv, plan.device.name, s, prompt), vf, manifest, prompt, s)


def run_metadata(plan: Plan, telemetry_missing: dict[str, str]) -> dict[str, Any]:
    from harness import __version__
    from harness.devices import cpu_flags, detect_host

    host = detect_host().as_dict()
    host["cpu_flags"] = cpu_flags()
    versions = {"harness": __version__, "python": platform.python_version()}
    for name in {vf.backend for _, vf in plan.variants}:
        versions[name] = backend_version(name)
    return {
        "device_profile": plan.device.as_dict(),
        "host": host,
        "versions": versions,
        "sampling": plan.sampling.as_dict(),
        "seeds": plan.seeds,
        "models": [{"model": m.name, "variant": vf.variant, "sha256": vf.sha256, "size_bytes": vf.size_bytes,
                    "path": str(vf.path), **vf.metadata} for m, vf in plan.variants],
        "prompt_sets": sorted({p.prompt_set for p in plan.prompts}),
        "telemetry_unavailable": telemetry_missing,
        **_host_dependencies(plan),
    }


def _host_dependencies(plan: Plan) -> dict[str, Any]:
    """Power mode, thermal state, CPU governors and onnxruntime providers: what else a result depends on.

    For ONNX variants this also checks the device's execution providers (UsageError when none is
    installed); it runs before the run's row is written, so bad input leaves the store untouched.
    """
    from harness.telemetry.host_state import host_state

    out: dict[str, Any] = {"host_state": host_state()}
    if any(vf.backend == "onnx" for _, vf in plan.variants):
        from harness.backends.onnx import check_providers

        out["onnx_providers"] = check_providers(plan.device)
    return out


class ProgressSink:
    """What the engine reports while it runs (the CLI shows it with rich)."""

    def start(self, total: int, done: int) -> None: ...
    def message(self, text: str) -> None: ...
    def advance(self, row: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


def _bandwidth_fraction(vf: VariantFile, decode_tps: float | None, device: DeviceProfile) -> float | None:
    """Achieved weight-read bandwidth during decode over the device's peak (roofline)."""
    if not decode_tps or not device.peak_bandwidth_gbps:
        return None
    from harness.roofline import bytes_per_token, fraction_of_bound

    return fraction_of_bound(decode_tps, bytes_per_token(vf), device.peak_bandwidth_gbps)


def measure(backend: Backend, sample: Sample, device: DeviceProfile, sources: list[TelemetrySource]) -> dict[str, Any]:
    """Generate one sample and return its generations row."""
    error = None
    t_first = t_last = None
    n_stream = 0
    for src in sources:
        src.start()
    with PeakRSSTracker() as mem:
        t0 = time.perf_counter()
        try:
            for _ in backend.stream(sample.prompt.text, sample.sampling):
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                n_stream += 1
        except UsageError as exc:
            error = str(exc)
        t_end = time.perf_counter()
    tel = merge_readings([src.stop() for src in sources])
    res = None if error else backend.finish()
    ttft = (t_first - t0) if t_first is not None else None
    decode_tps = (n_stream - 1) / (t_last - t_first) if (t_first is not None and t_last is not None and n_stream > 1 and t_last > t_first) else None
    n_prompt = res.n_prompt_tokens if res else None
    vf = sample.variant
    return {
        "sample_key": sample.key,
        "device": device.name,
        "model": vf.model,
        "variant": vf.variant,
        "backend": vf.backend,
        "model_sha256": vf.sha256,
        "model_size_bytes": vf.size_bytes,
        "prompt_set": sample.prompt.prompt_set,
        "prompt_id": sample.prompt.id,
        "category": sample.prompt.category,
        "benign": sample.prompt.benign,
        "prompt": sample.prompt.text,
        "prompt_sha256": sample.prompt.sha256,
        "seed": sample.sampling.seed,
        "temperature": sample.sampling.temperature,
        "max_tokens": sample.sampling.max_tokens,
        "output": res.output if res else None,
        "finish_reason": res.finish_reason if res else "error",
        "n_prompt_tokens": n_prompt,
        "n_output_tokens": res.n_output_tokens if res else None,
        "ttft_s": ttft,
        "prompt_tps": (n_prompt / ttft) if (n_prompt and ttft) else None,
        "decode_tps": decode_tps,
        "latency_s": t_end - t0,
        "peak_rss_bytes": mem.reading.peak_rss_bytes if mem.reading else None,
        "peak_vram_bytes": tel.peak_vram_bytes,
        "energy_j": tel.energy_j,
        "energy_source": tel.source or None,
        "bandwidth_fraction": _bandwidth_fraction(vf, decode_tps, device),
        "backend_timings": {**(res.timings if res else {}), "n_streamed_tokens": n_stream,
                            "rss_method": mem.reading.method if mem.reading else None},
        "settings": {"sampling": sample.sampling.as_dict(), "threads": device.resolved_threads(),
                     "n_ctx": device.n_ctx, "n_batch": device.n_batch, "n_gpu_layers": device.n_gpu_layers},
        "error": error,
    }


def execute(plan: Plan, store: Store, sink: ProgressSink | None = None, command: str = "") -> dict[str, Any]:
    """Run every sample of the plan not yet in the store. Returns a summary dict."""
    sink = sink or ProgressSink()
    if not plan.variants:
        prepare(plan, sink.message)
    all_samples = list(samples(plan))
    done_keys = {r["sample_key"] for r in store.query("SELECT sample_key FROM generations WHERE error IS NULL")}
    todo = [s for s in all_samples if s.key not in done_keys]
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    sources, missing = open_sources(plan.device)
    store.insert("runs", {
        "run_id": run_id, "started_at": time.time(), "status": "running", "command": command,
        "device": plan.device.name, "planned": len(all_samples), "metadata": run_metadata(plan, missing),
    })
    sink.start(len(all_samples), len(all_samples) - len(todo))
    status = "failed"
    written = 0
    try:
        by_variant: dict[str, list[Sample]] = {}
        for s in todo:
            by_variant.setdefault(f"{s.variant.model}:{s.variant.variant}", []).append(s)
        for group in by_variant.values():
            first = group[0]
            backend = get_backend(variant_backend(first.variant.variant))
            rss_before = current_rss_bytes()
            sink.message(f"loading {first.variant.model}:{first.variant.variant} ({first.variant.size_bytes / 1e6:.0f} MB)")
            t0 = time.perf_counter()
            load_meta = backend.load(first.variant, plan.device, first.manifest)
            load_s = time.perf_counter() - t0
            store.insert("model_loads", {
                "run_id": run_id, "model": first.variant.model, "variant": first.variant.variant,
                "backend": first.variant.backend, "device": plan.device.name, "model_path": str(first.variant.path),
                "model_sha256": first.variant.sha256, "model_size_bytes": first.variant.size_bytes, "load_s": load_s,
                "rss_before_bytes": rss_before, "rss_after_load_bytes": current_rss_bytes(),
                "metadata": {**load_meta, "backend_version": backend.version()},
            })
            try:
                for s in group:
                    row = measure(backend, s, plan.device, sources)
                    row["run_id"] = run_id
                    row["backend_version"] = backend.version()
                    store.insert("generations", row, replace=True)
                    written += 1
                    sink.advance(row)
            finally:
                backend.close()
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        for src in sources:
            src.close()
        sink.stop()
        store.update("runs", "run_id", run_id, {"status": status, "finished_at": time.time()})
    return {"run_id": run_id, "planned": len(all_samples), "skipped": len(all_samples) - len(todo),
            "written": written, "sample_keys": [s.key for s in all_samples]}


def command_line() -> str:
    return " ".join(["harness", *sys.argv[1:]])
