"""The run engine: a `RunSpec` (model variants x prompts x seeds, and its settings) on a device, executed resumably.

Every sample has a deterministic key (harness.keys.sample_key); a sample whose key is already in
the store without an error is skipped, so re-running the same command after a crash or Ctrl-C
finishes the rest. Each model variant is loaded once, every finished sample is committed at
once, and the engine (not the backend) times the token stream and samples memory and telemetry
around it (harness.measurement). The whole plan is resolved and checked (variants derived, memory budget, providers)
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

Batched runs (`RunSpec.batch`, harness run --batch N|auto): each variant's samples are generated up to N at a time
by its batched generator (harness.backends.llama_batch, .onnx_batch: continuous batching, each sequence with its own
sampling and seed), except its cost sample: a seeded sample of the variant's samples stratified over categories
(`cost_sample` of them, DEFAULT_COST_SAMPLE by default, all when the plan is smaller), generated and measured
single-stream by the `Measurer` exactly as above (warm-up, contention, repeats). So every cost figure comes from
single-stream measurements; a batched sample's record says how it was made (`made_by`, `batch_size`) and carries its
batch's throughput (`batch_generated_tps`), with every per-user cost field None. Sample keys do not depend on the
batch size: a batched and a single-stream run of one plan share their keys, and either resumes the other.
`auto` takes the largest batch up to AUTO_BATCH_MAX whose KV caches fit the device's memory budget beside the
weights; a backend that cannot batch (or whose batched outputs are known to differ, int8 ONNX) runs single-stream
under `auto` with a one-line note, and is refused under an explicit N (int8 ONNX is batched when N is given).
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from harness import keys
from harness.attacks import Attack, Framing, framings, from_plain, to_plain
from harness.backends import Sampling, SequenceRequest, SequenceResult, get_backend
from harness.devices import DeviceProfile
from harness.errors import UsageError
from harness.measurement import (
    MAX_REMEASURE,
    MAX_REPEAT,
    ON_CONTENTION,
    WAIT_TIMEOUT_S,
    Measurement,
    MeasurePolicy,
    Measurer,
    Sample,
    build_batched_generation,
    build_generation,
    measure,
    measure_once,
    with_model_facts,
)
from harness.progress import NoProgress, Progress
from harness.prompts import Prompt
from harness.records import Generation, ModelLoad, Run
from harness.store import Store
from harness.telemetry import TelemetrySource, open_sources
from harness.telemetry.interference import HostMonitor
from harness.trackers import current_rss_bytes
from harness.variants import ModelManifest, VariantFile, resolve_variant
from harness.version import __version__

__all__ = [
    "AUTO_BATCH_MAX", "AdaptiveCell", "AdaptiveRounds", "DEFAULT_COST_SAMPLE", "GenerateRound", "check_batch", "cost_sample_keys", "MAX_REMEASURE", "MAX_REPEAT", "ON_CONTENTION", "WAIT_TIMEOUT_S", "ExecuteResult", "MeasurePolicy",
    "Measurement", "Plan", "RunSpec", "Sample", "build_generation", "command_line", "execute", "in_shard",
    "measure", "measure_once", "new_run_id", "prepare", "process_identity", "run_metadata", "sample_key", "samples",
]

AUTO_BATCH_MAX = 8  # --batch auto: at most this many sequences at once (the CPU's gain levels off by then)
ONNX_AUTO_BATCH = 4  # --batch auto on an ONNX export whose batched outputs are single-stream's
DEFAULT_COST_SAMPLE = 16  # samples per variant measured single-stream in a batched run (all, when fewer)
COST_SAMPLE_SEED = 0
CHUNK_BATCHES = 8  # a batched variant's samples go to its generator 8 batches' worth at a time (stored after each)


def check_batch(batch: int | str | None, cost_sample: int | None, samples_per_variant: int | None = None) -> None:
    """`--batch N|auto` and `--cost-sample K` as a run takes them (UsageError, one line, otherwise)."""
    if batch is not None and batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, int)
                                                    or batch < 1):
        raise UsageError(f"--batch {batch!r}: give a batch size of at least 1 (1 = single-stream), or auto")
    if cost_sample is None:
        return
    if batch is None:
        raise UsageError("--cost-sample is for batched runs: add --batch N|auto, or drop it (a single-stream run "
                         "measures every sample's cost)")
    if isinstance(cost_sample, bool) or not isinstance(cost_sample, int) or cost_sample < 1:
        raise UsageError(f"--cost-sample {cost_sample!r}: give the number of samples per variant whose cost is "
                         "measured single-stream, at least 1")
    if samples_per_variant is not None and cost_sample > samples_per_variant:
        raise UsageError(f"--cost-sample {cost_sample} is larger than the plan, which has {samples_per_variant} "
                         f"samples per variant: give at most {samples_per_variant}, or leave it out (then up to "
                         f"{DEFAULT_COST_SAMPLE} are measured)")


@dataclass(frozen=True)
class RunSpec:
    """What a run measures, whatever measures it: the plan's axes (model variants x prompts x seeds) and its
    settings (sampling, the measurement policy, the part of the plan to run).

    harness.api.run builds it from its keyword arguments (or is given one); the engine runs it on one device
    (`Plan(device, spec)`), a fleet run on each board (it travels as `to_wire()`). A new axis or setting is one
    field here, with a default that leaves earlier plans as they were; plain values travel to the boards as
    they are. Lists given for tuple fields are kept as tuples.
    """

    models: tuple[tuple[ModelManifest, tuple[str, ...]], ...]  # each manifest with the variants to run
    prompts: tuple[Prompt, ...]
    seeds: tuple[int, ...] = (0,)
    sampling: Sampling = field(default_factory=Sampling)  # the seed is each sample's (from `seeds`)
    policy: MeasurePolicy = field(default_factory=MeasurePolicy)
    shard: tuple[int, int] | None = None  # (i, n): only part i of n of the prompts x seeds (1-based)
    # How each prompt is put (harness.attacks.framings): every system prompt (None: none), each with no attack and
    # then each attack. The defaults are the plain plan: one cell per prompt and seed, keys as before.
    system_prompts: tuple[str | None, ...] = (None,)
    attacks: tuple[Attack, ...] = ()
    # Batched generation (see the module docstring): None single-stream (as always), N up to N sequences at once,
    # "auto" the largest batch the device holds; the samples per variant whose cost is measured single-stream in a
    # batched run (None: DEFAULT_COST_SAMPLE, all when the plan is smaller).
    batch: int | str | None = None
    cost_sample: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        object.__setattr__(self, "models", tuple((m, tuple(vs)) for m, vs in self.models))

    @property
    def n_variants(self) -> int:
        return sum(len(vs) for _, vs in self.models)

    @property
    def size(self) -> int:
        """Samples in the whole plan (every part of a split plan)."""
        return self.n_variants * len(self.cells())

    def framings(self) -> list[Framing]:
        return framings(self.system_prompts, self.attacks)

    def cells(self) -> list[tuple[Prompt, Framing, int]]:
        """What each variant generates, in plan order: prompts in order, framings within each, seeds within each."""
        return [(prompt, framing, seed) for prompt in self.prompts for framing in self.framings()
                for seed in self.seeds]

    def prompt_sets(self) -> list[str]:
        return sorted({p.prompt_set for p in self.prompts})

    def fingerprint(self) -> str:
        """What the boards of a split plan must share: the prompts in order and the seeds."""
        framed = [f.key() for f in self.framings() if not f.plain]
        return keys.text_sha256("\n".join([*(f"{p.id}:{p.sha256}" for p in self.prompts),
                                           *map(str, self.seeds), *framed]))[:16]

    def for_variant(self, manifest: ModelManifest, variant: str) -> RunSpec:
        """This plan narrowed to one model variant (a fleet task)."""
        return replace(self, models=((manifest, (variant,)),))

    def to_wire(self) -> dict[str, Any]:
        """As plain values (JSON), for a board; models by catalog name, resolved there (`from_wire`)."""
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**plain, "models": [[m.name, list(vs)] for m, vs in self.models],
                "prompts": [asdict(p) for p in self.prompts], "sampling": asdict(self.sampling),
                "policy": asdict(self.policy), "system_prompts": list(self.system_prompts),
                "attacks": [to_plain(a) for a in self.attacks]}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> RunSpec:
        """A spec sent by `to_wire`, its models read from this machine's catalogs (UsageError naming one it lacks)."""
        from harness.variants import check_variant_name, load_manifest

        models = []
        for name, variants in wire["models"]:
            manifest = load_manifest(name)
            for v in variants:
                check_variant_name(manifest, v)
            models.append((manifest, tuple(variants)))
        return cls(**{**wire, "models": tuple(models), "prompts": tuple(Prompt(**p) for p in wire["prompts"]),
                      "sampling": Sampling(**wire["sampling"]), "policy": MeasurePolicy(**wire["policy"]),
                      "system_prompts": tuple(wire.get("system_prompts", (None,))),
                      "attacks": tuple(from_plain(a) for a in wire.get("attacks", ()))})


