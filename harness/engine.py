"""The run engine: a plan of device x model variants x prompts x seeds, executed resumably.

Every sample has a deterministic key (harness.keys.sample_key); a sample whose key is already in
the store without an error is skipped, so re-running the same command after a crash or Ctrl-C
finishes the rest. Each model variant is loaded once, every finished sample is committed at
once, and the engine (not the backend) times the token stream and samples memory and telemetry
around it. The whole plan is resolved and checked (variants derived, memory budget, providers)
before the run's row is written, so bad input leaves the store untouched.

Measurement validity (harness.telemetry.interference): every measurement records what else used the
machine (other processes' share of the CPUs, steal, clock, heat, throttling) and is flagged `contended`
when others took more than the threshold (the device profile's `contention_threshold`, or the run's).
The first sample after a variant is loaded is its warm-up: measured once, stored flagged `warmup`.
`MeasurePolicy` says how often a sample's cost is measured (`repeat`) and what a contended measurement
leads to: `record` keeps it flagged, `remeasure` measures again at once, `wait` waits for the machine to
calm down and then measures again (both up to MAX_REMEASURE more times; a wait that runs out,
WAIT_TIMEOUT_S, ends the sample's re-measuring: it is recorded flagged). The output is always the first
generation's; with several measurements the sample's cost is the median of its uncontended ones, and
every measurement is kept in `Generation.measurements`. Warnings about the host (more threads than
allowed cores, a governor other than performance, a Jetson without fixed clocks) go to the progress
before anything runs.
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
from harness.backends import Backend, BackendResult, Sampling, get_backend
from harness.devices import DeviceProfile
from harness.errors import UsageError
from harness.progress import NoProgress, Progress
from harness.prompts import Prompt
from harness.records import Generation, ModelLoad, Run
from harness.stats import median
from harness.store import Store
from harness.telemetry import TelemetryReading, TelemetrySource, merge_readings, open_sources
from harness.telemetry.interference import HostMonitor, HostReading, contended, wait_for_calm
from harness.trackers import PeakRSSTracker, current_rss_bytes
from harness.variants import ModelManifest, VariantFile, resolve_variant
from harness.version import __version__

ON_CONTENTION = ("record", "remeasure", "wait")
MAX_REMEASURE = 3  # more measurements of a contended one, under `remeasure` and `wait`
WAIT_TIMEOUT_S = 60.0  # `wait`: the longest wait for a calm machine; after that the sample is recorded as it is
MAX_REPEAT = 100


@dataclass(frozen=True)
class MeasurePolicy:
    """How each sample's cost is measured (harness run --repeat / --on-contention / --contention-threshold)."""

    repeat: int = 1
    on_contention: str = "record"  # record | remeasure | wait
    contention_threshold: float | None = None  # None: the device profile's
    max_remeasure: int = MAX_REMEASURE
    wait_timeout_s: float = WAIT_TIMEOUT_S

    def threshold(self, device: DeviceProfile) -> float:
        return self.contention_threshold if self.contention_threshold is not None else device.contention_threshold

    def check(self) -> MeasurePolicy:
        if self.on_contention not in ON_CONTENTION:
            raise UsageError(f"--on-contention {self.on_contention!r} is unknown: choose {', '.join(ON_CONTENTION)}")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or not 1 <= self.repeat <= MAX_REPEAT:
            raise UsageError(f"--repeat must be a whole number from 1 to {MAX_REPEAT}, not {self.repeat!r}")
        if self.contention_threshold is not None:
            from harness.devices import check_contention_threshold

            check_contention_threshold(self.contention_threshold, "--contention-threshold")
        return self

    def as_dict(self, device: DeviceProfile) -> dict[str, Any]:
        return {"repeat": self.repeat, "on_contention": self.on_contention,
                "contention_threshold": self.threshold(device), "max_remeasure": self.max_remeasure,
                "wait_timeout_s": self.wait_timeout_s}


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
    policy: MeasurePolicy = field(default_factory=MeasurePolicy)
    warnings: list[str] = field(default_factory=list)

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
    plan.policy.check()
    plan.variants = []
    for manifest, variants in plan.models:
        for v in variants:
            vf = resolve_variant(manifest, v, progress.message, reporter=progress)
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
    from harness.telemetry.host_state import host_warnings

    plan.warnings = host_warnings(plan.device)
    for w in plan.warnings:
        progress.message(f"warning: {w}")


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


def run_metadata(plan: Plan, telemetry_missing: dict[str, str], monitor: HostMonitor | None = None
                 ) -> dict[str, Any]:
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
        "measurement": {**plan.policy.as_dict(plan.device), "host_readers": monitor.sources() if monitor else None,
                        "warnings": list(plan.warnings)},
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


