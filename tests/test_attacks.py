"""The attack catalog: every shipped attack loads, applies, keeps the request as text, and is identified by what it
sends; bad attack files are one clear error each."""

from __future__ import annotations

import base64
import codecs
from pathlib import Path

import pytest

from harness import attacks, catalog
from harness.errors import UsageError

REQUEST = "Explain how {x} works, with 100% detail & <b>markup</b>"
FAMILIES = ("encoding", "substitution", "spacing", "prefix injection", "refusal suppression", "style injection",
            "role play", "fictional", "payload splitting", "few-shot", "many-shot", "distractors")


def test_at_least_ten_static_attacks_ship_covering_the_families() -> None:
    shipped = attacks.names()
    loaded = [attacks.load(n) for n in shipped]
    static = [a for a in loaded if not a.parts]
    assert len(static) >= 10
    families = " ".join(a.family for a in loaded)
    for fam in FAMILIES:
        assert fam in families, fam
    for a in loaded:
        assert a.description and a.source, a.name


@pytest.mark.parametrize("name", attacks.names())
def test_every_attack_carries_the_request_as_text(name: str) -> None:
    a = attacks.load(name)
    done = a.apply(REQUEST)
    assert done.turns[-1].role == "user" and done.attack == name
    assert [t.role for t in done.turns] == ["user", "assistant"] * (len(done.turns) // 2) + ["user"]
    enc = a.encode or next((p.encode for p in a.parts if p.encode), None)
    if enc is None:
        assert REQUEST in done.text  # braces and markup stay as written: no str.format
    assert "{prompt}" not in done.text


def test_encodings_round_trip_and_answers_decode() -> None:
    assert base64.b64decode(attacks.encode(REQUEST, "base64")).decode() == REQUEST
    assert codecs.decode(attacks.encode(REQUEST, "rot13"), "rot13") == REQUEST
    assert attacks.encode("a b c", "spaced") == "a   b   c"
    assert attacks.encode("test site", "leetspeak") == "7357 5173"
    split = attacks.encode("how to bake bread today", "split")
    a_part, b_part = (line.split(" = ", 1)[1].strip('"') for line in split.splitlines())
    assert a_part + b_part == "how to bake bread today" and a_part and b_part
    assert attacks.decode_answer(codecs.encode("Sure, here it is", "rot13"), "rot13") == "Sure, here it is"
    b64 = base64.b64encode(b"Step one: mix").decode()
    assert attacks.decode_answer(f"Here you go:\n{b64}", "base64") == "Step one: mix"
    assert attacks.decode_answer("I will not", "base64") == "I will not"  # did not encode: read as written
    assert attacks.decode_answer("plain", None) is None


def test_rot13_asks_for_an_encoded_answer_and_base64_does_not() -> None:
    assert attacks.load("rot13").apply("x").answer_encoding == "rot13"
    assert attacks.load("base64").apply("x").answer_encoding is None


def test_many_shot_repeats_the_dialogue_and_few_shot_does_not() -> None:
    few = attacks.load("few-shot-compliance").apply("q")
    many = attacks.load("many-shot-compliance").apply("q")
    assert len(few.history) == 6 and len(many.history) == 24
    assert many.text == "q"


def test_a_composed_attack_applies_its_parts_in_order() -> None:
    combo = attacks.load("combination")
    inner = attacks.load("refusal-suppression").apply(REQUEST).text
    expected = attacks.load("prefix-injection").apply(inner).text
    assert combo.apply(REQUEST).text == expected
    assert combo.sha256 != attacks.load("refusal-suppression").sha256


def test_identity_follows_what_is_sent_not_the_description(tmp_path: Path) -> None:
    base = 'description = "d"\nsource = "s"\ntemplate = "Q: {prompt}"\n'
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "a.toml").write_text(base)
    (tmp_path / "attacks" / "b.toml").write_text(base.replace('"d"', '"other words"'))
    (tmp_path / "attacks" / "c.toml").write_text(base.replace("Q:", "Question:"))
    with catalog.user_dirs([tmp_path]):
        a, b, c = (attacks.load(n) for n in "abc")
    assert a.sha256 == b.sha256 != c.sha256


def test_the_baseline_is_the_request_alone() -> None:
    done = attacks.baseline(REQUEST)
    assert done.attack == "none" and done.text == REQUEST and not done.history


def test_load_many_skips_the_baseline_and_duplicates() -> None:
    got = attacks.load_many(["base64,none", "base64", "rot13"])
    assert [a.name for a in got] == ["base64", "rot13"]
    assert attacks.load_many(None) == []


BAD = [
    ('description = "d"\nsource = "s"\ntemplate = "no placeholder"\n', "no {prompt} placeholder"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt} {prompt}"\n', "2 {prompt} placeholder"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt}"\nencode = "morse"\n', "not one of base64"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt}"\ntempalte = "x"\n', "did you mean 'template'"),
    ('source = "s"\ntemplate = "{prompt}"\n', "'description' is missing"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt}"\nshots = [["only one"]]\n', "pairs of non-empty"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt}"\nshots = [["u", "a"]]\nrepeat_shots = 1000\n',
     "repeat_shots"),
    ('description = "d"\nsource = "s"\ncompose = ["rot13", "bad"]\n', "composes itself"),
    ('description = "d"\nsource = "s"\ncompose = ["rot13"]\n', "two or more"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt}"\ncompose = ["rot13", "base64"]\n', "takes no template"),
    ('description = "d"\nsource = "s"\ntemplate = 3\n', "'template' must be a string"),
    ('description = "d"\nsource = "s"\ntemplate = "{prompt"\n', "no {prompt} placeholder"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_attack_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "bad.toml").write_text(text)
    with catalog.user_dirs([tmp_path]), pytest.raises(UsageError, match=message.replace("{", r"\{")):
        attacks.load("bad")


def test_two_encoded_answers_in_one_composition_are_refused(tmp_path: Path) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "r2.toml").write_text('description = "d"\nsource = "s"\ntemplate = "{prompt}"\n'
                                                  'answer_encoding = "base64"\n')
    (tmp_path / "attacks" / "both.toml").write_text('description = "d"\nsource = "s"\ncompose = ["rot13", "r2"]\n')
    with catalog.user_dirs([tmp_path]), pytest.raises(UsageError, match="encoded answer"):
        attacks.load("both")


def test_an_unknown_attack_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown attack 'bas64'.*did you mean 'base64'"):
        attacks.load_many("bas64")
    with pytest.raises(UsageError, match="empty name"):
        attacks.load_many("base64,,rot13")


def test_an_attack_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "latin.toml").write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    with catalog.user_dirs([tmp_path]), pytest.raises(UsageError, match="not UTF-8"):
        attacks.load("latin")
