"""Paths the tool opens and writes: the file type is decided before a byte is read (FIFOs and devices refused),
gzip read wherever a file is read, links written through, the umask respected, JSON Lines split on "\\n" only."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from harness import jsontext
from harness.errors import UsageError
from harness.infiles import file_kind, read_bytes
from harness.outputs import atomic_write, output_file
from harness.prompts import Prompt, import_jsonl, read_jsonl, write_jsonl
from harness.store import Store


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "pipe"
    os.mkfifo(p)
    return p


def test_file_kinds_are_told_without_opening(tmp_path: Path, fifo: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert file_kind(tmp_path / "f") is None and file_kind(tmp_path / "missing") is None
    assert file_kind(fifo) == "a FIFO (named pipe)" and file_kind(tmp_path) == "a folder"
    assert file_kind(Path("/dev/null")) == "a character device"


def test_fifos_and_devices_are_refused_everywhere_before_a_byte_is_read(tmp_path: Path, fifo: Path) -> None:
    # each of these would block forever on open() if the type were checked after reading
    for call in (lambda: output_file(fifo, force=True), lambda: Store.open(fifo), lambda: Store.open(fifo, readonly=True),
                 lambda: read_bytes(fifo, "a prompts"), lambda: read_jsonl(fifo), lambda: output_file("/dev/null")):
        with pytest.raises(UsageError, match="not a regular file"):
            call()
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(UsageError, match="a FIFO"):
        output_file(link, force=True)


def test_gzip_is_read_and_a_damaged_one_refused(tmp_path: Path) -> None:
    line = '{"id": "a", "text": "hello"}\n'
    p = tmp_path / "p.jsonl.gz"
    p.write_bytes(gzip.compress(line.encode()))
    assert read_bytes(p, "a prompts") == line.encode()
    assert [x.text for x in read_jsonl(p)] == ["hello"]
    renamed = tmp_path / "p.jsonl"  # recognised by its bytes, not its name
    renamed.write_bytes(p.read_bytes())
    assert [x.text for x in import_jsonl(renamed)] == ["hello"]
    p.write_bytes(gzip.compress(line.encode())[:-12])
    with pytest.raises(UsageError, match="damaged gzip"):
        read_bytes(p, "a prompts")
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UsageError, match="gzip"):
        read_bytes(p, "a prompts")


def test_a_link_is_written_through_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="already exists: pass --force"):
        output_file(link)
    out = output_file(link, force=True)
    assert out == target.resolve()
    with atomic_write(out) as fh:
        fh.write("new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "later.csv")
    assert output_file(dangling) == (tmp_path / "later.csv").resolve()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_respect_the_umask_and_old_ones_keep_their_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        p = tmp_path / "new.txt"
        with atomic_write(p) as fh:
            fh.write("x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
        p.chmod(0o640)
        with atomic_write(p) as fh:
            fh.write("y")
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_jsonl_splits_on_newline_only(tmp_path: Path) -> None:
    text = "one\u2028two\u0085three\u2029four\x1cfive\x0bsix\x0cseven"
    assert list(jsontext.jsonl_lines('{"a": 1}\r\n{"b": 2}\n')) == [(1, '{"a": 1}'), (2, '{"b": 2}'), (3, "")]
    out = tmp_path / "set.jsonl"
    write_jsonl([Prompt("a", text, "c", False, "s"), Prompt("b", "plain", "c", False, "s")], out)
    assert [p.text for p in read_jsonl(out)] == [text, "plain"]
    assert [p.text for p in import_jsonl(out)] == [text, "plain"]
