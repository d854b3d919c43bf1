"""Paths the tool opens: what a path is is decided before a byte is read, and gzip is read wherever a file is.

The rule, for every input and output path (stores, `--out`, imported files): the tool reads and writes regular
files only. A FIFO, a socket, a character or block device (`/dev/stdin`, `/dev/stdout` into a pipe or a
terminal, `/dev/zero`) is refused with a one-line UsageError before it is opened, because opening a FIFO blocks
until a writer comes, reading a terminal waits for a person, and sniffing a pipe's first bytes (is it SQLite?)
would consume them. A symbolic link is followed: the file it names is what is read or written.

- `file_kind(path)`: None for a regular file (or nothing there), else what the path is ("a FIFO", ...).
- `refuse_special(path, option)`: the UsageError for a path that exists and is not a regular file or folder.
- `base_suffix(path)`: the suffix that names the format ('.csv' for 'p.csv.gz').
- `read_bytes(path, what)`: an input file's bytes, gunzipped when they start with gzip's magic number (whatever
  the name: `.jsonl.gz` as HH-RLHF ships, or a renamed file), at most MAX_BYTES once expanded (a gzip bomb
  is refused, not expanded into memory).
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path

from harness.errors import UsageError

GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 2 * 1024**3  # an input file, once expanded
CHUNK = 1 << 20
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def file_kind(path: Path) -> str | None:
    """What `path` is when it is not a regular file ('a FIFO (named pipe)', 'a folder' ...); None for a regular
    file or a path where nothing is (a dangling symbolic link included). Never opens the path."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def refuse_special(path: Path, option: str) -> None:
    """UsageError when `path` exists and is neither a regular file nor a folder (folders have their own message)."""
    kind = file_kind(path)
    if kind is not None and kind != "a folder":
        raise UsageError(f"{option} {path} is {kind}, not a regular file: harness reads and writes regular files "
                         "only (no pipes or devices); pass a file path")


def regular_file(path: Path, what: str) -> Path:
    """`path`, checked to be an existing regular file (or a link to one); UsageError naming the fix otherwise."""
    kind = file_kind(path)
    if kind == "a folder":
        raise UsageError(f"{path} is a folder: pass the path of {what} file")
    refuse_special(path, "input")
    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the path of {what} file")
    return path


def base_suffix(path: Path) -> str:
    """The suffix that says a file's format, lower case, a compression suffix left aside ('p.csv.gz' -> '.csv')."""
    p = path.with_suffix("") if path.suffix.lower() == ".gz" else path
    return p.suffix.lower()


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of an input file (gunzipped if it is gzip); UsageError for a missing, special, unreadable or
    damaged file. `what` is a noun phrase with its article ('a prompts', 'an HH-RLHF')."""
    regular_file(path, what)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(GZIP_MAGIC))
            fh.seek(0)
            if head != GZIP_MAGIC:
                data = fh.read(MAX_BYTES + 1)
                if len(data) > MAX_BYTES:
                    raise _too_big(path)
                return data
            with gzip.GzipFile(fileobj=fh) as gz:
                return _gunzip(gz, path)
    except OSError as exc:
        if exc.strerror is None:  # gzip.BadGzipFile and friends
            raise UsageError(f"{path} starts like a gzip file but does not decompress ({exc}): pass an intact "
                             f"file, or decompress it first (gunzip -t {path} says what is wrong)") from exc
        raise UsageError(f"cannot read {path} ({exc.strerror}): check the path and its permissions") from exc


def _gunzip(gz: gzip.GzipFile, path: Path) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := gz.read(CHUNK):
            size += len(chunk)
            if size > MAX_BYTES:
                raise _too_big(path)
            parts.append(chunk)
    except (EOFError, zlib.error) as exc:
        raise UsageError(f"{path} is a damaged gzip file ({exc}): download it again, or decompress what is "
                         "there with gunzip and pass the result") from exc
    return b"".join(parts)


def _too_big(path: Path) -> UsageError:
    return UsageError(f"{path} is over {MAX_BYTES // 1024**3} GiB (once decompressed): split it into smaller files "
                      "and pass them one at a time")
