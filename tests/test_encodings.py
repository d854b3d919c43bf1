"""Decoding third-party files: UTF-8, UTF-16 with a BOM, Mac-Roman and Windows-1252 told apart, broken UTF-8."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_data
from storehelp import table_rows

from harness.encodings import decode_bytes, mojibake_share
from harness.errors import UsageError
from harness.humans import import_path, parse_path
from harness.store import Store

TEXT = "I’ve read the café’s “menu” — it’s naïve, isn’t it? Ça va."


@pytest.mark.parametrize("encoding", ["mac_roman", "cp1252"])
def test_legacy_code_pages_are_told_apart(encoding: str) -> None:
    d = decode_bytes(((TEXT + "\n") * 3).encode(encoding), "x")
    assert d.encoding == encoding and d.text == (TEXT + "\n") * 3
    assert d.note is not None and encoding in d.note


def test_mojibake_is_what_the_score_sees() -> None:
    assert mojibake_share(TEXT) == 0.0
    garbled = TEXT.encode("mac_roman").decode("cp1252")  # "IÕve read the cafŽÕs ..."
    assert mojibake_share(garbled) > 0.5


def test_utf8_with_a_few_broken_sequences_stays_utf8() -> None:
    raw = ("Naïve — “quoted” " * 20).encode("utf-8") + b" broken \xe2\x80? end"
    d = decode_bytes(raw, "x")
    assert d.encoding == "utf-8" and d.replaced == 1 and d.text.startswith("Naïve — “quoted”")
    assert "\ufffd" in d.text and "broken sequence" in (d.note or "")


def test_boms_and_clean_utf8() -> None:
    assert decode_bytes(TEXT.encode("utf-16"), "x").text == TEXT
    assert decode_bytes(b"\xef\xbb\xbf" + TEXT.encode(), "x").encoding == "utf-8-sig"
    d = decode_bytes(TEXT.encode(), "x")
    assert d.encoding == "utf-8" and d.note is None


def test_bomless_utf16_and_binary_are_refused_with_the_fix() -> None:
    with pytest.raises(UsageError, match="UTF-16LE.*iconv -f UTF-16LE"):
        decode_bytes(("a,b\n" + TEXT).encode("utf-16-le"), "f.csv")
    with pytest.raises(UsageError, match="binary"):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "f.csv")


def test_a_mac_roman_judge_comparison_file_imports_like_its_utf8_copy(tmp_path: Path) -> None:
    """JailbreakBench's judge-comparison file is Mac-Roman: decoding it as Latin-1 garbles its text."""
    sample = shared_data("jbb-judge-comparison-sample.csv")
    text = sample.read_text(encoding="utf-8").replace("'", "’")  # typographic quotes, as in the original file
    utf8, mac = tmp_path / "utf8.csv", tmp_path / "mac.csv"
    utf8.write_text(text, encoding="utf-8")
    mac.write_bytes(text.encode("mac_roman"))
    outs = {}
    for path in (utf8, mac):
        with Store.open(tmp_path / f"{path.stem}.sqlite") as store:
            report = import_path(store, "labels-csv", path, model="jbb")
            outs[path.stem] = sorted((g["prompt"], g["output"]) for g in table_rows(store, "generations"))
        if path is mac:
            assert report.repaired["file decoded as mac_roman (not UTF-8)"] == 1
            assert any("mac.csv: decoded as mac_roman" in n for n in report.notes)
    assert outs["utf8"] == outs["mac"] and any("’" in o for _, o in outs["mac"])


def test_utf8_inside_a_mac_roman_file_is_repaired_and_said() -> None:
    """JailbreakBench's Mac-Roman file holds four responses in UTF-8: read as Mac-Roman they become 'it‚Äôs' and
    'pi√±ata'; ftfy repairs them and the note counts the lines."""
    legacy = "Caf\u00e9 na\u00efve r\u00e9sum\u00e9, \u201cquoted\u201d\n" * 3
    raw = legacy.encode("mac_roman") + "it\u2019s a pi\u00f1ata\n".encode("utf-8") + legacy.encode("mac_roman")
    d = decode_bytes(raw, "x.csv")
    assert d.encoding == "mac_roman"
    assert "it\u2019s a pi\u00f1ata\n" in d.text and "\u201a\u00c4\u00f4" not in d.text
    assert d.text.count("Caf\u00e9 na\u00efve") == 6  # the legacy lines untouched
    assert d.repaired == 1 and d.note is not None and "1 line(s) held UTF-8" in d.note and "ftfy" in d.note


def test_a_binary_file_message_names_the_format_once(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'{"chosen": \x00\x01\x02')
    with pytest.raises(UsageError) as err:
        parse_path("pairwise-jsonl", p)
    assert "a a " not in str(err.value) and "pass the pairwise-jsonl (chosen / rejected) file as text" in str(err.value)