@dataclass
class Plan:
    """A RunSpec on one device, resolved by `prepare`: each variant's file, the backends' versions, the host."""

    device: DeviceProfile
    spec: RunSpec
    run_metadata: dict[str, Any] = field(default_factory=dict)  # added to the run's metadata (e.g. the fleet's)
    variants: list[tuple[ModelManifest, VariantFile]] = field(default_factory=list)
    backend_versions: dict[str, str] = field(default_factory=dict)
    host_dependencies: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    batch_sizes: dict[str, int] = field(default_factory=dict)  # "model:variant" -> sequences at once (1: single)

    @property
    def size(self) -> int:
        return self.spec.size


@dataclass(frozen=True)
class ExecuteResult:
    run_id: str
    planned: int
    skipped: int
    written: int
    sample_keys: list[str]
    status: str


def sample_key(variant: VariantFile, backend_version: str, device: str, sampling: Sampling, prompt: Prompt,
               framing: Framing | None = None) -> str:
    """Deterministic identity of one generation: same inputs, same key. What is sent (the request, a
    conversation's turns, a system prompt, an attack's rewrite) enters through the input's sha256, which for a
    plain prompt is its text's, so plain plans keep their keys."""
    adaptive = None
    if framing is not None and framing.attack is not None and framing.adaptive is not None:
        # an adaptive attack's round: the attack and the round, not the attacker's text (written only in the round)
        adaptive = (framing.attack.sha256, framing.attack_round or 0)
        framing = replace(framing, rewrite=None)
    sent = framing.messages(prompt.text, prompt.history)[0] if framing is not None else prompt.messages
    return keys.sample_key(model=variant.model, variant=variant.variant, backend=variant.backend,
                           model_sha256=variant.sha256, backend_version=backend_version, device=device,
                           sampling=sampling.as_dict(), prompt_id=prompt.id, prompt_sha256=keys.input_sha256(sent),
                           adaptive_round=adaptive)


