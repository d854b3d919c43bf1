"""Each command's own help and the mistakes of a first hour (issue 23): `harness judge calibrate --help` and `judge cards
--help` are their own, every sub-command has a description, an unknown flag points to the sub-command's help, a
misspelt model, judge, device or prompt set gets a "did you mean", and variant names are case-insensitive."""

from __future__ import annotations

import argparse

import pytest

from harness.cli import build_parser
from harness.errors import UsageError


def sub_commands(parser: argparse.ArgumentParser, prefix: str = "harness") -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [(f"{prefix} {name}", sub), *sub_commands(sub, f"{prefix} {name}")]
    return out


def test_every_sub_command_has_a_description_of_its_own() -> None:
    commands = dict(sub_commands(build_parser()))
    assert {"harness judge calibrate", "harness judge cards", "harness judge cards export", "harness models",
            "harness devices", "harness prompts", "harness export"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, f"{name} --help has no description"
        assert parser.prog == name
    judge = commands["harness judge"].description
    assert commands["harness judge calibrate"].description != judge != commands["harness judge cards"].description


@pytest.mark.parametrize(("args", "own"), [
    (["judge", "calibrate", "--help"], "--set FORMAT:PATH"),
    (["judge", "cards", "--help"], "{export,import}"),
    (["models", "--help"], "case-insensitive"),
    (["export", "--help"], "spreadsheet-safe"),
])
def test_help_is_the_sub_command_s(cli, args: list[str], own: str) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == 0 and f"usage: harness {' '.join(args[:-1])}" in r.out and own in r.out
    if args[0] == "judge":
        assert "--batch-export" not in r.out  # not the generic judge help


@pytest.mark.parametrize(("args", "points_to"), [
    (["run", "--bogus"], "harness run --help"),
    (["judge", "calibrate", "--judge", "x", "--bogus"], "harness judge calibrate --help"),
    (["judge", "cards", "export", "--out", "f", "--bogus"], "harness judge cards export --help"),
    (["leaderboard", "--wide", "extra"], "harness leaderboard --help"),
])
def test_an_unknown_argument_points_to_the_sub_command_s_help(cli, args: list[str], points_to: str) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == 2 and f"(see `{points_to}`)" in r.err and len(r.err.strip().splitlines()) == 1


def test_old_judge_command_lines_still_parse() -> None:
    parser = build_parser()
    a = parser.parse_args(["judge", "--store", "s.sqlite", "--judge", "smollm2-score", "--limit", "3"])
    assert (a.func.__name__, a.store, a.judge, a.limit) == ("judge_command", "s.sqlite", "smollm2-score", 3)
    a = parser.parse_args(["judge", "calibrate", "--judge", "j", "--set", "labels-csv:x.csv", "--store", "s", "--json"])
    assert (a.func.__name__, a.judge, a.sets, a.store, a.json, a.bootstrap) == (
        "calibrate_command", "j", ["labels-csv:x.csv"], "s", True, 1000)
    a = parser.parse_args(["judge", "--store", "s", "cards", "--json"])  # an option before the sub-command is kept
    assert (a.func.__name__, a.store, a.json) == ("cards_command", "s", True)
    a = parser.parse_args(["judge", "cards", "export", "--store", "s", "--out", "f", "--force"])
    assert (a.func.__name__, a.store, a.out, a.force) == ("cards_export_command", "s", "f", True)
    a = parser.parse_args(["judge", "cards", "import", "f.cards"])
    assert (a.func.__name__, a.file) == ("cards_import_command", "f.cards")


@pytest.mark.parametrize(("call", "wanted"), [
    (lambda: __import__("harness.prompts").prompts.load_set("defualt"), "unknown prompt set 'defualt' (did you mean "
                                                                       "'default'?): known prompt sets are default, "),
    (lambda: __import__("harness.variants").variants.load_manifest("smolm2-135m-instruct"),
     "(did you mean 'smollm2-135m-instruct'?)"),
    (lambda: __import__("harness.devices").devices.load_profile("laptop-cpus"), "(did you mean 'laptop-cpu'?)"),
    (lambda: __import__("harness.judging.config").judging.config.load_judge("smollm2-scor"),
     "(did you mean 'smollm2-score'?)"),
    (lambda: __import__("harness.variants").variants.parse_spec("smollm2-135m-instruct:Q4_K_X"),
     "unknown variant 'Q4_K_X' of model 'smollm2-135m-instruct' (did you mean 'Q4_K_"),
])
def test_a_misspelt_name_gets_a_suggestion(call, wanted: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as exc:
        call()
    assert wanted in str(exc.value)


def test_nothing_close_suggests_nothing() -> None:
    from harness.errors import did_you_mean

    assert did_you_mean("zzzz", ["default", "qos"]) == ""
    assert did_you_mean("QOS", ["default", "qos"]) == " (did you mean 'qos'?)"


def test_variant_names_are_case_insensitive() -> None:
    from harness.variants import parse_spec

    m, variants = parse_spec("smollm2-135m-instruct:q4_k_m,ONNX-INT8,q4_1,Q8_0")
    assert variants == ["Q4_K_M", "onnx-int8", "Q4_1", "Q8_0"]


@pytest.mark.parametrize(("args", "wanted"), [
    (["modles", "list"], "unknown command 'modles' (did you mean 'models'?): choose from run, "),
    (["judge", "calibrat"], "unknown action 'calibrat' (did you mean 'calibrate'?): choose from calibrate, cards, fit "
                            "(see `harness judge --help`)"),
    (["judge", "cards", "burn"], "unknown action 'burn': choose from export, import"),
])
def test_a_misspelt_command_gets_a_suggestion(cli, args: list[str], wanted: str) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == 2 and wanted in r.err


def test_a_calibrate_option_without_calibrate_names_the_sub_command(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("judge", "--judge", "refusal-detector", "--set", "labels-csv:x.csv")
    assert r.code == 2 and "--set is for `harness judge calibrate`" in r.err


def test_a_harness_process_started_with_sigint_ignored_still_stops_on_ctrl_c() -> None:
    """A shell without job control starts `cmd &` with SIGINT ignored; harness puts KeyboardInterrupt back, as the
    labelling server's Ctrl-C and a fleet coordinator's SIGINT to its workers need."""
    import subprocess
    import sys

    code = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from harness.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr
