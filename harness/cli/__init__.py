"""The `harness` command line: one module per command group under harness/cli/.

Each command module exposes `register(subparsers)`, which adds its sub-command
and sets `func(args) -> int` as the handler. Handlers raise UsageError for bad
input (exit 2, one line) and return 0 on success; anything else exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence

from harness import __version__, safetext
from harness.errors import HarnessError, did_you_mean, redact

# Command modules, in the order they appear in `harness --help`.
COMMAND_MODULES = [
    "run",
    "fleet",
    "merge",
    "devices",
    "models",
    "prompts",
    "attacks",
    "export",
    "judge",
    "humans",
    "annotate",
    "agree",
    "study",
    "report",
    "leaderboard",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors naming the fix (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        what = "command" if self.prog == ROOT_PROG else "action"
        self.exit(2, f"harness: error: {one_line(unknown_action(message, what))} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """Arguments a sub-command does not know are its own error, pointing to its own help (argparse would hand
        them up to `harness`, whose help does not list them)."""
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != ROOT_PROG:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


ROOT_PROG = "harness"
_INVALID_CHOICE = re.compile(r"^argument ([^-\s]\S*): invalid choice: '(.*)' \(choose from (.*)\)$")


def unknown_action(message: str, what: str = "action") -> str:
    """argparse's "argument {export,import}: invalid choice: 'burn' (choose from ...)" for a sub-command, said as
    "unknown action 'burn': choose from export, import", with the closest one suggested."""
    m = _INVALID_CHOICE.match(message)
    if not m:
        return message
    choices = [c.strip().strip("'") for c in m.group(3).split(",")]
    return f"unknown {what} '{m.group(2)}'{did_you_mean(m.group(2), choices)}: choose from {', '.join(choices)}"


def one_line(message: str) -> str:
    """An error message as one terminal line: line breaks and other control characters from the input it quotes
    (a file's header, a name) are shown escaped, never obeyed."""
    return safetext.line(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=ROOT_PROG, description="Benchmark small LLMs for harm and cost on edge devices.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="DIR",
        help="extra catalog folder with devices/, models/, prompts/, judges/, attacks/ (repeatable; also HARNESS_CATALOG)",
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"harness.cli.{name}").register(sub)
    describe(parser)
    return parser


def describe(parser: argparse.ArgumentParser) -> None:
    """Every sub-command's --help opens with a description: its own, or else its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                sub = action.choices[choice.dest]
                if sub.description is None and choice.help:
                    sub.description = choice.help[:1].upper() + choice.help[1:] + "."
                describe(sub)


def _honour_interrupts() -> None:
    """SIGINT raises KeyboardInterrupt even when this process inherited it ignored (started as `cmd &` by a shell
    without job control, where Python installs no handler): Ctrl-C must stop `harness annotate`, and a fleet's
    coordinator stops its workers with SIGINT before it would kill them."""
    import signal
    import threading

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    _honour_interrupts()
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        # Tables written to a file or a pipe are read in full: don't truncate them to 80 columns.
        os.environ["COLUMNS"] = "200"
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or bool(os.environ.get("HARNESS_DEBUG"))
    try:
        from harness import api

        with api.user_catalogs(args.catalog):
            return int(args.func(args) or 0)
    except HarnessError as exc:
        if debug:
            raise
        print(f"harness: error: {one_line(redact(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; finished samples are stored, re-run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the top level reports and exits 1
        if debug:
            raise
        print(f"harness: error: {type(exc).__name__}: {one_line(redact(str(exc)))} (re-run with --debug for a "
              "traceback)", file=sys.stderr)
        return 1
