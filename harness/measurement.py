"""Measuring one sample: the timed token stream, the policy's repeats and re-measurements, and the sample's record.

Each generation of a sample is timed by the engine (not the backend), with memory, telemetry and what else used
the machine read around it, and kept as a frozen `Measurement`. `MeasurePolicy` says how many measurements a
sample gets and what a contended one leads to (see harness.engine's docstring); `build_generation` turns a
sample's measurements into its `Generation`: the first one's output, the median cost of the uncontended ones
(of all, when every one was contended), every measurement when there were several.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from harness import keys
from harness.attacks import Framing, decode_answer
from harness.backends import Backend, BackendResult, BatchThroughput, Sampling, SequenceResult
from harness.devices import DeviceProfile
from harness.errors import UsageError
from harness.progress import Progress
from harness.prompts import Prompt
from harness.records import Generation
from harness.stats import median
from harness.telemetry import TelemetryReading, TelemetrySource, merge_readings
from harness.telemetry.interference import HostMonitor, HostReading, contended, wait_for_calm
from harness.trackers import PeakRSSTracker
from harness.variants import ModelManifest, VariantFile

if TYPE_CHECKING:
    from harness.backends.prompt_format import ModelInput

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
    """One planned generation: its key, the variant that makes it, the prompt and the sampling (with its seed)."""

    key: str
    variant: VariantFile
    manifest: ModelManifest
    prompt: Prompt
    sampling: Sampling
    backend_version: str
    framing: Framing = Framing()  # the system prompt and attack it is put under (the plain request: none)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The turns sent to the model."""
        return self.framing.messages(self.prompt.text, self.prompt.history)[0]

    @property
    def model_input(self) -> str | list[dict[str, str]]:
        """What the backend is given: the last user turn's text when it is the only turn (the request as always
        before, or an attack's rewrite of it), else the turns."""
        messages = self.messages
        if len(messages) == 1 and messages[0]["role"] == "user":
            return messages[0]["content"]  # the request, or an attack's rewrite of it
        return messages


@dataclass(frozen=True)
class Measurement:
    """One measured generation of a sample: its output and what it cost, with what else used the machine.

    `measure_once` builds it from a timed token stream; a generation that serves several samples at once (a
    batch) builds one per sample from its own figures. `build_generation` reads nothing else.
    """

    repeat: int  # which of the policy's repeats (a re-measurement of a contended one shares its number)
    result: BackendResult | None  # the output and the backend's counts; None when the generation failed
    error: str | None
    ttft_s: float | None
    decode_tps: float | None
    latency_s: float
    n_streamed: int
    peak_rss_bytes: int | None
    rss_method: str | None
    peak_vram_bytes: int | None = None
    energy_j: float | None = None
    energy_source: str | None = None  # the telemetry source(s) that read energy and VRAM
    interference_frac: float | None = None
    cpu_steal_frac: float | None = None
    cpu_mhz: float | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    contended: bool | None = None  # None: the host does not say (or no threshold was applied)
    waited_s: float | None = None  # waited for a calm machine before it

    @property
    def output(self) -> str | None:
        return self.result.output if self.result else None

    @property
    def n_output_tokens(self) -> int | None:
        return self.result.n_output_tokens if self.result else None

    @property
    def prompt_tps(self) -> float | None:
        n = self.result.n_prompt_tokens if self.result else None
        return n / self.ttft_s if n and self.ttft_s else None

    @property
    def energy_j_per_token(self) -> float | None:
        n = self.n_output_tokens
        return self.energy_j / n if self.energy_j is not None and n else None

    def entry(self, bandwidth_fraction: float | None, first_output: str | None) -> dict[str, Any]:
        """As `Generation.measurements` stores it."""
        return {
            "repeat": self.repeat, "ttft_s": self.ttft_s, "prompt_tps": self.prompt_tps, "decode_tps": self.decode_tps,
            "latency_s": self.latency_s, "n_output_tokens": self.n_output_tokens,
            "peak_rss_bytes": self.peak_rss_bytes, "peak_vram_bytes": self.peak_vram_bytes,
            "energy_j": self.energy_j, "energy_j_per_token": self.energy_j_per_token,
            "bandwidth_fraction": bandwidth_fraction, "interference_frac": self.interference_frac,
            "cpu_steal_frac": self.cpu_steal_frac, "cpu_mhz": self.cpu_mhz, "temp_c": self.temp_c,
            "throttled": self.throttled, "contended": self.contended, "waited_s": self.waited_s,
            "same_output": (self.result.output == first_output) if self.result else None, "error": self.error,
        }


