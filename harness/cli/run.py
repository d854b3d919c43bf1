"""`harness run`: generate on a device for model variants x prompts, judge, report (harness.api.run)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness import numbers
from harness.api import DEFAULT_MAX_TOKENS, DEFAULT_MODEL, DEFAULT_PROMPTS
from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="generate, measure cost, judge and report (the main job)",
                       description="Run a plan of device x model variants x prompts (x seeds). Re-running the "
                                   "same command resumes: finished samples are skipped.")
    p.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="device profile name or .toml path, or 'auto' (detect this host; the default); with --fleet "
                        "repeatable: the devices to run on (default: every device the fleet offers)")
    p.add_argument("--model", action="append", default=[], metavar="SPEC",
                   help="model spec: NAME or NAME:VARIANT[,VARIANT...] from the catalog, hf:OWNER/REPO:QUANT, "
                        "hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO (an ONNX export), ollama:NAME[:TAG], or a path to a "
                        f".gguf file or an ONNX folder (repeatable; default: {DEFAULT_MODEL} with its default "
                        "variants)")
    p.add_argument("--prompts", default=DEFAULT_PROMPTS, metavar="SET|FILE",
                   help="prompt set name or .jsonl/.csv file, a published set's file (JailbreakBench, HarmBench, "
                        "AdvBench, StrongREJECT, XSTest, ...; or FORMAT:FILE[?split=NAME]) or "
                        "hf:OWNER/DATASET[:SPLIT] (default: harm-eliciting + benign controls)")
    p.add_argument("--system-prompt", action="append", default=None, metavar="TEXT|@FILE", dest="system_prompts",
                   help="run every prompt under this system prompt (the product's own); repeat to compare several "
                        "(e.g. the product's and a safety prompt); a template without a system role gets it folded "
                        "into the first user turn, and the record says so")
    p.add_argument("--attack", action="append", default=None, metavar="NAME[,NAME]", dest="attacks",
                   help="also run every prompt under these attacks of the attacks/ catalog (see `harness attacks "
                        "list`), beside the no-attack baseline")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="take N prompts of the set: a seeded sample stratified over its categories and benign "
                        "controls (the same N prompts every time)")
    p.add_argument("--limit-mode", default="stratified", choices=("stratified", "first"),
                   help="how --limit takes its prompts: stratified (default) or the first N")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help=f"new tokens per generation (default {DEFAULT_MAX_TOKENS}: enough to tell compliance "
                        "from refusal)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=None, metavar="N", help="sampling seed (default 0)")
    p.add_argument("--seeds", default=None, metavar="N,N,...", help="several seeds: one sample per prompt and seed")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure each sample's cost N times (the output is the first generation's); the "
                        "leaderboard shows the median and interquartile range")
    p.add_argument("--on-contention", choices=("record", "remeasure", "wait"), default="record",
                   help="when other processes took more than the threshold of the machine during a measurement: "
                        "record it flagged (default; excluded from cost medians), remeasure it at once, or wait "
                        "for the machine to calm down and measure again")
    p.add_argument("--contention-threshold", type=float, default=None, metavar="FRACTION",
                   help="share of the machine other processes may use during a measurement before it counts as "
                        "contended (default: the device profile's contention_threshold, 0.1)")
    p.add_argument("--batch", default=None, metavar="N|auto",
                   help="generate the harm samples up to N at a time (auto: as many as the device's memory budget "
                        "holds); their cost is then measured single-stream on --cost-sample samples per variant, "
                        "and the in-process judges rate N outputs at once (auto: 8; the same judgments) "
                        "(default: one at a time, every sample's cost measured)")
    p.add_argument("--cost-sample", type=int, default=None, metavar="K",
                   help="with --batch: measure cost single-stream on K samples per variant, a seeded sample "
                        "stratified over categories (default 16, all when the plan is smaller)")
    p.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    p.add_argument("--no-judge", action="store_true", help="skip the default local judges")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument("--report-dir", default=None, metavar="DIR", help="where the report goes (default: beside the store)")
    p.add_argument("--fleet", default=None, metavar="ADDRESS",
                   help="run on the boards of a fleet (a `harness fleet scheduler` address, e.g. tcp://10.0.0.5:8786) "
                        "and gather their rows into --store")
    p.add_argument("--fleet-wait", type=float, default=None, metavar="S",
                   help="with --fleet: report a device missing once no worker has offered it for S seconds "
                        "(default 120); the rest of the run finishes")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only part I of N of the plan (boards splitting one plan offline; `harness merge` "
                        "gathers the parts)")
    p.add_argument("--include-flagged", action="store_true",
                   help="count warm-up and contended measurements in the cost medians of the table and the report "
                        "(left out by default; a variant with nothing else shows its contended figures marked *)")
    p.add_argument("--wide", action="store_true", help="every figure in the final table (default: the compact table)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def parse_seeds(args: argparse.Namespace) -> list[int]:
    if args.seeds is not None:
        try:
            seeds = [numbers.parse_int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError as exc:
            raise UsageError(f"--seeds {numbers.describe(args.seeds)!r}: give integers separated by commas, e.g. "
                             "--seeds 0,1,2") from exc
        if not seeds:
            raise UsageError("--seeds is empty: give integers separated by commas")
        return seeds  # a repeated seed is refused by api.check_sampling
    return [args.seed if args.seed is not None else 0]


def parse_batch(value: str | None) -> int | str | None:
    """`--batch N|auto` -> N, "auto" or None (not given)."""
    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    try:
        return numbers.parse_int(value)
    except ValueError as exc:
        raise UsageError(f"--batch {numbers.describe(value)!r}: give a batch size (a whole number, at least 1) or "
                         "auto") from exc


def command_line() -> str:
    """The command as typed, recorded with the run."""
    return " ".join(["harness", *sys.argv[1:]])


def run_command(args: argparse.Namespace) -> int:
    from harness import api
    from harness.cli.console import terminal, text
    from harness.cli.present import print_judge_line, print_probe_hint
    from harness.cli.progress import RichProgress
    from harness.cli.tables import leaderboard_table, print_table

    console = terminal(stderr=True)
    out = terminal()
    progress = None if args.quiet else RichProgress(console)
    if args.fleet_wait is not None and args.fleet is None:
        raise UsageError("--fleet-wait is for fleet runs: add --fleet ADDRESS or drop it")
    fleet_options = {"fleet": args.fleet} if args.fleet else {}
    if args.fleet_wait is not None:
        fleet_options["fleet_wait_s"] = args.fleet_wait
    result = api.run(args.model or None, device=args.device or "auto", prompts=args.prompts, limit=args.limit,
                     max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                     seeds=parse_seeds(args), store=args.store, judge=not args.no_judge, report=not args.no_report,
                     report_dir=args.report_dir, progress=progress, command=command_line(), shard=args.shard,
                     repeat=args.repeat, on_contention=args.on_contention,
                     contention_threshold=args.contention_threshold, limit_mode=args.limit_mode,
                     include_flagged=args.include_flagged, system_prompts=args.system_prompts,
                     attacks=args.attacks, batch=parse_batch(args.batch), cost_sample=args.cost_sample,
                     **fleet_options)
    console.print(text("generated", "bold") + text(f" {result.written} new, {result.skipped} already in the "
                                                   f"store ({result.planned} planned)"))
    if result.fleet is not None:
        print_fleet_lines(result.fleet, console)
    for j in result.judges:
        print_judge_line(j, console)
    print_probe_hint(result.judges, result.store, console)
    if result.report is not None and result.report.skipped:
        console.print(text(f"report skipped: {result.report.skipped}", style="yellow"))
    print_table(leaderboard_table(result.leaderboard, wide=args.wide, width=out.width,
                                  include_flagged=args.include_flagged), out, wide=args.wide)
    report_path = result.report.html if result.report else None
    out.print(f"results: {result.store}" + (f"\nreport:  {report_path}" if report_path else ""), markup=False)
    if result.fleet is not None and result.fleet.status != "finished":
        console.print(f"harness: error: the fleet run is incomplete ({result.fleet.status}): see the devices above; "
                      "re-run the same command to complete it", markup=False)
        return 1
    return 0


def print_fleet_lines(fleet: Any, console: Any) -> None:
    """One line per device of a fleet run: what it gathered, on which workers, or why not."""
    from harness.cli.console import text

    for o in fleet.devices:
        workers = ", ".join(f"{w.get('name')} (pid {w.get('pid')})" for w in o.workers) or "no worker"
        line = f"device {o.device}: {o.state}, {o.done}/{o.planned} ({o.written} new, {o.skipped} already stored) on {workers}"
        if o.state == "missing":
            line += (f": start `harness fleet worker --scheduler {fleet.scheduler} --device {o.device}` on its board, "
                     "then re-run the same command")
        elif o.error:
            line += f": {o.error}"
        console.print(text(line, style="red" if o.state in ("missing", "failed") else ""))
    for note in fleet.duplicates[:5]:
        console.print(text(f"measured twice (a rescheduled task), the first row kept: {note}", style="yellow"))

