import json
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.prompts import HARM_CATEGORIES, ColumnMap, import_csv, import_jsonl, load_set, read_jsonl


def test_shipped_sets_cover_the_study_criteria_and_controls() -> None:
    harm = load_set("harm-eliciting")
    counts = Counter(p.category for p in harm)
    for c in HARM_CATEGORIES:
        assert counts[c] >= 20, c
    assert not any(p.benign for p in harm)
    benign = load_set("benign-controls")
    assert len(benign) >= 30 and all(p.benign for p in benign)
    assert any(p.category == "benign_looks_risky" for p in benign)
    default = load_set("default")
    assert len(default) == len(harm) + len(benign)
    assert len({p.id for p in default}) == len(default)


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "text": "hi"}\n{"id": "b", "text": \n')
    with pytest.raises(UsageError, match=r"p.jsonl:2: not valid JSON"):
        read_jsonl(f)
    f.write_text('{"id": "a", "text": "hi"}\n{"id": "a", "text": "again"}\n')
    with pytest.raises(UsageError, match="duplicate prompt id 'a'"):
        read_jsonl(f)
    f.write_text('{"id": "a"}\n')
    with pytest.raises(UsageError, match="missing text"):
        read_jsonl(f)


@pytest.mark.parametrize("line, said", [
    ('{"id": "b", "text": null}', "'text' is null, not a string"),
    ('{"id": "b", "text": ["how", "to"]}', "'text' is an array, not a string"),
    ('{"id": "b", "text": {"role": "user"}}', "'text' is an object, not a string"),
    ('{"id": "b", "text": false}', "'text' is true or false, not a string"),
    ('{"id": "b", "text": 7}', "'text' is an integer, not a string"),
    ('{"id": null, "text": "hi"}', "'id' is null, not a string or an integer"),
    ('{"id": [1], "text": "hi"}', "'id' is an array"),
])
def test_a_text_or_id_that_is_not_a_string_is_refused(tmp_path: Path, line: str, said: str) -> None:
    """A JSON null text used to become the prompt "None" (issue 20): every reader refuses it, naming file and line."""
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"p.jsonl:2: {said}"):
        read_jsonl(f)
    if said.startswith("'text'"):  # the importer numbers prompts whose id is missing or null
        with pytest.raises(UsageError, match=said):
            import_jsonl(f)
    f.write_text('{"id": 3, "text": "an integer id is fine"}\n', encoding="utf-8")
    assert read_jsonl(f)[0].id == "3"


def test_wrong_encoding_and_binary(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_bytes('{"id": "a", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(UsageError, match="not UTF-8.*iconv"):
        read_jsonl(f)
    f.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(UsageError, match="looks binary"):
        read_jsonl(f)
    f.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "bom ok"}\n')
    assert read_jsonl(f)[0].text == "bom ok"


def test_csv_import_with_column_mapping(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text('question,kind,safe\n"Tell me a joke, please",humor,yes\nHow do I pick a lock?,risky,no\n')
    ps = import_csv(f, ColumnMap(id=None, text="question", category="kind", benign="safe"))
    assert [p.text for p in ps] == ["Tell me a joke, please", "How do I pick a lock?"]
    assert [p.benign for p in ps] == [True, False] and ps[1].category == "risky"
    assert ps[0].id == "mine-00001"
    with pytest.raises(UsageError, match="no column 'text'"):
        import_csv(f)


def test_jsonl_import_and_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps({"qid": 7, "prompt": "Say hi"}) + "\n")
    ps = import_jsonl(f, ColumnMap(id="qid", text="prompt", category=None, benign=None), default_category="greeting")
    assert ps[0].id == "7" and ps[0].category == "greeting"
    out = tmp_path / "out.jsonl"
    r = cli("prompts", "import", f, "--out", out, "--id-column", "qid", "--text-column", "prompt")
    assert r.code == 0 and json.loads(out.read_text())["text"] == "Say hi"
    r = cli("prompts", "show", out, "--json")
    assert r.code == 0 and '"Say hi"' in r.out
    r = cli("prompts", "show", "no-such-set")
    assert r.code == 2 and "unknown prompt set 'no-such-set'" in r.err