def _host_figures(tel: TelemetryReading, host: HostReading | None) -> dict[str, Any]:
    """The machine's state over a measurement, from the telemetry sources and the host monitor."""
    temps = [t for t in (tel.temp_c, host.temp_c if host else None) if t is not None]
    return {"peak_vram_bytes": tel.peak_vram_bytes, "energy_j": tel.energy_j, "energy_source": tel.source or None,
            "interference_frac": host.interference_frac if host else None,
            "cpu_steal_frac": host.cpu_steal_frac if host else None,
            "cpu_mhz": tel.cpu_mhz if tel.cpu_mhz is not None else host.cpu_mhz if host else None,
            "temp_c": max(temps) if temps else None, "throttled": host.throttled if host else None}


def measure_once(backend: Backend, sample: Sample, sources: list[TelemetrySource],
                 monitor: HostMonitor | None = None, threshold: float | None = None, repeat: int = 0) -> Measurement:
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
            for _ in backend.stream(sample.model_input, sample.sampling):
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
    decode_tps = ((n_stream - 1) / (t_last - t_first)
                  if t_first is not None and t_last is not None and n_stream > 1 and t_last > t_first else None)
    m = Measurement(repeat, None if error else backend.finish(), error,
                    (t_first - t0) if t_first is not None else None, decode_tps, t_end - t0, n_stream,
                    mem.reading.peak_rss_bytes if mem.reading else None, mem.reading.method if mem.reading else None,
                    **_host_figures(tel, host))
    if threshold is not None:
        m = replace(m, contended=contended(m.interference_frac, m.cpu_steal_frac, threshold))
    return m


def measure(backend: Backend, sample: Sample, device: DeviceProfile, sources: list[TelemetrySource],
            run_id: str, monitor: HostMonitor | None = None) -> Generation:
    """Generate one sample, measured once, and return its record (no warm-up or contention handling)."""
    m = measure_once(backend, sample, sources, monitor, device.contention_threshold)
    return build_generation(sample, device, run_id, [m], warmup=False, policy=MeasurePolicy())


class Measurer:
    """Measures the samples of one loaded variant as the policy says (see harness.engine's docstring)."""

    def __init__(self, backend: Backend, device: DeviceProfile, sources: list[TelemetrySource],
                 monitor: HostMonitor | None, policy: MeasurePolicy, progress: Progress) -> None:
        self.backend, self.device, self.sources, self.monitor = backend, device, sources, monitor
        self.policy, self.progress = policy, progress
        self.threshold = policy.threshold(device)
        self.gave_up = False  # a wait for calm ran out: no more re-measuring this sample

    def sample(self, sample: Sample, run_id: str, warmup: bool, busy_before: bool = False) -> Generation:
        """Measure one sample (a warm-up once) and return its record."""
        self.gave_up = False
        wait = self.policy.on_contention == "wait" and not warmup
        retry = self.policy.on_contention in ("remeasure", "wait") and not warmup
        measurements: list[Measurement] = []
        busy = busy_before
        for i in range(1 if warmup else self.policy.repeat):
            m = self._once(sample, i, wait and busy)
            measurements.append(m)
            extra = 0
            while not m.error and retry and m.contended and extra < self.policy.max_remeasure and not self.gave_up:
                m = self._once(sample, i, wait)
                measurements.append(m)
                extra += 1
            busy = bool(m.contended)
            if m.error:
                break
        return build_generation(sample, self.device, run_id, measurements, warmup=warmup, policy=self.policy)

    def _once(self, sample: Sample, repeat: int, calm_first: bool) -> Measurement:
        waited = self._calm_down() if calm_first else None
        m = measure_once(self.backend, sample, self.sources, self.monitor, self.threshold, repeat)
        return replace(m, waited_s=waited)

    def _calm_down(self) -> float | None:
        """Wait for the machine to calm down (up to the policy's timeout); the seconds waited."""
        if self.monitor is None:
            return None
        calm, waited, last = wait_for_calm(self.monitor, self.threshold, self.policy.wait_timeout_s)
        self.gave_up = self.gave_up or not calm
        if not calm:
            share = f"{(last.interference_frac or 0) + (last.cpu_steal_frac or 0):.0%}" if last else "?"
            self.progress.message(f"the machine is still busy after {waited:.1f} s (others use {share} of it): "
                                  "measuring anyway, flagged if contended")
        elif waited > 2 * (last.window_s if last and last.window_s else 0.5):
            self.progress.message(f"waited {waited:.1f} s for the machine to calm down")
        return waited