@dataclass
class Attempt:
    """One timed generation of a sample: what the stream, the trackers and the host said."""

    result: BackendResult | None
    error: str | None
    ttft_s: float | None
    decode_tps: float | None
    latency_s: float
    n_streamed: int
    peak_rss_bytes: int | None
    rss_method: str | None
    telemetry: TelemetryReading
    host: HostReading | None
    contended: bool | None = None
    waited_s: float | None = None

    @property
    def prompt_tps(self) -> float | None:
        n = self.result.n_prompt_tokens if self.result else None
        return n / self.ttft_s if n and self.ttft_s else None

    @property
    def interference_frac(self) -> float | None:
        return self.host.interference_frac if self.host else None

    @property
    def cpu_steal_frac(self) -> float | None:
        return self.host.cpu_steal_frac if self.host else None

    @property
    def cpu_mhz(self) -> float | None:
        if self.telemetry.cpu_mhz is not None:
            return self.telemetry.cpu_mhz
        return self.host.cpu_mhz if self.host else None

    @property
    def temp_c(self) -> float | None:
        temps = [t for t in (self.telemetry.temp_c, self.host.temp_c if self.host else None) if t is not None]
        return max(temps) if temps else None

    @property
    def throttled(self) -> bool | None:
        return self.host.throttled if self.host else None


def measure_once(backend: Backend, sample: Sample, sources: list[TelemetrySource],
                 monitor: HostMonitor | None = None, threshold: float | None = None) -> Attempt:
    """Generate one sample once, timing the token stream and reading memory, telemetry and the host around it."""
    error = None
    t_first = t_last = None
    n_stream = 0
    if monitor is not None:
        monitor.start()
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
    host = monitor.stop() if monitor is not None else None
    res = None if error else backend.finish()
    decode_tps = ((n_stream - 1) / (t_last - t_first)
                  if t_first is not None and t_last is not None and n_stream > 1 and t_last > t_first else None)
    a = Attempt(res, error, (t_first - t0) if t_first is not None else None, decode_tps, t_end - t0, n_stream,
                mem.reading.peak_rss_bytes if mem.reading else None, mem.reading.method if mem.reading else None,
                tel, host)
    if threshold is not None:
        a.contended = contended(a.interference_frac, a.cpu_steal_frac, threshold)
    return a


def measure(backend: Backend, sample: Sample, device: DeviceProfile, sources: list[TelemetrySource],
            run_id: str, monitor: HostMonitor | None = None) -> Generation:
    """Generate one sample, measured once, and return its record (no warm-up or contention handling)."""
    a = measure_once(backend, sample, sources, monitor, device.contention_threshold)
    return build_generation(sample, device, run_id, [(0, a)], warmup=False, policy=MeasurePolicy())


def measure_sample(backend: Backend, sample: Sample, device: DeviceProfile, sources: list[TelemetrySource],
                   run_id: str, monitor: HostMonitor | None, policy: MeasurePolicy, warmup: bool,
                   progress: Progress, busy_before: bool = False) -> Generation:
    """Measure one sample as the policy says (see the module docstring) and return its record."""
    threshold = policy.threshold(device)

    gave_up = False

    def calm_down() -> float | None:
        nonlocal gave_up
        if monitor is None:
            return None
        calm, waited, last = wait_for_calm(monitor, threshold, policy.wait_timeout_s)
        gave_up = gave_up or not calm
        if not calm:
            share = f"{(last.interference_frac or 0) + (last.cpu_steal_frac or 0):.0%}" if last else "?"
            progress.message(f"the machine is still busy after {waited:.1f} s (others use {share} of it): "
                             "measuring anyway, flagged if contended")
        elif waited > 2 * (last.window_s if last and last.window_s else 0.5):
            progress.message(f"waited {waited:.1f} s for the machine to calm down")
        return waited

    attempts: list[tuple[int, Attempt]] = []
    n_repeat = 1 if warmup else policy.repeat
    retry = policy.on_contention in ("remeasure", "wait") and not warmup
    wait = policy.on_contention == "wait" and not warmup
    busy = busy_before
    for i in range(n_repeat):
        waited = calm_down() if wait and busy else None
        a = measure_once(backend, sample, sources, monitor, threshold)
        a.waited_s = waited
        attempts.append((i, a))
        if a.error:
            break
        extra = 0
        while retry and a.contended and extra < policy.max_remeasure and not gave_up:
            waited = calm_down() if wait else None
            a = measure_once(backend, sample, sources, monitor, threshold)
            a.waited_s = waited
            attempts.append((i, a))
            extra += 1
            if a.error:
                break
        busy = bool(a.contended)
        if a.error:
            break
    return build_generation(sample, device, run_id, attempts, warmup=warmup, policy=policy)


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _any(values: list[bool | None]) -> bool | None:
    known = [v for v in values if v is not None]
    return any(known) if known else None