@dataclass(frozen=True)
class AdaptiveCell:
    """A plan cell under an adaptive attack (harness.attacks.Adaptive): its rounds are samples of their own, each
    keyed by the cell and its round (`round`), generated one after another by an `AdaptiveRounds`."""

    sample: Sample  # the cell: its framing has the adaptive attack and no round
    device: str

    def round(self, k: int, rewrite: str | None) -> Sample:
        """Round k's sample: the attacker's prompt `rewrite` sent as the last user turn (None: the attacker gave no
        usable prompt; nothing is sent)."""
        s = self.sample
        framing = replace(s.framing, attack_round=k, rewrite=rewrite)
        key = sample_key(s.variant, s.backend_version, self.device, s.sampling, s.prompt, framing)
        return replace(s, key=key, framing=framing)


# generate(round's sample, the attacker's turn, why nothing can be sent or None): the round generated on the loaded
# target, measured and stored (a round with a reason is stored as failed, without generating), and its record.
GenerateRound = Callable[[Sample, dict[str, Any], "str | None"], Generation]


class AdaptiveRounds(Protocol):
    """What runs an adaptive attack's rounds for the engine (harness.adaptive_attack.AdaptiveAttacks): the engine
    loads the target and stores what it generates; this asks the attacker, judges each round and stops."""

    def pending(self, cell: AdaptiveCell, store: Store) -> bool:
        """Whether the cell has rounds left to run (no stored success, fewer rounds stored than its cap)."""
        ...

    def run(self, cell: AdaptiveCell, generate: GenerateRound, store: Store) -> int:
        """Run the cell's rounds left (resuming after its last stored one); the rounds generated."""
        ...

    def stored_keys(self, cell: AdaptiveCell, store: Store) -> list[str]:
        """The sample keys of the cell's stored rounds, in order."""
        ...