def bandwidth_fraction(vf: VariantFile, decode_tps: float | None, device: DeviceProfile) -> float | None:
    """Achieved weight-read bandwidth during decode over the device's peak (roofline)."""
    if not decode_tps or not device.peak_bandwidth_gbps:
        return None
    from harness.roofline import bytes_per_token, fraction_of_bound

    return fraction_of_bound(decode_tps, bytes_per_token(vf), device.peak_bandwidth_gbps)


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _any(values: list[bool | None]) -> bool | None:
    known = [v for v in values if v is not None]
    return any(known) if known else None


def _cost(sample: Sample, device: DeviceProfile, measurements: list[Measurement]) -> dict[str, Any]:
    """A sample's cost fields: medians over the uncontended measurements that did not fail (over the contended
    ones when every one was, over the first when all failed), peaks over those that did not fail."""
    first = measurements[0]
    ok = [m for m in measurements if m.error is None]
    valid = [m for m in ok if not m.contended]
    basis = valid or ok or [first]
    decode_tps = median(m.decode_tps for m in basis)
    rss = [m.peak_rss_bytes for m in ok or [first] if m.peak_rss_bytes is not None]
    vram = [m.peak_vram_bytes for m in ok if m.peak_vram_bytes is not None]
    sources = sorted({m.energy_source for m in basis if m.energy_source})
    return {
        "ttft_s": median(m.ttft_s for m in basis), "prompt_tps": median(m.prompt_tps for m in basis),
        "decode_tps": decode_tps, "latency_s": median(m.latency_s for m in basis),
        "peak_rss_bytes": max(rss) if rss else None, "peak_vram_bytes": max(vram) if vram else None,
        "energy_j": median(m.energy_j for m in basis), "energy_source": "+".join(sources) or None,
        "bandwidth_fraction": bandwidth_fraction(sample.variant, decode_tps, device),
        "interference_frac": _max([m.interference_frac for m in basis]),
        "cpu_steal_frac": _max([m.cpu_steal_frac for m in basis]), "cpu_mhz": median(m.cpu_mhz for m in basis),
        "temp_c": _max([m.temp_c for m in basis]), "throttled": _any([m.throttled for m in basis]),
        "contended": None if not ok or all(m.contended is None for m in ok) else not valid,
    }


def _identity(sample: Sample, device: DeviceProfile, run_id: str) -> dict[str, Any]:
    """What a sample's record says of what was generated: the variant, the prompt, the sampling."""
    vf, prompt = sample.variant, sample.prompt
    return {"sample_key": sample.key, "run_id": run_id, "device": device.name, "model": vf.model,
            "variant": vf.variant, "backend": vf.backend, "backend_version": sample.backend_version,
            "model_sha256": vf.sha256, "model_size_bytes": vf.size_bytes, "prompt_set": prompt.prompt_set,
            "prompt_id": prompt.id, "category": prompt.category, "benign": prompt.benign, "prompt": prompt.text,
            "prompt_sha256": keys.input_sha256(sample.messages), "template_id": prompt.template_id,
            "axis": prompt.axis, "group_name": prompt.group, "seed": sample.sampling.seed,
            "temperature": sample.sampling.temperature, "max_tokens": sample.sampling.max_tokens,
            **_framing(sample)}


def _framing(sample: Sample) -> dict[str, Any]:
    """What a record says of how its request was put: the system prompt, earlier turns, the rewritten last turn,
    the attack (only what applies, so a plain sample's record is as it always was)."""
    f = sample.framing
    messages, sent = f.messages(sample.prompt.text, sample.prompt.history)
    out: dict[str, Any] = {}
    if f.system_prompt is not None:
        out["system_prompt"] = f.system_prompt
    elif messages[0]["role"] == "system":
        out["system_prompt"] = messages[0]["content"]
    earlier = [m for m in messages[:-1] if m["role"] != "system"]
    if earlier:
        out["history"] = earlier
    if sent != sample.prompt.text:
        out["sent_prompt"] = sent
    if f.attack is not None:
        out.update(attack=f.attack.name, attack_sha256=f.attack.sha256)
    if f.attack_round is not None:
        out["attack_round"] = f.attack_round
    return out