def build_generation(sample: Sample, device: DeviceProfile, run_id: str, attempts: list[tuple[int, Attempt]],
                     warmup: bool, policy: MeasurePolicy) -> Generation:
    """The record of a sample from its measurements: the first one's output, the median cost of the
    uncontended ones (of all, when every one was contended), every measurement when there were several."""
    vf = sample.variant
    first = attempts[0][1]
    ok = [a for _, a in attempts if a.error is None]
    valid = [a for a in ok if not a.contended]
    basis = valid or ok or [first]
    res = first.result
    decode_tps = median(a.decode_tps for a in basis)
    flag: bool | None
    if not ok or all(a.contended is None for a in ok):
        flag = None
    else:
        flag = not valid
    rss = [a.peak_rss_bytes for a in ok or [first] if a.peak_rss_bytes is not None]
    vram = [a.telemetry.peak_vram_bytes for a in ok if a.telemetry.peak_vram_bytes is not None]
    energies = [a.telemetry.energy_j for a in basis]
    energy = median(energies)
    sources = sorted({a.telemetry.source for a in basis if a.telemetry.source})
    entries = None
    if len(attempts) > 1:
        out0 = res.output if res else None
        entries = []
        for i, a in attempts:
            n_out = a.result.n_output_tokens if a.result else None
            entries.append({
                "repeat": i, "ttft_s": a.ttft_s, "prompt_tps": a.prompt_tps, "decode_tps": a.decode_tps,
                "latency_s": a.latency_s, "n_output_tokens": n_out, "peak_rss_bytes": a.peak_rss_bytes,
                "peak_vram_bytes": a.telemetry.peak_vram_bytes, "energy_j": a.telemetry.energy_j,
                "energy_j_per_token": (a.telemetry.energy_j / n_out
                                       if a.telemetry.energy_j is not None and n_out else None),
                "bandwidth_fraction": _bandwidth_fraction(vf, a.decode_tps, device),
                "interference_frac": a.interference_frac, "cpu_steal_frac": a.cpu_steal_frac,
                "cpu_mhz": a.cpu_mhz, "temp_c": a.temp_c, "throttled": a.throttled, "contended": a.contended,
                "waited_s": a.waited_s, "same_output": (a.result.output == out0) if a.result else None,
                "error": a.error,
            })
    n_prompt = res.n_prompt_tokens if res else None
    ttft = median(a.ttft_s for a in basis)
    waited = [a.waited_s for _, a in attempts if a.waited_s]
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
        template_id=sample.prompt.template_id,
        axis=sample.prompt.axis,
        group_name=sample.prompt.group,
        seed=sample.sampling.seed,
        temperature=sample.sampling.temperature,
        max_tokens=sample.sampling.max_tokens,
        output=res.output if res else None,
        finish_reason=res.finish_reason if res else "error",
        n_prompt_tokens=n_prompt,
        n_output_tokens=res.n_output_tokens if res else None,
        ttft_s=ttft,
        prompt_tps=median(a.prompt_tps for a in basis),
        decode_tps=decode_tps,
        latency_s=median(a.latency_s for a in basis),
        peak_rss_bytes=max(rss) if rss else None,
        peak_vram_bytes=max(vram) if vram else None,
        energy_j=energy,
        energy_source="+".join(sources) or None,
        bandwidth_fraction=_bandwidth_fraction(vf, decode_tps, device),
        backend_timings={**(res.timings if res else {}), "n_streamed_tokens": first.n_streamed,
                         "rss_method": first.rss_method, **({"waited_for_calm_s": sum(waited)} if waited else {})},
        settings={"sampling": sample.sampling.as_dict(), "threads": device.resolved_threads(),
                  "n_ctx": device.n_ctx, "n_batch": device.n_batch, "n_gpu_layers": device.n_gpu_layers,
                  "measurement": policy.as_dict(device)},
        error=first.error,
        interference_frac=_max([a.interference_frac for a in basis]),
        cpu_steal_frac=_max([a.cpu_steal_frac for a in basis]),
        cpu_mhz=median(a.cpu_mhz for a in basis),
        temp_c=_max([a.temp_c for a in basis]),
        throttled=_any([a.throttled for a in basis]),
        contended=flag,
        warmup=warmup,
        repeats=1 if warmup else policy.repeat,
        measurements=entries,
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
    monitor = HostMonitor()
    metadata = run_metadata(plan, missing, monitor)
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
            written += _run_variant(group, plan.device, store, sources, run_id, progress, monitor, plan.policy)
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
                 run_id: str, progress: Progress, monitor: HostMonitor | None = None,
                 policy: MeasurePolicy | None = None) -> int:
    """Load one variant, generate its samples (the first as its warm-up), commit each as it finishes; returns
    the samples written."""
    policy = policy or MeasurePolicy()
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
    busy = False
    try:
        for i, s in enumerate(group):
            g = measure_sample(backend, s, device, sources, run_id, monitor, policy, warmup=i == 0,
                               progress=progress, busy_before=busy)
            busy = bool(g.contended)
            store.put(g)
            written += 1
            label = f"{g.model}:{g.variant}"
            flags = " (warm-up)" if g.warmup else " (contended)" if g.contended else ""
            progress.advance(1, f"{label} {g.decode_tps:.0f} tok/s{flags}" if g.decode_tps else
                             f"{label} (error)" if g.error else label)
    finally:
        backend.close()
    return written


def command_line() -> str:
    return " ".join(["harness", *sys.argv[1:]])
