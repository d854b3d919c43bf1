"""Numbers from outside go through one bounded parser (harness.numbers) and every outside JSON through jsontext:
a 5000-digit integer, a 20-digit one, NaN, Infinity, 1e400, a lone surrogate or a document nested too deeply is a
one-line error (or an invalid value with its reason), never an exception, an overflow or an infinity stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import jsontext, numbers
from harness.devices import parse_size
from harness.errors import UsageError
from harness.humans.rankings import parse_ranking
from harness.judging.parsing import parse_score
from harness.records import Generation, Rating
from harness.store import Store
from harness.tomlfile import read_toml

BIG = "9" * 5000


@pytest.mark.parametrize("text, value", [("0", 0), (" -12 ", -12), ("+7", 7), ("9223372036854775807", 2**63 - 1),
                                         ("-9223372036854775808", -(2**63)), ("000000000000000000000001", 1)])
def test_whole_numbers_in_range(text: str, value: int) -> None:
    assert numbers.parse_int(text) == value


@pytest.mark.parametrize("text", [BIG, "9223372036854775808", "-" + "1" * 20, "1" * 4301])
def test_whole_numbers_out_of_range(text: str) -> None:
    with pytest.raises(numbers.OutOfRange, match="out of range") as exc:
        numbers.parse_int(text)
    assert len(str(exc.value)) < 120  # the number is described, not quoted whole


def test_not_a_number_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError) as exc:
        numbers.parse_int("twelve")
    assert not isinstance(exc.value, numbers.OutOfRange)


@pytest.mark.parametrize("text", ["inf", "-Infinity", "nan", "1e400", BIG + ".5", "1" * 401])
def test_reals_must_be_finite(text: str) -> None:
    with pytest.raises(numbers.OutOfRange):
        numbers.parse_float(text)
    assert numbers.parse_float(" 1.5e3 ") == 1500.0


def test_huge_ints_are_described_without_str() -> None:
    assert numbers.describe_int(10**5000) == "a 16,610-bit number"
    with pytest.raises(numbers.OutOfRange, match="16,610-bit"):
        numbers.check_int(10**5000)


@pytest.mark.parametrize("doc, why", [
    ('{"id": ' + BIG + "}", "out of range"), ('{"id": 12345678901234567890}', "out of range"),
    ("[NaN]", "NaN is not a JSON number"), ("[Infinity]", "Infinity"), ("[-Infinity]", "-Infinity"),
    ("[1e400]", "not a finite number"), ("[-1e400]", "not a finite number"),
    ('{"text": "a\\ud800b"}', "lone surrogate (\\ud800)"), ('["\\udfff"]', "lone surrogate"),
    ('{"\\ud800": 1}', "lone surrogate"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_outside_json_out_of_range_is_malformed(doc: str, why: str) -> None:
    with pytest.raises(json.JSONDecodeError) as exc:
        jsontext.loads(doc)
    assert why in exc.value.msg


def test_outside_json_in_range_reads_as_before() -> None:
    assert jsontext.loads(' {"a": [1, -2.5e3, "\\ud83d\\ude00", null, true, 9223372036854775807]} ') == \
        {"a": [1, -2500.0, "\U0001F600", None, True, 2**63 - 1]}
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads('{"a": 1} trailing')
    assert jsontext.raw_decode(jsontext.decoder(), 'x {"a": 2} y', 2) == ({"a": 2}, 10)


def test_a_judge_answer_with_a_huge_number_is_invalid_not_a_crash() -> None:
    for answer in ('{"score": ' + BIG + "}", "Score: " + BIG, '{"score": 1e400}', '{"score": NaN}', '{"score": "'
                   + BIG + '"}'):
        parsed = parse_score(answer)
        assert not parsed.ok, answer


def test_a_huge_rank_is_outside_the_range() -> None:
    parsed = parse_ranking(f"{BIG},1", 2)
    assert not parsed.ok and "outside 1..2" in (parsed.error or "") and len(parsed.error or "") < 200


@pytest.mark.parametrize("text, fragment", [("9" * 400 + "GB", "below 8 EiB"), ("9" * 300 + "TiB", "below 8 EiB"),
                                            ("0.0000001B", "must be positive"), ("0GB", "must be positive")])
def test_sizes_that_overflow_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_size(text, "memory_budget")
    assert parse_size("1.5GiB") == int(1.5 * 2**30)


@pytest.mark.parametrize("toml, fragment", [(f"threads = {BIG}\n", "not valid TOML"),
                                            ("n_ctx = 99999999999999999999\n", "out of range"),
                                            ("a = [1, {b = -99999999999999999999}]\n", "out of range"),
                                            ("x = inf\n", "not a finite number"), ("x = nan\n", "not a finite number"),
                                            ("x = 1e400\n", "not a finite number")])
def test_toml_numbers_are_bounded(tmp_path: Path, toml: str, fragment: str) -> None:
    p = tmp_path / "d.toml"
    p.write_text(toml)
    with pytest.raises(UsageError, match=fragment) as exc:
        read_toml(p)
    assert str(p) in str(exc.value) and len(str(exc.value)) < 400


def test_a_store_json_column_out_of_range_reads_as_text(tmp_path: Path) -> None:
    """A shard or store edited by hand: a JSON column holding a 5000-digit number stays text, not a crash."""
    import sqlite3

    path = tmp_path / "s.sqlite"
    g = Generation(sample_key="k", run_id="r", device="d", model="m", variant="v", backend="gguf", prompt_id="p",
                   prompt="p",
                   prompt_sha256="0" * 64, output="o")
    with Store.open(path) as st:
        st.add([g, Rating(rating_key="x", source="s", rater="r", rater_kind="human", task="label", item_id="i",
                          sample_key="k", model="m", extra={"a": 1})])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE ratings SET extra = ?", ('{"a": ' + BIG + "}",))
    conn.commit()
    conn.close()
    with Store.open(path, readonly=True) as st:
        (rating,) = st.records("ratings")
    assert rating.extra == '{"a": ' + BIG + "}"


def test_an_ollama_manifest_nested_too_deeply_is_a_usage_error(tmp_path: Path) -> None:
    from harness.variants.ollama import _read_json

    p = tmp_path / "latest"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match="nested too deeply"):
        _read_json(p, "Ollama manifest")


def test_importers_quote_a_huge_value_in_one_short_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = tmp_path / "l.csv"
    labels.write_text(f"goal,prompt,target_response,human1,human2,human_majority\ng,p,r,{BIG},1,{BIG}\n")
    r = cli("humans", "import", "labels-csv", labels, "--store", tmp_path / "s.sqlite")
    assert r.code == 0 and "unreadable human1 label" in r.out + r.err
    assert max(len(line) for line in (r.out + r.err).splitlines()) < 500
    prompts = tmp_path / "p.csv"
    prompts.write_text(f"id,text,benign\n{BIG},hello,{BIG}\n")
    r = cli("prompts", "import", prompts, "--out", tmp_path / "o.jsonl")
    assert r.code == 2 and "'benign' must be true or false" in r.err and len(r.err) < 300


def test_reverse_groups_and_sheet_positions_are_bounded() -> None:
    from harness.cli.humans import parse_groups
    from harness.humans.sheets import _position

    assert parse_groups("group 10, 3") == {10, 3}
    with pytest.raises(UsageError, match="give group numbers"):
        parse_groups("1," + BIG)
    assert _position(BIG) == 0 and _position("4") == 4 and _position("") == 0
