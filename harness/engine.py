"""The run engine: a plan of device x model variants x prompts x seeds, executed resumably.

Every sample has a deterministic key (harness.keys.sample_key); a sample whose key is already in
the store without an error is skipped, so re-running the same command after a crash or Ctrl-C
finishes the rest. Each model variant is loaded once, every finished sample is committed at
once, and the engine (not the backend) times the token stream and samples memory and telemetry
around it. The whole plan is resolved and checked (variants derived, memory budget, providers)
before the run's row is written, so bad input leaves the store untouched.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness import keys
from harness.backends import Backend, Sampling, get_backend
from harness.devices import DeviceProfile
from harness.errors import UsageError
from harness.progress import NoProgress, Progress
from harness.prompts import Prompt
from harness.records import Generation, ModelLoad, Run
from harness.store import Store
from harness.telemetry import TelemetrySource, merge_readings, open_sources
from harness.trackers import PeakRSSTracker, current_rss_bytes
from harness.variants import ModelManifest, VariantFile, resolve_variant


@dataclass(frozen=True)
class Sample:
    key: str
    variant: VariantFile
    manifest: ModelManifest
    prompt: Prompt
    sampling: Sampling
    backend_version: str


@dataclass
class Plan:
    device: DeviceProfile
    models: list[tuple[ModelManifest, list[str]]]
    prompts: list[Prompt]
    seeds: list[int]
    sampling: Sampling
    variants: list[tuple[ModelManifest, VariantFile]] = field(default_factory=list)
    backend_versions: dict[str, str] = field(default_factory=dict)
    host_dependencies: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] | None = None  # (i, n): only part i of n of the prompts x seeds (1-based)
    run_metadata: dict[str, Any] = field(default_factory=dict)  # added to the run's metadata (e.g. the fleet's)

    @property
    def size(self) -> int:
        return sum(len(v) for _, v in self.models) * len(self.prompts) * len(self.seeds)


@dataclass(frozen=True)
class ExecuteResult:
    run_id: str
    planned: int
    skipped: int
    written: int
    sample_keys: list[str]
    status: str


def sample_key(variant: VariantFile, backend_version: str, device: str, sampling: Sampling, prompt: Prompt) -> str:
    """Deterministic identity of one generation: same inputs, same key."""
    return keys.sample_key(model=variant.model, variant=variant.variant, backend=variant.backend,
                           model_sha256=variant.sha256, backend_version=backend_version, device=device,
                           sampling=sampling.as_dict(), prompt_id=prompt.id, prompt_sha256=prompt.sha256)


def prepare(plan: Plan, progress: Progress | None = None) -> None:
    """Resolve (derive if needed) every variant file, check it fits the device's memory budget, and read
    each backend's version (which fails with the extra to install when its library is missing)."""
    progress = progress or NoProgress()
    plan.variants = []
    for manifest, variants in plan.models:
        for v in variants:
            vf = resolve_variant(manifest, v, progress.message)
            if vf.size_bytes > plan.device.memory_budget_bytes:
                raise UsageError(
                    f"{manifest.name}:{v} is {vf.size_bytes / 1e9:.2f} GB, over the "
                    f"{plan.device.memory_budget_bytes / 1e9:.2f} GB memory budget of device '{plan.device.name}': "
                    "choose a smaller variant or another device profile"
                )
            plan.variants.append((manifest, vf))
            if vf.backend not in plan.backend_versions:
                plan.backend_versions[vf.backend] = get_backend(vf.backend).version()
    plan.host_dependencies = _host_dependencies(plan)


def in_shard(index: int, shard: tuple[int, int] | None) -> bool:
    """Whether the `index`-th (prompt, seed) of a plan (prompts in order, seeds within each) is in part i of n
    of a plan split with `--shard i/n`: round robin, so the parts differ in size by one at most. Boards that
    split one plan must be given the same prompts, limit and seeds; every variant of a prompt runs on the
    same board."""
    return shard is None or index % shard[1] == shard[0] - 1


