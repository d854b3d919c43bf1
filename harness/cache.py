"""The on-disk cache: derived model variants, file hashes and GGUF metadata.

Location: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"
    base.mkdir(parents=True, exist_ok=True)
    return base


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised in the cache by (real path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "hashes" / f"{key}.json"
    cached = read_json(memo)
    if isinstance(cached, dict) and cached.get("sha256"):
        return str(cached["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    write_json_atomic(memo, {"path": str(path), "size": st.st_size, "sha256": digest})
    return digest


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