def prepare(plan: Plan, progress: Progress | None = None) -> None:
    """Resolve (derive if needed) every variant file, check it fits the device's memory budget, and read
    each backend's version (which fails with the extra to install when its library is missing)."""
    progress = progress or NoProgress()
    plan.spec.policy.check()
    check_batch(plan.spec.batch, plan.spec.cost_sample, len(plan.spec.cells()))
    plan.variants = []
    for manifest, variants in plan.spec.models:
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
    plan.batch_sizes = _batch_sizes(plan, progress)
    from harness.telemetry.host_state import host_warnings

    plan.warnings = host_warnings(plan.device)
    for w in plan.warnings:
        progress.message(f"warning: {w}")


def _label(vf: VariantFile) -> str:
    return f"{vf.model}:{vf.variant}"


def _batch_sizes(plan: Plan, progress: Progress) -> dict[str, int]:
    """Each variant's batch (1: single-stream) under the spec's `batch`, checked against the device (UsageError
    saying what fits when an asked N does not), with a one-line note for each variant that runs otherwise than
    asked and what each batched variant's cost is measured on."""
    asked = plan.spec.batch
    if asked is None:
        return {}
    per_variant = sum(1 for i in range(len(plan.spec.cells())) if _cell_in_shard(plan.spec, i))
    sizes = {}
    for _, vf in plan.variants:
        n = _batch_size(vf, plan.device, asked, progress)
        sizes[_label(vf)] = n
        if n > 1:
            k = min(plan.spec.cost_sample or DEFAULT_COST_SAMPLE, per_variant)
            progress.message(f"{_label(vf)}: batches of up to {n}; cost measured single-stream on {k} of its "
                             f"{per_variant} samples (a seeded sample stratified over categories)")
    return sizes


def _batch_size(vf: VariantFile, device: DeviceProfile, asked: int | str, progress: Progress) -> int:
    label = _label(vf)
    forced = asked != "auto"
    if vf.backend == "gguf":
        from harness.backends.llama_batch import check_batch_size, fitting_batch_size

        if forced:
            check_batch_size(vf, device, int(asked))
            return int(asked)
        n = fitting_batch_size(vf, device, AUTO_BATCH_MAX)
        if n < 2:
            progress.message(f"note: {label}: not two sequences of n_ctx {device.n_ctx} fit the memory budget of "
                             f"device '{device.name}' beside the model: it runs single-stream")
        return n
    if vf.backend == "onnx":
        from harness.backends.onnx_batch import batches_identically

        if forced:
            if not batches_identically(vf) and int(asked) > 1:
                progress.message(f"note: {label}: batched int8 outputs can differ from single-stream (activation "
                                 "scales span the batch); batching because --batch was given")
            return int(asked)
        if not batches_identically(vf):
            progress.message(f"note: {label}: batched int8 outputs differ from single-stream, so it runs "
                             "single-stream (give --batch N to batch it anyway)")
            return 1
        return ONNX_AUTO_BATCH
    if forced and int(asked) > 1:
        raise UsageError(f"{label}: the {vf.backend} backend cannot generate in batches: drop --batch, or use "
                         "--batch auto (which runs it single-stream)")
    progress.message(f"note: {label}: the {vf.backend} backend cannot generate in batches: it runs single-stream")
    return 1


def cost_sample_keys(spec: RunSpec, variant_samples: list[Sample]) -> set[str]:
    """The keys of a batched variant's cost sample: a seeded sample of its samples (of the plan, or of this part of
    it) stratified over categories and benign controls; the same samples whatever the batch size."""
    from harness.subsample import stratified

    k = spec.cost_sample or DEFAULT_COST_SAMPLE
    chosen = stratified(variant_samples, k, _cost_stratum, seed=COST_SAMPLE_SEED)
    return {s.key for s in chosen}


def _cost_stratum(sample: Sample) -> str:
    p = sample.prompt
    return "benign control" if p.benign and not p.template_id else (p.category or "no category")


