"""Files the tool writes for people: checked output paths, atomic writes, and spreadsheet-safe CSV cells.

- `output_file(path, force=...)`: where an export, an imported prompt set or a batch file goes. Refused with
  a one-line UsageError: a folder, a FIFO, socket or device (`/dev/stdout` included: harness writes regular files
  only, see harness.infiles; decided before the path is opened), any SQLite database (a results store above all:
  its header is checked, whatever its name), a store's -wal/-shm/-journal companion, and an existing file unless
  `force` (every overwrite needs it). A symbolic link is followed: the returned path is the file it names, so the
  link itself is never replaced, and the file it names passes the same checks.
- `atomic_write(path)`: write to a unique temporary file beside the target and rename it over the target only
  when everything was written, so a failed export never leaves half a file or destroys the old one. The new file
  gets the old file's permissions, or for a new file what the umask allows (0666 & ~umask), like `open()`.
- `write_text(path, text)`: a file of a report folder, written atomically through the same checks (forced: the
  folder is the tool's own output).
- `spreadsheet_cell(value)`: a CSV cell that a spreadsheet will not run as a formula. Text starting with
  `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's advice for CSV injection);
  numbers are written as numbers. Model outputs are adversarial text, so every CSV meant for people uses it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import UsageError
from harness.infiles import file_kind, refuse_special

SQLITE_HEADER = b"SQLite format 3\x00"
STORE_COMPANIONS = ("-wal", "-shm", "-journal")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def is_sqlite(path: Path) -> bool:
    """Whether the file starts with SQLite's header (any SQLite database, whatever its name). Only a regular file is
    opened to look: a FIFO would block."""
    if file_kind(path) is not None:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def output_file(path: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """The checked path of a file about to be written (see the module docstring)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{option} {p} is a folder: pass a file path, e.g. {p / 'out.csv'}")
    refuse_special(p, option)
    if p.is_symlink():
        p = Path(os.path.realpath(p))  # write through the link (the file it names), never replace the link
        if p.is_dir():
            raise UsageError(f"{option} {path} is a link to the folder {p}: pass a file path")
    for suffix in STORE_COMPANIONS:
        if p.name.endswith(suffix) and is_sqlite(p.with_name(p.name[: -len(suffix)])):
            raise UsageError(f"{option} {p} belongs to the SQLite database {p.name[: -len(suffix)]}: "
                             "pass another file name")
    if p.exists():
        if is_sqlite(p):
            raise UsageError(f"{option} {p} is an SQLite database (a results store?): refusing to overwrite it; "
                             "pass another file name")
        if not p.is_file():
            raise UsageError(f"{option} {p} is not a regular file: pass a file path")
        if not force:
            raise UsageError(f"{option} {p} already exists: pass --force to overwrite it, or another file name")
    if not p.parent.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder {p.parent} ({exc.strerror}): pass a writable {option}") from exc
    elif not p.parent.is_dir():
        raise UsageError(f"{option} {p}: {p.parent} is a file, not a folder")
    return p


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path`, on any error it is removed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _new_mode(path))
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                       newline=newline if "b" not in mode else None) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_mode(path: Path) -> int:
    """The permissions the written file gets: the old file's, else 0666 less the umask (mkstemp's 0600 is not
    what the user asked for)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_text(path: Path, text: str) -> None:
    """Write a file of a report folder through output_file's checks (forced) and atomically."""
    with atomic_write(output_file(path, force=True)) as fh:
        fh.write(text)


def spreadsheet_cell(value: Any) -> Any:
    """A value for a CSV cell that a spreadsheet will show as text, never evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
