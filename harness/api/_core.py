"""The Python API: run, judge, report and leaderboard, each returning dataclasses.

The CLI is a thin layer over these functions (as inspect_ai's CLI calls `eval()`): same defaults,
same validation, same errors (harness.errors.UsageError for bad input). Nothing here prints;
long-running steps report to a `harness.progress.Progress` when one is given.

    import harness
    r = harness.run(model="smollm2-135m-instruct:Q4_1", limit=3, max_tokens=16, store="s.sqlite",
                    judge=False, report=False)
    r.generations[0].decode_tps
    harness.leaderboard("s.sqlite")[0].harm_rate
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import MissingExtraError, UsageError
from harness.fleet import DEFAULT_WAIT_S as DEFAULT_FLEET_WAIT_S
from harness.outputs import write_text
from harness.progress import NoProgress, Progress
from harness.records import HARM_TASKS
from harness.store import DEFAULT_STORE, Store

if TYPE_CHECKING:
    from harness.devices import DeviceProfile
    from harness.engine import RunSpec
    from harness.fleet.coordinator import FleetResult
    from harness.judging.batch import BatchExport
    from harness.judging.runner import JudgeResult
    from harness.merge import MergeResult
    from harness.rates import LeaderboardRow
    from harness.records import Generation, JudgeCard

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_PROMPTS = "default"
DEFAULT_MAX_TOKENS = 48
MAX_SEED = 2**32 - 1
MAX_NEW_TOKENS = 1_000_000
MAX_BOOTSTRAP = 1_000_000


@dataclass(frozen=True)
class ReportResult:
    html: Path | None  # None when the report was skipped
    markdown: Path | None
    tables: Path | None
    skipped: str | None = None  # why (e.g. the analysis extra is not installed)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    store: Path
    status: str  # finished | failed | interrupted
    device: str
    device_reason: str  # why this device profile (named, or detected)
    planned: int
    skipped: int  # already in the store
    written: int
    sample_keys: list[str]
    generations: list[Generation] = field(repr=False)  # every planned sample's record, in plan order
    judges: list[JudgeResult] = field(default_factory=list)
    report: ReportResult | None = None
    leaderboard: list[LeaderboardRow] = field(default_factory=list)  # over this plan's samples
    fleet: FleetResult | None = None  # a fleet run: each device's outcome


# -- validation --------------------------------------------------------------------------------------
def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise UsageError(f"--limit must be at least 1, not {limit}")


LIMIT_MODES = ("stratified", "first")


def prompt_stratum(p: Any) -> str:
    """What `--limit` stratifies prompts over: the benign controls, and each category of the harmful prompts."""
    if p.template_id:  # a group-templated set: every prompt is a benign ask; its categories are what differs
        return p.category or "no category"
    return "benign control" if p.benign else (p.category or "no category")


def _whole_templates(prompts: Sequence[Any], limit: int) -> list[Any]:
    """A group-templated set's `--limit`: whole templates (a disparity needs every group of a template), a seeded
    sample stratified over their categories, the fewest that hold `limit` prompts (the last one cut to fit)."""
    from harness.subsample import stratified

    templates: dict[str, list[Any]] = {}
    for p in prompts:
        templates.setdefault(p.template_id or p.id, []).append(p)
    units = list(templates.values())
    for k in range(1, len(units) + 1):
        picked = [p for unit in stratified(units, k, lambda u: prompt_stratum(u[0])) for p in unit]
        if len(picked) >= limit:
            return picked[:limit]
    return list(prompts)


def limited_prompts(prompts: Sequence[Any], limit: int, mode: str, progress: Progress) -> list[Any]:
    """`--limit N` of a prompt set: a seeded stratified sample (or the first N), saying what it covers."""
    from harness.subsample import covered, stratified

    if mode not in LIMIT_MODES:
        raise UsageError(f"--limit-mode {mode!r}: pass one of {', '.join(LIMIT_MODES)}")
    if mode == "first":
        chosen = list(prompts[:limit])
    elif any(p.template_id for p in prompts):
        chosen = _whole_templates(prompts, limit)
    else:
        chosen = stratified(prompts, limit, prompt_stratum)
    if len(chosen) == len(prompts):
        return chosen
    strata = covered(chosen, prompt_stratum)
    how = "the first" if mode == "first" else "a seeded sample stratified over categories and benign controls:"
    progress.message(f"--limit {limit}: {len(chosen)} of {len(prompts)} prompts, {how} "
                     + ", ".join(f"{k} ({v})" for k, v in strata.items()))
    missing = len(covered(prompts, prompt_stratum)) - len(strata)
    if "benign control" not in strata and any(p.benign for p in prompts):
        progress.message(f"warning: --limit {limit} holds no benign control: over-refusal is not measured")
    if missing > 0:
        progress.message(f"warning: --limit {limit} leaves out {missing} of the set's categories: 'worst category' "
                         "compares only those covered")
    return chosen


def check_sampling(*, max_tokens: int, temperature: float, top_p: float, seeds: Sequence[int],
                   limit: int | None) -> None:
    """Sampling settings a user can get wrong, checked before anything runs."""
    check_limit(limit)
    if isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise UsageError(f"--max-tokens must be from 1 to {MAX_NEW_TOKENS:,}, not {max_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise UsageError(f"--temperature must be a finite number >= 0 (0 = greedy), not {temperature}")
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], not {top_p}")
    if not seeds:
        raise UsageError("no seed given: pass --seed N or --seeds N,N")
    for s in seeds:
        if isinstance(s, bool) or not 0 <= s <= MAX_SEED:
            raise UsageError(f"seed {s} is outside 0..{MAX_SEED}: pass a non-negative 32-bit seed")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise UsageError(f"seed {repeated[0]} is given twice in --seeds: list each seed once")
    if temperature == 0 and len(seeds) > 1:
        raise UsageError(f"seeds change nothing at temperature 0 (greedy decoding gives each prompt one output, so "
                         f"{len(seeds)} seeds would count it {len(seeds)} times): set --temperature above 0, or pass "
                         "one seed")


def check_bootstrap(n: int) -> None:
    """A bootstrap resample count: 0 (no intervals) up to MAX_BOOTSTRAP."""
    if isinstance(n, bool) or not 0 <= n <= MAX_BOOTSTRAP:
        raise UsageError(f"--bootstrap {n} is outside 0..{MAX_BOOTSTRAP:,}: give 0 (no intervals) or a count such "
                         "as 1000")


def _store_path(store: str | Path | None) -> Path:
    return Path(store).expanduser() if store is not None else DEFAULT_STORE


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """'I/N' (or (I, N)) -> (I, N): part I of N of a plan, 1 <= I <= N."""
    if isinstance(shard, tuple):
        i, n = shard
    else:
        left, sep, right = str(shard).partition("/")
        try:
            i, n = int(left), int(right)
        except ValueError:
            i = n = 0
        if not sep:
            i = n = 0
    if not (isinstance(i, int) and isinstance(n, int)) or n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {shard}: give I/N with 1 <= I <= N, e.g. --shard 1/4 on the first of four boards")
    return i, n


# -- run -----------------------------------------------------------------------------------------------
def run_spec(model: str | Sequence[str] | None = None, *, prompts: str = DEFAULT_PROMPTS, limit: int | None = None,
             limit_mode: str = "stratified", max_tokens: int = DEFAULT_MAX_TOKENS, temperature: float = 0.0,
             top_p: float = 0.95, seed: int = 0, seeds: Sequence[int] | None = None,
             shard: str | tuple[int, int] | None = None, repeat: int = 1, on_contention: str = "record",
             contention_threshold: float | None = None, system_prompts: Sequence[str | None] | None = None,
             attacks: str | Sequence[str] | None = None, batch: int | str | None = None,
             cost_sample: int | None = None, progress: Progress | None = None) -> RunSpec:
    """The plan `run` measures (harness.engine.RunSpec), from `run`'s keyword arguments of the same names: checked,
    its models and prompt set resolved, `limit` applied (saying what it covers to `progress`).

    `system_prompts`: the system prompts to compare (each TEXT or @FILE; None in the list: no system prompt); the
    plan runs every prompt under each. `attacks`: attack names of the `attacks/` catalog (`a,b` or a list); each
    prompt also runs under each attack, beside the no-attack baseline (always run). `batch`: None single-stream, N
    (or "auto") to generate the harm samples N at a time, their cost measured single-stream on `cost_sample`
    samples per variant (harness.engine)."""
    from harness import engine
    from harness.attacks import load_many, read_system_prompt
    from harness.backends import Sampling
    from harness.prompts import load_set
    from harness.variants import parse_spec

    seed_list = list(seeds) if seeds else [seed]
    check_sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seeds=seed_list, limit=limit)
    shard_part = parse_shard(shard) if shard is not None else None
    specs = [model] if isinstance(model, str) else list(model or [DEFAULT_MODEL])
    plan_models = [parse_spec(s) for s in specs]
    prompt_list = load_set(prompts)
    if limit:
        prompt_list = limited_prompts(prompt_list, limit, limit_mode, progress or NoProgress())
    policy = engine.MeasurePolicy(repeat=repeat, on_contention=on_contention,
                                  contention_threshold=contention_threshold).check()
    systems = tuple(None if s is None else read_system_prompt(s) for s in (system_prompts or [None]))
    if len(set(systems)) < len(systems):
        raise UsageError("--system-prompt gives the same system prompt twice: give each once")
    engine.check_batch(batch, cost_sample)
    spec = engine.RunSpec(models=tuple((m, tuple(vs)) for m, vs in plan_models), prompts=tuple(prompt_list),
                          seeds=tuple(seed_list),
                          sampling=Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p),
                          policy=policy, shard=shard_part, system_prompts=systems, attacks=tuple(load_many(attacks)),
                          batch=batch, cost_sample=cost_sample)
    engine.check_batch(batch, cost_sample, len(spec.cells()))
    return spec


@dataclass(frozen=True)
class _Stages:
    """What follows generation in a run: the judges, the report, and whether the leaderboard counts flagged costs."""

    judges: list[object]  # judge configs (harness.judging.config.JudgeConfig)
    report: bool
    report_dir: Path
    include_flagged: bool
    judge_batch: int = 1  # outputs an in-process judge rates at once (the run's --batch: harness.judging.llama_judge_batch)


@dataclass(frozen=True)
class _StagesResult:
    """A run's last stages over its samples: the run's status, and what `RunResult` reports of them."""

    status: str
    judges: list[JudgeResult]
    report: ReportResult | None
    generations: list[Generation]  # in plan order
    leaderboard: list[LeaderboardRow]


def run(model: str | Sequence[str] | None = None, *, device: str | Sequence[str] = "auto",
        prompts: str = DEFAULT_PROMPTS, limit: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0, top_p: float = 0.95, seed: int = 0, seeds: Sequence[int] | None = None,
        store: str | Path | None = None, judge: bool = True, report: bool = True,
        report_dir: str | Path | None = None, progress: Progress | None = None, command: str = "harness.run()",
        fleet: str | None = None, fleet_wait_s: float = DEFAULT_FLEET_WAIT_S,
        shard: str | tuple[int, int] | None = None, repeat: int = 1, on_contention: str = "record",
        contention_threshold: float | None = None, limit_mode: str = "stratified",
        include_flagged: bool = False, system_prompts: Sequence[str | None] | None = None,
        attacks: str | Sequence[str] | None = None, batch: int | str | None = None,
        cost_sample: int | None = None, spec: RunSpec | None = None) -> RunResult:
    """Generate, measure, judge with the default local judges and report; resumable (see harness.engine).

    The plan is `spec` (harness.engine.RunSpec, e.g. from `run_spec`) or is built from the keyword arguments
    `model`, `prompts`, `limit`, `limit_mode`, `max_tokens`, `temperature`, `top_p`, `seed`, `seeds`, `shard`,
    `repeat`, `on_contention`, `contention_threshold`, `system_prompts`, `attacks`, `batch` and `cost_sample` (see
    `run_spec`); not both.

    `batch` (N or "auto") generates the harm samples up to N at a time (auto: as many as the device's memory budget
    holds, up to harness.engine.AUTO_BATCH_MAX); their cost is then measured single-stream on a seeded sample of
    `cost_sample` samples per variant stratified over categories (default harness.engine.DEFAULT_COST_SAMPLE, all
    when fewer), so every cost figure still comes from single-stream measurements. The in-process judges then rate
    the outputs N at a time too (auto: 8), with the same judgments as one at a time.

    `limit` takes a seeded sample of that many prompts stratified over the set's categories and its benign
    controls (harness.subsample), or with `limit_mode` "first" the first that many.

    `model` takes catalog names (`NAME[:VARIANT,...]`) and sources given directly: `hf:OWNER/REPO:QUANT`,
    `hf:OWNER/REPO/FILE.gguf`, `hf:OWNER/REPO` (ONNX), `ollama:NAME[:TAG]`, a .gguf path or an ONNX folder.
    Each sample's cost is measured `repeat` times; a measurement during which other processes took more
    than `contention_threshold` of the machine (default: the device profile's) is flagged contended and,
    with `on_contention` "remeasure" or "wait", measured again (see harness.engine.MeasurePolicy). The run's
    leaderboard and report leave warm-up and contended measurements out of the cost medians unless
    `include_flagged`.

    The whole plan (device, models and their variants, prompts, sampling, judges) is checked before the
    store is opened for writing: bad input raises UsageError and leaves the store untouched.

    `fleet` (a Dask scheduler address) runs the plan on the boards connected to it, one per device named
    (all it offers when none is), gathering their rows into this store (harness.fleet). `shard` ('I/N')
    runs only part I of N of the plan, for boards that split one plan offline and merge later.
    """
    from harness import devices

    progress = progress or NoProgress()
    plan_args: dict[str, Any] = {
        "prompts": prompts, "limit": limit, "limit_mode": limit_mode, "max_tokens": max_tokens,
        "temperature": temperature, "top_p": top_p, "seed": seed, "seeds": seeds, "shard": shard, "repeat": repeat,
        "on_contention": on_contention, "contention_threshold": contention_threshold,
        "system_prompts": system_prompts, "attacks": attacks, "batch": batch, "cost_sample": cost_sample}
    spec = _given_spec(spec, model, plan_args) or run_spec(model, progress=progress, **plan_args)
    device_names = [device] if isinstance(device, str) else list(device)
    _check_placement(spec, device_names, fleet, fleet_wait_s)
    located = devices.resolve_device(device_names[0]) if fleet is None else None
    store_path = _store_path(store)
    stages = _Stages(_default_judges(templated=any(p.template_id for p in spec.prompts)) if judge else [], report,
                     Path(report_dir) if report_dir else store_path.parent / "report", include_flagged,
                     _judge_batch(spec.batch))
    if located is None:
        assert fleet is not None
        return _run_on_fleet(fleet, [d for d in device_names if d != "auto"], spec, store_path, stages, progress,
                             command, fleet_wait_s)
    return _run_here(located, spec, store_path, stages, progress, command)


def _given_spec(spec: RunSpec | None, model: object, plan_args: dict[str, Any]) -> RunSpec | None:
    """`spec` as given, refused when plan keyword arguments are given too (one of them would be ignored)."""
    if spec is None:
        return None
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(run_spec).parameters.items()}
    given = [name for name, value in plan_args.items() if value != defaults[name]]
    if model is not None or given:
        raise UsageError(f"run() was given a spec and also {', '.join(['model'] * (model is not None) + given)}: "
                         "pass the plan either as spec= or as keyword arguments, not both")
    return spec


def _check_placement(spec: RunSpec, device_names: list[str], fleet: str | None, fleet_wait_s: float) -> None:
    """Where the plan runs: one device here, or the devices of a fleet (with what fleet boards are given)."""
    if fleet is not None and spec.shard is not None:
        raise UsageError("--shard splits a plan over offline boards; a fleet run already splits it by device: "
                         "drop --shard or --fleet")
    if fleet is None and len(device_names) != 1:
        raise UsageError(f"{len(device_names)} devices given: a local run measures one device; run several with "
                         "--fleet ADDRESS (see `harness fleet --help`)")
    if fleet is not None and (not math.isfinite(fleet_wait_s) or fleet_wait_s < 0):
        raise UsageError(f"--fleet-wait must be a number of seconds >= 0, not {fleet_wait_s}")
    adaptive = next((a.name for a in spec.attacks if a.adaptive is not None), None)
    if fleet is not None and adaptive is not None:
        raise UsageError(f"attack '{adaptive}' is adaptive (an attacker model in the loop) and runs on one device: "
                         "run it without --fleet (with --shard on each board), or drop it")
    if fleet is not None and (spec.policy.repeat != 1 or spec.policy.on_contention != "record"):
        raise UsageError("--repeat and --on-contention are not passed to fleet boards yet: run them on each board "
                         "(with --shard) or drop them")


def _run_here(located: tuple[DeviceProfile, str], spec: RunSpec, store_path: Path, stages: _Stages,
              progress: Progress, command: str) -> RunResult:
    """Generation on this machine's device, then judging and the report."""
    from harness import engine
    from harness.adaptive_attack import AdaptiveAttacks

    profile, why = located
    plan = engine.Plan(device=profile, spec=spec)
    adaptive = AdaptiveAttacks(spec.attacks)  # attackers and loop judges by name: a bad one fails here
    engine.prepare(plan, progress)
    progress.message(f"device {profile.name} ({why}); threads {profile.resolved_threads()}")
    part = (f", part {spec.shard[0]} of {spec.shard[1]}: {sum(1 for _ in engine.samples(plan))} samples"
            if spec.shard else "")
    n_framings = len(spec.framings())
    framed = (f" x {n_framings} framing(s) (no attack{', ' + ', '.join(a.name for a in spec.attacks) if spec.attacks else ''}"
              f"{f' under {len(spec.system_prompts)} system prompt setting(s)' if len(spec.system_prompts) > 1 else ''})"
              if n_framings > 1 else "")
    progress.message(f"plan {len(plan.variants)} variant(s) x {len(spec.prompts)} prompt(s){framed} x "
                     f"{len(spec.seeds)} seed(s) = {plan.size} samples{part} -> {store_path}")
    with Store.open(store_path) as st, adaptive:
        res = engine.execute(plan, st, progress, command=command, finish=False, adaptive=adaptive or None)
        end = _judge_and_report(st, res.run_id, res.sample_keys, stages, progress)
    return RunResult(res.run_id, store_path, end.status, profile.name, why, res.planned, res.skipped, res.written,
                     res.sample_keys, end.generations, end.judges, end.report, end.leaderboard)


def _run_on_fleet(address: str, device_names: list[str], spec: RunSpec, store_path: Path, stages: _Stages,
                  progress: Progress, command: str, wait_s: float) -> RunResult:
    """Generation on the fleet's boards, then judging and the report here (judges need no particular device)."""
    from harness.fleet.coordinator import FleetClient, choose_devices, run_fleet

    with FleetClient(address) as fleet:
        names = choose_devices(fleet, device_names or None)
        progress.message(f"fleet {address}: {len(names)} device(s) ({', '.join(names)}) x {spec.size} samples -> "
                         f"{store_path}")
        with Store.open(store_path) as st:
            res = run_fleet(st, fleet, devices=names, spec=spec, progress=progress, command=command, wait_s=wait_s,
                            finish=False)
            end = _judge_and_report(st, res.run_id, res.sample_keys, stages, progress, generation_status=res.status)
    return RunResult(res.run_id, store_path, end.status, ",".join(names), f"fleet {address}", res.planned,
                     res.skipped, res.written, res.sample_keys, end.generations, end.judges, end.report,
                     end.leaderboard, fleet=res)


def _judge_and_report(st: Store, run_id: str, sample_keys: list[str], stages: _Stages, progress: Progress,
                      generation_status: str = "finished") -> _StagesResult:
    """A run's last stages over its samples; the run's row ends `finished` (or as generation ended)."""
    judges: list[JudgeResult] = []
    report_result = None
    status = "failed"
    try:
        if sample_keys:
            templated = {g.sample_key for g in st.generations(sample_keys=sample_keys, with_texts=False)
                         if g.template_id}
            for cfg in stages.judges:
                keys = _outputs_to_judge(str(getattr(cfg, "mode", "")), sample_keys, templated)
                if keys:
                    judges.append(_judge(st, cfg, sample_keys=keys, progress=progress, batch_size=stages.judge_batch))
            if stages.report:
                report_result = _report(st, stages.report_dir, include_flagged=stages.include_flagged)
        status = generation_status
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        st.finish_run(run_id, status)
    generations = st.generations(sample_keys=sample_keys)
    order = {k: i for i, k in enumerate(sample_keys)}
    generations.sort(key=lambda g: order[g.sample_key])
    board = _leaderboard(st, sample_keys=sample_keys, include_flagged=stages.include_flagged)
    return _StagesResult(status, judges, report_result, generations, board)


def _judge_batch(batch: int | str | None) -> int:
    """The judge batch of a run's `--batch N|auto`: in-process judges rate that many outputs at once (auto:
    harness.judging.llama_judge_batch.AUTO_JUDGE_BATCH); one at a time without --batch."""
    from harness.judging.llama_judge_batch import judge_batch_size

    return judge_batch_size(batch)


def _outputs_to_judge(mode: str, sample_keys: list[str], templated: set[str]) -> list[str]:
    """The run's outputs a default judge rates: the quality-of-service judge only outputs of group-templated prompts;
    a harm judge (score, rank, label) every output but those (templated prompts are benign and harm rates count
    harmful prompts only, so their harm verdicts would show nowhere); the refusal detector every output."""
    if mode == "qos":
        return [k for k in sample_keys if k in templated]
    if mode in HARM_TASKS:
        return [k for k in sample_keys if k not in templated]
    return sample_keys


def _default_judges(templated: bool = False) -> list[object]:
    """The judges of `harness run`; with group-templated prompts also the quality-of-service judge."""
    from harness.judging import DEFAULT_JUDGES, QOS_JUDGE, load_judge

    return [load_judge(name) for name in (*DEFAULT_JUDGES, *((QOS_JUDGE,) if templated else ()))]


# -- judge ---------------------------------------------------------------------------------------------
def _judge_config(judge: str, limit: int | None, **overrides: object) -> Any:
    """The judge TOML with command-line overrides, checked before any store is opened."""
    from harness.judging import load_judge

    check_limit(limit)
    return load_judge(judge).with_overrides(**overrides)


@contextlib.contextmanager
def _judged_store(store: str | Path | None, *, readonly: bool = False) -> Iterator[Store]:
    """An existing store with generations to judge (UsageError naming the fix otherwise)."""
    path = _store_path(store)
    with Store.open(path, create=False, readonly=readonly) as st:
        if st.count("generations") == 0:
            raise UsageError(f"store {path} has no generations: run `harness run --store {path}` first")
        yield st


def judge(store: str | Path | None, judge: str, *, mode: str | None = None, concurrency: int | None = None,
          order: str | None = None, order_seed: int | None = None, base_url: str | None = None,
          limit: int | None = None, sample_keys: Sequence[str] | None = None, use_disk_cache: bool = True,
          progress: Progress | None = None, batch: int | None = None) -> JudgeResult:
    """Judge a store's generations with one judge (a catalog name or a .toml path); cached, resumable. `batch`: an
    in-process llama-cpp judge judges that many outputs at once, with the same judgments (others ignore it)."""
    if concurrency is not None and concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {concurrency}")
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1 (1 = one output at a time), not {batch}")
    cfg = _judge_config(judge, limit, mode=mode, concurrency=concurrency, order=order, order_seed=order_seed,
                        base_url=base_url)
    with _judged_store(store) as st:
        return _judge(st, cfg, sample_keys=list(sample_keys) if sample_keys is not None else None, limit=limit,
                      progress=progress or NoProgress(), use_disk_cache=use_disk_cache, batch_size=batch or 1)


def judge_batch_export(store: str | Path | None, judge: str, out: str | Path, *, mode: str | None = None,
                       order: str | None = None, order_seed: int | None = None, base_url: str | None = None,
                       limit: int | None = None, sample_keys: Sequence[str] | None = None,
                       use_disk_cache: bool = True, force: bool = False) -> BatchExport:
    """Write the OpenAI Batch API request file for what `judge()` would request (harness.judging.batch); the
    store is only read."""
    from harness.judging.batch import export_requests

    cfg = _judge_config(judge, limit, mode=mode, order=order, order_seed=order_seed, base_url=base_url)
    with _judged_store(store, readonly=True) as st:
        return export_requests(st, cfg, out, sample_keys=list(sample_keys) if sample_keys is not None else None,
                               limit=limit, use_disk_cache=use_disk_cache, force=force)


def judge_batch_import(store: str | Path | None, judge: str, results: str | Path, *, mode: str | None = None,
                       order: str | None = None, order_seed: int | None = None, base_url: str | None = None,
                       limit: int | None = None, sample_keys: Sequence[str] | None = None,
                       use_disk_cache: bool = True, progress: Progress | None = None) -> JudgeResult:
    """Record an OpenAI Batch API results file as this judge's judgments and ratings, as `judge()` would; the
    judge and its options must be those of the export."""
    from harness.judging.batch import import_results
    from harness.rates import judge_rates

    cfg = _judge_config(judge, limit, mode=mode, order=order, order_seed=order_seed, base_url=base_url)
    with _judged_store(store) as st:
        result = import_results(st, cfg, results, sample_keys=list(sample_keys) if sample_keys is not None else None,
                                limit=limit, use_disk_cache=use_disk_cache, progress=progress or NoProgress())
    return replace(result, rates=judge_rates(result.ratings))


# -- merge ---------------------------------------------------------------------------------------------
def merge(shards: Sequence[str | Path], into: str | Path) -> MergeResult:
    """Merge shard stores into a main store by key (harness.merge): idempotent; a shard of another schema or a
    conflicting row raises UsageError and writes nothing."""
    from harness.merge import merge_stores

    return merge_stores(shards, into)


def _judge(st: Store, cfg: object, *, sample_keys: list[str] | None = None, limit: int | None = None,
           progress: Progress, use_disk_cache: bool = True, batch_size: int = 1) -> JudgeResult:
    from harness.judging.config import JudgeConfig
    from harness.judging.runner import judge_any
    from harness.rates import judge_rates

    assert isinstance(cfg, JudgeConfig)
    result = judge_any(st, cfg, sample_keys=sample_keys, limit=limit, progress=progress, use_disk_cache=use_disk_cache,
                       batch_size=batch_size)
    return replace(result, rates=judge_rates(result.ratings))


# -- report --------------------------------------------------------------------------------------------
def report(store: str | Path | None = None, out: str | Path | None = None, *, run_ids: Sequence[str] | None = None,
           rater: str | None = None, reference_variant: str | None = None, bootstrap: int = 1000,
           card: str | None = None, include_flagged: bool = False) -> ReportResult:
    """Write report.html, leaderboard.md and the tables (CSV and Parquet) for a store (opened read-only). `card`
    chooses the judge card that corrects harm rates (a set name or the start of a card key). Cost medians leave
    out warm-up and contended measurements unless `include_flagged`."""
    check_bootstrap(bootstrap)
    path = _store_path(store)
    with Store.open(path, readonly=True) as st:
        if st.count("generations") == 0 and st.count("ratings") == 0:
            raise UsageError(f"{path} has no generations and no ratings: run `harness run --store {path}` or "
                             "import ratings with `harness humans import` first")
        return _report(st, Path(out).expanduser() if out else path.parent / "report", run_ids=run_ids, rater=rater,
                       reference_variant=reference_variant, bootstrap=bootstrap, required=True, card=card,
                       include_flagged=include_flagged)


def _report(st: Store, out_dir: Path, *, run_ids: Sequence[str] | None = None, rater: str | None = None,
            reference_variant: str | None = None, bootstrap: int = 1000, required: bool = False,
            card: str | None = None, include_flagged: bool = False) -> ReportResult:
    try:
        from harness.reporting import write_report

        html = write_report(st, out_dir, list(run_ids) if run_ids else None, rater=rater,
                            reference_variant=reference_variant, bootstrap=bootstrap, card=card,
                            include_flagged=include_flagged)
    except MissingExtraError as exc:
        if required:
            raise
        # An edge install may lack the analysis stack: the generations are stored; say how to get the report.
        return ReportResult(None, None, None, skipped=f"{exc}; then run `harness report`")
    return ReportResult(html, html.parent / "leaderboard.md", html.parent / "tables")


# -- leaderboard ---------------------------------------------------------------------------------------
def leaderboard(store: str | Path | None = None, *, device: str | None = None, max_ram: int | str | None = None,
                min_tps: float | None = None, max_harm: float | None = None, rater: str | None = None,
                run_ids: Sequence[str] | None = None, include_flagged: bool = False,
                max_qos_gap: float | None = None, card: str | None = None,
                max_asr: float | None = None) -> list[LeaderboardRow]:
    """Every variant with its harm and cost figures and whether it meets the limits (`passes`, `reasons`):
    passing first, then lowest harm, then highest decode tok/s. `max_harm` applies to the upper end of the harm
    rate's 95% interval, `max_asr` to the upper end of the worst attack's (each row's `attacks`: its harm and refusal
    under every attack it ran; `categories`: its harm per category). With no limits every variant passes unless all its generations failed. Cost medians
    leave out warm-up and contended samples unless `include_flagged`."""
    from harness.devices import parse_size

    max_ram_bytes = parse_size(max_ram, "--max-ram") if isinstance(max_ram, str) else max_ram
    if min_tps is not None and (not math.isfinite(min_tps) or min_tps < 0):
        raise UsageError(f"--min-tps must be a finite number >= 0, not {min_tps}")
    if max_harm is not None and (not math.isfinite(max_harm) or not 0 <= max_harm <= 1):
        raise UsageError(f"--max-harm must be a rate in 0..1, not {max_harm}")
    if max_qos_gap is not None and (not math.isfinite(max_qos_gap) or not 0 <= max_qos_gap <= 1):
        raise UsageError(f"--max-qos-gap must be a rate gap in 0..1, not {max_qos_gap}")
    if max_asr is not None and (not math.isfinite(max_asr) or not 0 <= max_asr <= 1):
        raise UsageError(f"--max-asr must be a rate in 0..1, not {max_asr}")
    path = _store_path(store)
    with Store.open(path, readonly=True) as st:
        from harness.reporting import deployable_candidates

        return deployable_candidates(st, device=device, max_ram_bytes=max_ram_bytes, min_tps=min_tps,
                                     max_harm=max_harm, rater=rater, run_ids=list(run_ids) if run_ids else None,
                                     include_flagged=include_flagged, max_qos_gap=max_qos_gap, card=card,
                                     max_asr=max_asr)


def _leaderboard(st: Store, *, sample_keys: Sequence[str], include_flagged: bool = False) -> list[LeaderboardRow]:
    """The leaderboard over some samples (a run's), in leaderboard order."""
    from harness.reporting._data import load_inputs

    return load_inputs(st, sample_keys=list(sample_keys)).tables(include_flagged=include_flagged).leaderboard


# -- judge cards ---------------------------------------------------------------------------------------
def calibrate(judge: str, sets: Sequence[str], *, store: str | Path | None = None, mode: str | None = None,
              order: str | None = None, base_url: str | None = None, limit: int | None = None,
              bootstrap: int = 1000, seed: int = 0,
              progress: Progress | None = None, use_disk_cache: bool = True) -> list[JudgeCard]:
    """Measure a judge against people on human-labelled sets (`FORMAT:PATH` each) and store its judge cards.

    Every set is checked (format, path, labels that fit the judge) before anything is judged or stored. A judge
    that answers nothing valid on a set raises UsageError and stores no card for it.
    """
    from harness.calibration import calibrate as run_calibration
    from harness.calibration import parse_set_spec
    from harness.judging import load_judge

    if not sets:
        raise UsageError("harness judge calibrate needs --set FORMAT:PATH (repeatable), e.g. "
                         "--set labels-csv:judge-comparison.csv")
    check_limit(limit)
    check_bootstrap(bootstrap)
    cfg = load_judge(judge).with_overrides(mode=mode, order=order, base_url=base_url)
    parsed = [parse_set_spec(s) for s in sets]
    with Store.open(_store_path(store)) as st:
        cards = run_calibration(cfg, parsed, st, limit=limit, bootstrap=bootstrap, seed=seed, progress=progress,
                                use_disk_cache=use_disk_cache)
    return cards


def cards(store: str | Path | None = None, *, library: bool = True) -> list[JudgeCard]:
    """The judge cards in a store (opened read-only) and, with `library`, the user's card library
    (harness.cardlib), oldest first."""
    from harness import cardlib

    path = _store_path(store)
    held: list[JudgeCard] | None = [] if library and not path.exists() else None
    if held is None:
        with Store.open(path, readonly=True) as st:
            held = st.cards()
    return cardlib.merged(held, cardlib.library_cards()) if library else held


def export_cards(out: str | Path, *, store: str | Path | None = None, force: bool = False) -> Path:
    """Write every card of the store and the library to a versioned JSON file (`harness judge cards import`)."""
    from harness import cardlib

    return cardlib.export(cards(store), out, force=force)


def import_cards(path: str | Path) -> list[JudgeCard]:
    """Read an exported card file into the user's card library; the cards read."""
    from harness import cardlib

    read = cardlib.read(path)
    cardlib.save(read)
    return read


def study_judge(release: str | Path, judge: str, *, out: str | Path | None = None, store: str | Path | None = None,
                mode: str | None = None, order: str | None = None, base_url: str | None = None,
                limit: int | None = None, bootstrap: int = 1000, seed: int = 0, progress: Progress | None = None,
                use_disk_cache: bool = True) -> dict[str, Any]:
    """The study's task asked of a judge: it ranks the release's triplets and its agreement with the students and
    the expert is set under the study's own judges' on the same triplets. Writes study-judge.json and
    study-judge.md into `out` (default results/study) and, when `store` is given, stores the judge's card there."""
    import json
    from dataclasses import asdict

    from harness.study import DEFAULT_OUT, benchmark_markdown, judge_benchmark

    check_bootstrap(bootstrap)
    out_dir = Path(out) if out is not None else DEFAULT_OUT
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: pass a folder")
    cfg = _judge_config(judge, limit, mode=mode, order=order, base_url=base_url)
    result = judge_benchmark(Path(release), cfg, limit=limit, bootstrap=bootstrap, seed=seed, progress=progress,
                             use_disk_cache=use_disk_cache)
    if store is not None:
        with Store.open(_store_path(store)) as st:
            st.add([result["card"]], replace=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = result["card"]
    data = {**result, "card": {**asdict(card), "invalid_share": card.invalid_share}}
    write_text(out_dir / "study-judge.json", json.dumps(data, indent=2, default=str))
    write_text(out_dir / "study-judge.md", benchmark_markdown(result))
    return result


def hh_audit(path: str | Path, judge: str, *, mode: str | None = None, base_url: str | None = None,
             limit: int | None = None, progress: Progress | None = None, use_disk_cache: bool = True) -> Any:
    """Judge both replies of every HH-RLHF harmless-base pair: how often the crowd's chosen (less harmful) reply is
    harmful itself, and how often the judge agrees with the crowd's choice, with exact 95% intervals
    (harness.hh_audit.HHAudit)."""
    from harness.hh_audit import audit

    cfg = _judge_config(judge, limit, mode=mode, base_url=base_url)
    return audit(Path(path).expanduser(), cfg, limit=limit, progress=progress, use_disk_cache=use_disk_cache)
