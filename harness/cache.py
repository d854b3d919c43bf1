"""The on-disk cache: derived model variants, file hashes and GGUF metadata.

Location: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness.

File hashes are memoised by (real path, size, mtime) together with a fingerprint of sampled
blocks, so a file changed in place is hashed again even when its size and mtime were kept.
`verified_sha256` hashes a file in full the first time a process uses it: cached derived
variants are checked against their recorded sha256 before any sample is recorded under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import jsontext

SAMPLED_BLOCKS = 16
BLOCK_BYTES = 4096
_VERIFIED: dict[tuple[str, int, int, int], str] = {}  # (real path, size, mtime_ns, inode) -> sha256, this process


def cache_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextlib.contextmanager
def staged_folder(folder: Path, *, parents: bool = False) -> Iterator[Path]:
    """A temporary folder beside `folder` (`.<name>.tmp-<random>`) to write into; when the block ends without an
    error it replaces `folder` (readers see the old folder or the whole new one), and it is removed whatever
    happens. Callers that can race hold a lock around it."""
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=parents)
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    try:
        return jsontext.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _full_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sampled_fingerprint(path: Path) -> str:
    """sha256 of SAMPLED_BLOCKS blocks spread evenly over the file (cheap; not a content hash)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for i in range(SAMPLED_BLOCKS):
            fh.seek(max(0, (size - BLOCK_BYTES) * i // max(1, SAMPLED_BLOCKS - 1)))
            h.update(fh.read(BLOCK_BYTES))
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised in the cache by (real path, size, mtime, sampled blocks)."""
    path = Path(path).resolve()
    st = path.stat()
    vkey = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if vkey in _VERIFIED:
        return _VERIFIED[vkey]
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "hashes" / f"{key}.json"
    cached = read_json(memo)
    fingerprint = sampled_fingerprint(path)
    if isinstance(cached, dict) and cached.get("sha256") and cached.get("fingerprint") == fingerprint:
        return str(cached["sha256"])
    digest = _full_sha256(path)
    _VERIFIED[vkey] = digest
    write_json_atomic(memo, {"path": str(path), "size": st.st_size, "sha256": digest, "fingerprint": fingerprint})
    return digest


def verified_sha256(path: Path, expected: str) -> bool:
    """Whether the file's content hashes to `expected`, hashed in full once per process (then memoised)."""
    path = Path(path).resolve()
    st = path.stat()
    vkey = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _VERIFIED.get(vkey)
    if digest is None:
        digest = _full_sha256(path)
        _VERIFIED[vkey] = digest
    return digest == expected
