"""Untrusted text on the terminal and in Markdown is shown, never obeyed (harness.safetext): ESC / OSC / C1 /
BEL / CR / bidi controls from model, device, rater and annotator names and from outputs are escaped on every
console, table, line and CSV written to standard output; Markdown-active characters are escaped in leaderboard.md."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.table import Table

from harness import safetext
from harness.cli.console import echo, labelled, terminal, text
from harness.records import Generation, Rating, Run
from harness.store import Store

OSC_LINK = "\x1b]8;;http://evil.invalid\x07click\x1b]8;;\x07"
HOSTILE = ["\x1b[2J", "\x1b]0;owned\x07", "\x9b31m", "\x90dcs\x9c", "\u202egnp.exe", "a\rover", "\x07", "\x08"]
MD_HOSTILE = "![img](http://evil.invalid/x.png)[link](http://evil.invalid) <b>x</b> *em* `code` a|b $x$ " \
             "https://evil.invalid www.evil.invalid"
RAW_CONTROLS = ["\x1b", "\x9b", "\x90", "\x9c", "\x07", "\x08", "\r", "\u202e"]


def _no_raw_controls(s: str) -> None:
    s = s.replace("\r\n", "\n")  # CSV's own line ends
    for ch in RAW_CONTROLS:
        assert ch not in s, f"{ch!r} reached the output: {s!r}"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_terminal_text_escapes_every_control_character(hostile: str) -> None:
    shown = safetext.terminal(f"m{hostile}x")
    _no_raw_controls(shown)
    assert shown.startswith("m") and shown.endswith("x")
    assert safetext.terminal("tab\tand\nnewline ok, é, 😀") == "tab\tand\nnewline ok, é, 😀"
    assert safetext.line("a\nb") == "a\\nb"


def test_json_lines_stay_json_and_inert() -> None:
    doc = json.dumps({"model": "".join(HOSTILE), "out": "x\x85y\u2028z"}, ensure_ascii=False)
    shown = safetext.json_line(doc)
    _no_raw_controls(shown)
    assert "\x85" not in shown and "\u2028" not in shown
    assert json.loads(shown) == json.loads(doc)


def test_markdown_makes_no_link_image_html_or_emphasis() -> None:
    md = safetext.markdown(MD_HOSTILE + "\x1b[31m\nnext")
    assert "](" not in md and "<b>" not in md and "http://" not in md and "https://" not in md
    assert "www." not in md and "\n" not in md and "\x1b" not in md
    assert "\\*em\\*" in md and "\\`code\\`" in md and "a\\|b" in md and "\\$x\\$" in md
    # what is not active stays readable
    assert safetext.markdown("12% [6-79%] (n=3) offensive_content front: speed") == \
        "12% [6-79%] (n=3) offensive_content front: speed"


def test_consoles_tables_and_lines_escape_what_reaches_them(capsys: pytest.CaptureFixture[str]) -> None:
    console = terminal(width=200)
    console.print(OSC_LINK)  # a plain string
    console.print(text("".join(HOSTILE)))
    console.print(labelled("device", "\x1b[1mdev", "model", "\x9bm"))
    table = Table(title="t")
    table.add_column("model")
    table.add_row(text(OSC_LINK))
    table.add_row("\x1b]0;title\x07")  # a str cell, not built with text()
    console.print(table)
    echo("\x1b[2Jcleared")
    echo(OSC_LINK, err=True)
    out, err = capsys.readouterr()
    _no_raw_controls(out + err)
    assert "\\x1b]8;;http://evil.invalid\\x07click" in out and "\\x1b[2Jcleared" in out


def test_rich_styles_still_work_on_a_terminal() -> None:
    from harness.cli.console import _TextConsole

    buf = io.StringIO()  # a colour terminal: rich's own ESC sequences pass, the text's do not
    console = _TextConsole(file=buf, force_terminal=True, color_system="standard", markup=False, highlight=False)
    console.print(text("\x1b[31mred", style="bold"))
    assert "\x1b[1m" in buf.getvalue() and "\\x1b[31mred" in buf.getvalue() and "\x1b[31m" not in buf.getvalue()


def _hostile_store(path: Path) -> None:
    model, device, rater = "m\x1b]0;owned\x07" + MD_HOSTILE, "dev\x9b2J\u202e", "rater\x1b[8m"
    gens = [Generation(sample_key=f"k{i}", run_id="r1", device=device, model=model, variant="Q4\x07_1",
                       backend="gguf", prompt_id=f"p{i}", category="test", benign=False, prompt="P?",
                       prompt_sha256="0" * 64, output=f"\x1b[2Jout {i}", n_output_tokens=5, decode_tps=10.0 + i,
                       ttft_s=0.1, latency_s=0.5, peak_rss_bytes=10**8) for i in range(3)]
    ratings = [Rating(rating_key=f"r{i}", source="import:x", rater=rater, rater_kind="human", task="label",
                      item_id=f"p{i}", sample_key=f"k{i}", model=model, code=1, harmful=i % 2, prompt_id=f"p{i}")
               for i in range(3)]
    with Store.open(path) as st:
        st.add([Run(run_id="r1", started_at=1.0, status="finished", command="harness run")])
        st.add([*gens, *ratings])


def test_commands_print_hostile_names_escaped(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "s.sqlite"
    _hostile_store(store)
    for args in (["leaderboard", "--store", store], ["export", "--store", store, "--format", "csv"],
                 ["export", "--store", store, "--format", "jsonl"], ["export", "--store", store, "--table", "ratings"]):
        r = cli(*args)
        assert r.code == 0, r.err
        _no_raw_controls(r.out + r.err)
        assert "\\x1b" in r.out or "\\u001b" in r.out
    rows = list(csv.DictReader(io.StringIO(cli("export", "--store", store, "--format", "csv").out)))
    assert rows[0]["output"].startswith("\\x1b[2Jout")
    lines = cli("export", "--store", store, "--format", "jsonl").out.splitlines()
    assert json.loads(lines[0])["output"].startswith("\x1b[2Jout")  # JSON escapes: the value reads back as it is
    out = tmp_path / "rows.jsonl"
    assert cli("export", "--store", store, "--out", out).code == 0
    assert "dev\x9b2J\u202e" in out.read_text(encoding="utf-8")  # a file gets the values as they are


def test_leaderboard_markdown_has_no_live_link_image_or_escape(tmp_path: Path) -> None:
    from harness.reporting import write_report

    store = tmp_path / "s.sqlite"
    _hostile_store(store)
    with Store.open(store) as st:
        write_report(st, tmp_path / "out", bootstrap=0)
    md = (tmp_path / "out" / "leaderboard.md").read_text(encoding="utf-8")
    _no_raw_controls(md)
    assert "](" not in md and "<b>" not in md and "http://evil" not in md and "https://evil" not in md
    assert "\\*em\\*" in md and "\\\\x1b" in md