def samples(plan: Plan) -> Iterator[Sample]:
    pairs = [(prompt, seed) for prompt in plan.prompts for seed in plan.seeds]
    for manifest, vf in plan.variants:
        bv = plan.backend_versions[vf.backend]
        for index, (prompt, seed) in enumerate(pairs):
            if not in_shard(index, plan.shard):
                continue
            s = Sampling(**{**plan.sampling.as_dict(), "seed": seed})
            yield Sample(sample_key(vf, bv, plan.device.name, s, prompt), vf, manifest, prompt, s, bv)


def process_identity() -> dict[str, Any]:
    """What tells, later, whether the process that started a run still runs: host, pid, start time."""
    import psutil

    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "create_time": psutil.Process(pid).create_time()}


def run_metadata(plan: Plan, telemetry_missing: dict[str, str]) -> dict[str, Any]:
    from harness import __version__
    from harness.devices import cpu_flags, detect_host

    host = detect_host().as_dict()
    host["cpu_flags"] = cpu_flags()
    versions = {"harness": __version__, "python": platform.python_version(), **plan.backend_versions}
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
        "process": process_identity(),
        **(plan.host_dependencies or _host_dependencies(plan)),
        **({"shard": {"part": plan.shard[0], "of": plan.shard[1], "plan": _plan_fingerprint(plan)}}
           if plan.shard else {}),
        **plan.run_metadata,
    }


def _plan_fingerprint(plan: Plan) -> str:
    """What the boards of a split plan must share: the prompts in order and the seeds."""
    return keys.text_sha256("\n".join([*(f"{p.id}:{p.sha256}" for p in plan.prompts), *map(str, plan.seeds)]))[:16]


def _host_dependencies(plan: Plan) -> dict[str, Any]:
    """Power mode, thermal state, CPU governors and onnxruntime providers: what else a result depends on.

    For ONNX variants this also checks the device's execution providers (UsageError when none is
    installed); `prepare` runs it before the store is opened, so bad input leaves the store untouched.
    """
    from harness.telemetry.host_state import host_state

    out: dict[str, Any] = {"host_state": host_state()}
    if any(vf.backend == "onnx" for _, vf in plan.variants):
        from harness.backends.onnx import check_providers

        out["onnx_providers"] = check_providers(plan.device)
    return out


def _bandwidth_fraction(vf: VariantFile, decode_tps: float | None, device: DeviceProfile) -> float | None:
    """Achieved weight-read bandwidth during decode over the device's peak (roofline)."""
    if not decode_tps or not device.peak_bandwidth_gbps:
        return None
    from harness.roofline import bytes_per_token, fraction_of_bound

    return fraction_of_bound(decode_tps, bytes_per_token(vf), device.peak_bandwidth_gbps)