def _cell_in_shard(spec: RunSpec, index: int) -> bool:
    """Whether the `index`-th cell of the plan (harness.engine.RunSpec.cells) is in this part of it: a (prompt,
    seed)'s every framing runs on one board, so the shard index counts prompts x seeds only."""
    per_prompt = len(spec.framings()) * len(spec.seeds)
    return in_shard(index // per_prompt * len(spec.seeds) + index % len(spec.seeds), spec.shard)


def in_shard(index: int, shard: tuple[int, int] | None) -> bool:
    """Whether the `index`-th (prompt, seed) of a plan (prompts in order, seeds within each) is in part i of n
    of a plan split with `--shard i/n`: round robin, so the parts differ in size by one at most. Boards that
    split one plan must be given the same prompts, limit and seeds; every variant of a prompt runs on the
    same board."""
    return shard is None or index % shard[1] == shard[0] - 1


def samples(plan: Plan) -> Iterator[Sample]:
    cells = plan.spec.cells()
    for manifest, vf in plan.variants:
        bv = plan.backend_versions[vf.backend]
        for index, (prompt, framing, seed) in enumerate(cells):
            if not _cell_in_shard(plan.spec, index):
                continue
            s = replace(plan.spec.sampling, seed=seed)
            yield Sample(sample_key(vf, bv, plan.device.name, s, prompt, framing), vf, manifest, prompt, s, bv,
                         framing)


def process_identity() -> dict[str, Any]:
    """What tells, later, whether the process that started a run still runs: host, pid, start time."""
    import psutil

    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "create_time": psutil.Process(pid).create_time()}


def run_metadata(spec: RunSpec, models: list[dict[str, Any]], versions: Mapping[str, str],
                 sections: Mapping[str, Any]) -> dict[str, Any]:
    """A run's metadata, local or on a fleet: the plan (sampling, seeds, models, prompt sets), the versions, the
    process running it, and the sections of what runs it (a device's host and measurement, a fleet's boards)."""
    return {"versions": {"harness": __version__, **versions}, "sampling": spec.sampling.as_dict(),
            "seeds": list(spec.seeds), "models": models, "prompt_sets": spec.prompt_sets(),
            "process": process_identity(), **sections}


def _local_metadata(plan: Plan, telemetry_missing: dict[str, str], monitor: HostMonitor | None) -> dict[str, Any]:
    """The run's metadata on this device: its profile and host, what was measured how, the part of the plan."""
    from harness.devices import cpu_flags, detect_host

    host = detect_host().as_dict()
    host["cpu_flags"] = cpu_flags()
    spec = plan.spec
    models = [{"model": m.name, "variant": vf.variant, "sha256": vf.sha256, "size_bytes": vf.size_bytes,
               "path": str(vf.path), **vf.metadata} for m, vf in plan.variants]
    sections = {
        "device_profile": plan.device.as_dict(),
        "host": host,
        "telemetry_unavailable": telemetry_missing,
        "measurement": {**spec.policy.as_dict(plan.device), "host_readers": monitor.sources() if monitor else None,
                        "warnings": list(plan.warnings),
                        **({"batch": {"asked": spec.batch, "sizes": dict(plan.batch_sizes),
                                      "cost_sample": spec.cost_sample or DEFAULT_COST_SAMPLE}}
                           if spec.batch is not None else {})},
        **(plan.host_dependencies or _host_dependencies(plan)),
        **({"shard": {"part": spec.shard[0], "of": spec.shard[1], "plan": spec.fingerprint()}} if spec.shard else {}),
        **plan.run_metadata,
    }
    return run_metadata(spec, models, {"python": platform.python_version(), **plan.backend_versions}, sections)


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


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def execute(plan: Plan, store: Store, progress: Progress | None = None, command: str = "",
            finish: bool = True, done_elsewhere: Collection[str] = (),
            adaptive: AdaptiveRounds | None = None) -> ExecuteResult:
    """Run every sample of the plan not yet in the store (nor in `done_elsewhere`: keys another store
    holds, e.g. the main store of a fleet run whose shard this is).

    Cells under an adaptive attack are run round by round by `adaptive` (harness.adaptive_attack, which the API
    gives), single-stream, after the variant's other samples; a plan with one and no `adaptive` is refused before
    anything is written.

    The run's row is `running` until its last stage: with `finish=False` the caller (which judges and
    reports next) marks it finished; on an error it is `failed`, on Ctrl-C `interrupted`.
    """
    progress = progress or NoProgress()
    if not plan.variants:
        prepare(plan, progress)
    all_samples = list(samples(plan))
    cells = [AdaptiveCell(s, plan.device.name) for s in all_samples if s.framing.adaptive is not None]
    if cells and adaptive is None:
        raise UsageError(f"attack '{cells[0].sample.framing.attack.name if cells[0].sample.framing.attack else ''}' "
                         "is adaptive: it runs through `harness run` (harness.api.run) on one device, not here")
    done_keys = store.done_sample_keys()
    todo = [s for s in all_samples if s.framing.adaptive is None and s.key not in done_keys
            and s.key not in done_elsewhere]
    cells_todo = [c for c in cells if adaptive is not None and adaptive.pending(c, store)]
    run_id = new_run_id()
    sources, missing = open_sources(plan.device)
    monitor = HostMonitor()
    store.put(Run(run_id=run_id, started_at=time.time(), status="running", command=command,
                  device=plan.device.name, planned=len(all_samples),
                  metadata=_local_metadata(plan, missing, monitor)))
    progress.start(len(all_samples), "generating", len(all_samples) - len(todo) - len(cells_todo))
    status = "failed"
    written = 0
    try:
        todo_keys = {s.key for s in todo}
        by_variant: dict[str, list[Sample]] = {}
        for s in all_samples:
            if s.framing.adaptive is None:
                by_variant.setdefault(_label(s.variant), []).append(s)
        for label, group in by_variant.items():
            todo_group = [s for s in group if s.key in todo_keys]
            if not todo_group:
                continue
            batch_size = plan.batch_sizes.get(label, 1)
            if batch_size > 1:
                measured = cost_sample_keys(plan.spec, group)
                single = [s for s in todo_group if s.key in measured]
                if single:
                    written += _run_variant(single, plan.device, store, sources, run_id, progress, monitor,
                                            plan.spec.policy)
                batched = [s for s in todo_group if s.key not in measured]
                if batched:
                    written += _generate_batched(batched, batch_size, plan.device, store, run_id, progress)
            else:
                written += _run_variant(todo_group, plan.device, store, sources, run_id, progress, monitor,
                                        plan.spec.policy)
        if cells_todo and adaptive is not None:
            cells_by_variant: dict[str, list[AdaptiveCell]] = {}
            for c in cells_todo:
                cells_by_variant.setdefault(_label(c.sample.variant), []).append(c)
            for cell_group in cells_by_variant.values():
                written += _run_adaptive(cell_group, adaptive, plan.device, store, sources, run_id, progress,
                                         monitor, plan.spec.policy)
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
    cell_of = {c.sample.key: c for c in cells}
    keys_made = [k for s in all_samples for k in ([s.key] if s.key not in cell_of or adaptive is None
                                                  else adaptive.stored_keys(cell_of[s.key], store))]
    return ExecuteResult(run_id, len(all_samples), len(all_samples) - len(todo) - len(cells_todo), written,
                         keys_made, status)


