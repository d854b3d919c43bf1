"""`harness run`: generate on a device for model variants x prompts, judge, report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_PROMPTS = "default"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="generate, measure cost, judge and report (the main job)",
                       description="Run a plan of device x model variants x prompts (x seeds). Re-running the "
                                   "same command resumes: finished samples are skipped.")
    p.add_argument("--device", default="auto", help="device profile name or .toml path, or 'auto' (detect this host)")
    p.add_argument("--model", action="append", default=[], metavar="SPEC",
                   help="model spec: NAME or NAME:VARIANT[,VARIANT...] (repeatable; default: "
                        f"{DEFAULT_MODEL} with its default variants)")
    p.add_argument("--prompts", default=DEFAULT_PROMPTS, metavar="SET|FILE",
                   help="prompt set name or .jsonl/.csv file (default: harm-eliciting + benign controls)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="take the first N prompts of the set")
    p.add_argument("--max-tokens", type=int, default=48, metavar="N", help="new tokens per generation (default 48: enough to tell compliance from refusal)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=None, metavar="N", help="sampling seed (default 0)")
    p.add_argument("--seeds", default=None, metavar="N,N,...", help="several seeds: one sample per prompt and seed")
    p.add_argument("--store", default=None, metavar="PATH", help="SQLite results store (default results/harness.sqlite)")
    p.add_argument("--no-judge", action="store_true", help="skip the default local judges")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument("--report-dir", default=None, metavar="DIR", help="where the report goes (default: beside the store)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def parse_seeds(args: argparse.Namespace) -> list[int]:
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError as exc:
            raise UsageError(f"--seeds {args.seeds!r}: give integers separated by commas, e.g. --seeds 0,1,2") from exc
        if not seeds:
            raise UsageError("--seeds is empty: give integers separated by commas")
        return list(dict.fromkeys(seeds))
    return [args.seed if args.seed is not None else 0]


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness import devices, engine, models, prompts
    from harness.backends import Sampling
    from harness.cli.progress import RichProgress
    from harness.store import DEFAULT_STORE, Store

    console = Console(stderr=True)
    out = Console()
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if args.temperature < 0:
        raise UsageError("--temperature must be 0 (greedy) or more")
    device, why = devices.resolve_device(args.device)
    specs = args.model or [DEFAULT_MODEL]
    plan_models = [models.parse_spec(s) for s in specs]
    prompt_list = prompts.load_set(args.prompts)
    if args.limit:
        prompt_list = prompt_list[: args.limit]
    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p)
    plan = engine.Plan(device=device, models=plan_models, prompts=prompt_list, seeds=parse_seeds(args), sampling=sampling)
    store_path = Path(args.store) if args.store else DEFAULT_STORE
    store = Store.open(store_path)
    try:
        engine.prepare(plan, lambda m: console.print(f"[dim]{m}[/]"))
        console.print(f"[bold]device[/] {device.name} ({why}); threads {device.resolved_threads()}")
        console.print(f"[bold]plan[/] {len(plan.variants)} variant(s) x {len(prompt_list)} prompt(s) x "
                      f"{len(plan.seeds)} seed(s) = {plan.size} samples -> {store_path}")
        sink = engine.ProgressSink() if args.quiet else RichProgress(console)
        summary = engine.execute(plan, store, sink, command=engine.command_line())
        console.print(f"[bold]generated[/] {summary['written']} new, {summary['skipped']} already in the store")
        if not args.no_judge:
            _judge(store, summary, console)
        report_path = None
        if not args.no_report:
            report_path = _report(store, summary, Path(args.report_dir) if args.report_dir else store_path.parent / "report", console)
        from harness.summary import print_run_table

        print_run_table(store, summary["sample_keys"], out)
        out.print(f"results: {store_path}" + (f"\nreport:  {report_path}" if report_path else ""))
    finally:
        store.close()
    return 0


def _judge(store: Any, summary: dict[str, Any], console: Any) -> None:
    from harness.judging.defaults import judge_samples

    judge_samples(store, summary["sample_keys"], console)


def _report(store: Any, summary: dict[str, Any], out_dir: Path, console: Any) -> Path | None:
    from harness.errors import MissingExtraError
    from harness.reporting import write_report

    try:
        return write_report(store, out_dir)
    except MissingExtraError as exc:
        # An edge install may lack the analysis stack: the generations are stored; say how to get the report.
        console.print(f"[yellow]report skipped: {exc}; then run `harness report`[/]")
        return None