def measure(backend: Backend, sample: Sample, device: DeviceProfile, sources: list[TelemetrySource],
            run_id: str) -> Generation:
    """Generate one sample and return its record."""
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
    decode_tps = ((n_stream - 1) / (t_last - t_first)
                  if t_first is not None and t_last is not None and n_stream > 1 and t_last > t_first else None)
    n_prompt = res.n_prompt_tokens if res else None
    vf = sample.variant
    return Generation(
        sample_key=sample.key,
        run_id=run_id,
        device=device.name,
        model=vf.model,
        variant=vf.variant,
        backend=vf.backend,
        backend_version=sample.backend_version,
        model_sha256=vf.sha256,
        model_size_bytes=vf.size_bytes,
        prompt_set=sample.prompt.prompt_set,
        prompt_id=sample.prompt.id,
        category=sample.prompt.category,
        benign=sample.prompt.benign,
        prompt=sample.prompt.text,
        prompt_sha256=sample.prompt.sha256,
        seed=sample.sampling.seed,
        temperature=sample.sampling.temperature,
        max_tokens=sample.sampling.max_tokens,
        output=res.output if res else None,
        finish_reason=res.finish_reason if res else "error",
        n_prompt_tokens=n_prompt,
        n_output_tokens=res.n_output_tokens if res else None,
        ttft_s=ttft,
        prompt_tps=(n_prompt / ttft) if (n_prompt and ttft) else None,
        decode_tps=decode_tps,
        latency_s=t_end - t0,
        peak_rss_bytes=mem.reading.peak_rss_bytes if mem.reading else None,
        peak_vram_bytes=tel.peak_vram_bytes,
        energy_j=tel.energy_j,
        energy_source=tel.source or None,
        bandwidth_fraction=_bandwidth_fraction(vf, decode_tps, device),
        backend_timings={**(res.timings if res else {}), "n_streamed_tokens": n_stream,
                         "rss_method": mem.reading.method if mem.reading else None},
        settings={"sampling": sample.sampling.as_dict(), "threads": device.resolved_threads(),
                  "n_ctx": device.n_ctx, "n_batch": device.n_batch, "n_gpu_layers": device.n_gpu_layers},
        error=error,
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def execute(plan: Plan, store: Store, progress: Progress | None = None, command: str = "",
            finish: bool = True, done_elsewhere: Collection[str] = ()) -> ExecuteResult:
    """Run every sample of the plan not yet in the store (nor in `done_elsewhere`: keys another store
    holds, e.g. the main store of a fleet run whose shard this is).

    The run's row is `running` until its last stage: with `finish=False` the caller (which judges and
    reports next) marks it finished; on an error it is `failed`, on Ctrl-C `interrupted`.
    """
    progress = progress or NoProgress()
    if not plan.variants:
        prepare(plan, progress)
    all_samples = list(samples(plan))
    done_keys = store.done_sample_keys()
    todo = [s for s in all_samples if s.key not in done_keys and s.key not in done_elsewhere]
    run_id = new_run_id()
    sources, missing = open_sources(plan.device)
    metadata = run_metadata(plan, missing)
    store.put(Run(run_id=run_id, started_at=time.time(), status="running", command=command,
                  device=plan.device.name, planned=len(all_samples), metadata=metadata))
    progress.start(len(all_samples), "generating", len(all_samples) - len(todo))
    status = "failed"
    written = 0
    try:
        by_variant: dict[str, list[Sample]] = {}
        for s in todo:
            by_variant.setdefault(f"{s.variant.model}:{s.variant.variant}", []).append(s)
        for group in by_variant.values():
            written += _run_variant(group, plan.device, store, sources, run_id, progress)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        for src in sources:
            src.close()
        progress.stop()
        if status != "finished" or finish:
            store.finish_run(run_id, status)
    return ExecuteResult(run_id, len(all_samples), len(all_samples) - len(todo), written,
                         [s.key for s in all_samples], status)


def _run_variant(group: list[Sample], device: DeviceProfile, store: Store, sources: list[TelemetrySource],
                 run_id: str, progress: Progress) -> int:
    """Load one variant, generate its samples, commit each as it finishes; returns the samples written."""
    first = group[0]
    vf = first.variant
    backend = get_backend(vf.backend)
    rss_before = current_rss_bytes()
    progress.message(f"loading {vf.model}:{vf.variant} ({vf.size_bytes / 1e6:.0f} MB)")
    t0 = time.perf_counter()
    load_meta = backend.load(vf, device, first.manifest)
    load_s = time.perf_counter() - t0
    store.put(ModelLoad(run_id=run_id, model=vf.model, variant=vf.variant, backend=vf.backend, device=device.name,
                        model_path=str(vf.path), model_sha256=vf.sha256, model_size_bytes=vf.size_bytes,
                        load_s=load_s, rss_before_bytes=rss_before, rss_after_load_bytes=current_rss_bytes(),
                        metadata={**load_meta, "backend_version": first.backend_version}))
    written = 0
    try:
        for s in group:
            g = measure(backend, s, device, sources, run_id)
            store.put(g)
            written += 1
            label = f"{g.model}:{g.variant}"
            progress.advance(1, f"{label} {g.decode_tps:.0f} tok/s" if g.decode_tps else
                             f"{label} (error)" if g.error else label)
    finally:
        backend.close()
    return written


def command_line() -> str:
    return " ".join(["harness", *sys.argv[1:]])