def _load_single(first: Sample, device: DeviceProfile, store: Store, run_id: str, progress: Progress) -> Any:
    """Load a variant for single-stream generation and store its `ModelLoad`; the loaded backend."""
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
    return backend


def _run_variant(group: list[Sample], device: DeviceProfile, store: Store, sources: list[TelemetrySource],
                 run_id: str, progress: Progress, monitor: HostMonitor | None = None,
                 policy: MeasurePolicy | None = None) -> int:
    """Load one variant, generate its samples (the first as its warm-up), commit each as it finishes; returns
    the samples written."""
    backend = _load_single(group[0], device, store, run_id, progress)
    measurer = Measurer(backend, device, sources, monitor, policy or MeasurePolicy(), progress)
    written = 0
    busy = False
    try:
        for i, s in enumerate(group):
            g = with_model_facts(measurer.sample(s, run_id, warmup=i == 0, busy_before=busy), s, backend)
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


class _RoundGenerator:
    """An adaptive attack's rounds on one loaded variant (`GenerateRound`): each measured like any sample (the
    first as the warm-up) and stored at once with the attacker's turn; a round with nothing to send is stored as
    failed, with its reason."""

    def __init__(self, measurer: Measurer, backend: Any, device: DeviceProfile, store: Store, run_id: str,
                 progress: Progress) -> None:
        self.measurer, self.backend, self.device, self.store = measurer, backend, device, store
        self.run_id, self.progress = run_id, progress
        self.first, self.busy = True, False

    def __call__(self, sample: Sample, turn: dict[str, Any], failed: str | None) -> Generation:
        if failed is not None:
            nothing = Measurement(0, None, failed, None, None, 0.0, 0, None, None)
            g = build_generation(sample, self.device, self.run_id, [nothing], warmup=False,
                                 policy=self.measurer.policy)
        else:
            g = with_model_facts(self.measurer.sample(sample, self.run_id, warmup=self.first, busy_before=self.busy),
                                 sample, self.backend)
            self.first, self.busy = False, bool(g.contended)
        g = replace(g, attacker_turn=turn)
        self.store.put(g)
        state = "no usable prompt" if failed is not None else "error" if g.error else f"{g.n_output_tokens} tokens"
        self.progress.message(f"{g.model}:{g.variant} {g.attack} round {g.attack_round} ({g.prompt_id}): {state}")
        return g