class FoldsSystem(Protocol):
    """What `with_model_facts` asks of a loaded model: a single-stream backend or a batched generator."""

    def system_folded(self, prompt: ModelInput) -> bool | None: ...


def with_model_facts(g: Generation, sample: Sample, backend: FoldsSystem) -> Generation:
    """The record completed with what depends on the loaded model: whether its template folded the system prompt,
    and the answer decoded for judges when the attack asked for an encoded one."""
    changes: dict[str, Any] = {}
    if g.system_prompt is not None:
        changes["system_folded"] = backend.system_folded(sample.model_input)
    answer = sample.framing.attack.apply("").answer_encoding if sample.framing.attack is not None else None
    if answer is not None and g.output is not None:
        changes["judged_output"] = decode_answer(g.output, answer)
    return replace(g, **changes) if changes else g


def build_generation(sample: Sample, device: DeviceProfile, run_id: str, measurements: list[Measurement],
                     warmup: bool, policy: MeasurePolicy) -> Generation:
    """The record of a sample from its measurements: the first one's output, the median cost of the
    uncontended ones (of all, when every one was contended), every measurement when there were several."""
    first = measurements[0]
    res = first.result
    waited = [m.waited_s for m in measurements if m.waited_s]
    entries = ([m.entry(bandwidth_fraction(sample.variant, m.decode_tps, device), first.output)
                for m in measurements] if len(measurements) > 1 else None)
    return Generation(
        **_identity(sample, device, run_id),
        output=first.output,
        finish_reason=res.finish_reason if res else "error",
        n_prompt_tokens=res.n_prompt_tokens if res else None,
        n_output_tokens=res.n_output_tokens if res else None,
        **_cost(sample, device, measurements),
        backend_timings={**(res.timings if res else {}), "n_streamed_tokens": first.n_streamed,
                         "rss_method": first.rss_method, **({"waited_for_calm_s": sum(waited)} if waited else {})},
        settings={"sampling": sample.sampling.as_dict(), "threads": device.resolved_threads(),
                  "n_ctx": device.n_ctx, "n_batch": device.n_batch, "n_gpu_layers": device.n_gpu_layers,
                  "measurement": policy.as_dict(device)},
        error=first.error,
        warmup=warmup,
        repeats=1 if warmup else policy.repeat,
        measurements=entries,
        made_by="single",
        batch_size=1,
    )


def build_batched_generation(sample: Sample, device: DeviceProfile, run_id: str, result: SequenceResult | None,
                             throughput: BatchThroughput | None, batch_size: int, error: str | None = None
                             ) -> Generation:
    """The record of a sample generated in a batch (harness run --batch): its output and counts, how it was made,
    and the batch's throughput (generated tokens per second over the whole batch). No cost field is set: a batch
    is not one user's request, so TTFT, decode speed, latency, memory and energy stay None (cost is measured
    single-stream, on the run's cost sample)."""
    tps = throughput.batch_generated_tps if throughput is not None else None
    timings = ({"batch_generated_tps": tps, "batch_sequences": throughput.n_sequences,
                "batch_generated_tokens": throughput.n_generated_tokens, "batch_wall_s": throughput.batch_wall_s,
                "batch_decode_calls": throughput.n_decode_calls} if throughput is not None else {})
    return Generation(
        **_identity(sample, device, run_id),
        output=result.text if result else None,
        finish_reason=result.finish_reason if result else "error",
        n_prompt_tokens=result.n_prompt_tokens if result else None,
        n_output_tokens=result.n_output_tokens if result else None,
        backend_timings=timings,
        settings={"sampling": sample.sampling.as_dict(), "threads": device.resolved_threads(),
                  "n_ctx": device.n_ctx, "n_batch": device.n_batch, "n_gpu_layers": device.n_gpu_layers,
                  "batch_size": batch_size},
        error=error,
        warmup=False,
        made_by="batched",
        batch_size=batch_size,
        batch_generated_tps=tps,
    )