def _run_adaptive(cells: list[AdaptiveCell], rounds: AdaptiveRounds, device: DeviceProfile, store: Store,
                  sources: list[TelemetrySource], run_id: str, progress: Progress, monitor: HostMonitor | None,
                  policy: MeasurePolicy) -> int:
    """Load one variant and run its cells' adaptive rounds (each cell resumes after its last stored round);
    returns the rounds written."""
    first = cells[0].sample
    backend = _load_single(first, device, store, run_id, progress)
    generate = _RoundGenerator(Measurer(backend, device, sources, monitor, policy, progress), backend, device,
                               store, run_id, progress)
    written = 0
    try:
        for c in cells:
            written += rounds.run(c, generate, store)
            progress.advance(1, f"{_label(first.variant)} {c.sample.framing.attack.name if c.sample.framing.attack else ''}")
    finally:
        backend.close()
    return written


def _generate_batched(group: list[Sample], batch_size: int, device: DeviceProfile, store: Store, run_id: str,
                      progress: Progress) -> int:
    """Load one variant for batches of `batch_size`, generate its samples CHUNK_BATCHES batches' worth at a time
    (continuous batching within each), and store each chunk's samples with the chunk's throughput; returns the
    samples written. A prompt that cannot be generated (too long for the context) is stored with its error, as
    single-stream stores it."""
    first = group[0]
    vf = first.variant
    label = _label(vf)
    generator = _batched_generator(vf.backend)
    rss_before = current_rss_bytes()
    progress.message(f"loading {label} ({vf.size_bytes / 1e6:.0f} MB) for batches of up to {batch_size}")
    t0 = time.perf_counter()
    load_meta = generator.load(vf, device, first.manifest, batch_size)
    load_s = time.perf_counter() - t0
    store.put(ModelLoad(run_id=run_id, model=vf.model, variant=vf.variant, backend=vf.backend, device=device.name,
                        model_path=str(vf.path), model_sha256=vf.sha256, model_size_bytes=vf.size_bytes,
                        load_s=load_s, rss_before_bytes=rss_before, rss_after_load_bytes=current_rss_bytes(),
                        metadata={**load_meta, "backend_version": first.backend_version, "made_by": "batched"}))
    written = 0
    chunk = CHUNK_BATCHES * batch_size
    try:
        for start in range(0, len(group), chunk):
            ready: list[Sample] = []
            requests: list[SequenceRequest] = []
            for s in group[start:start + chunk]:
                try:
                    request = SequenceRequest(tuple(generator.prompt_tokens(s.model_input)), s.sampling)
                    generator.check_request(request)
                except UsageError as exc:
                    store.put(build_batched_generation(s, device, run_id, None, None, batch_size, error=str(exc)))
                    written += 1
                    progress.advance(1, f"{label} (error)")
                    continue
                ready.append(s)
                requests.append(request)
            if not requests:
                continue
            results: list[SequenceResult] = []
            for r in generator.generate(requests):
                results.append(r)
                progress.advance(1, f"{label} (batch of {batch_size})")
            throughput = generator.finish()
            for r in sorted(results, key=lambda r: r.index):
                s = ready[r.index]
                store.put(with_model_facts(build_batched_generation(s, device, run_id, r, throughput, batch_size),
                                           s, generator))
                written += 1
            tps = throughput.batch_generated_tps
            if tps:
                progress.message(f"{label}: {len(results)} samples in batches of up to {batch_size}, {tps:.0f} "
                                 "generated tok/s over the batch (not a per-user speed)")
    finally:
        generator.close()
    return written


def _batched_generator(backend: str) -> Any:
    """The batched generator of a backend that has one (`_batch_size` refuses the others before anything runs)."""
    if backend == "gguf":
        from harness.backends.llama_batch import BatchedLlama

        return BatchedLlama()
    from harness.backends.onnx_batch import BatchedOnnx

    return BatchedOnnx()


def command_line() -> str:
    return " ".join(["harness", *sys.argv[1:]])
