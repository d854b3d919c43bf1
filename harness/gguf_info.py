"""Reads what a GGUF file says about itself: architecture, file type, tensor types, chat template.

Uses the `gguf` package (slow on large vocabularies), so results are cached by
the file's sha256. `check_gguf` validates a file cheaply before llama.cpp sees it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from harness.cache import cache_dir, file_sha256, read_json, write_json_atomic
from harness.errors import UsageError, require

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Raise UsageError if the file is missing, not GGUF, or truncated."""
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist: check the manifest's path")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] != GGUF_MAGIC:
        raise UsageError(f"{path} is not a GGUF file (magic {head[:4]!r}): point the manifest at a .gguf model")
    info = read_info(path)
    if info["data_end"] > size:
        raise UsageError(
            f"{path} is truncated ({size} bytes, tensors need {info['data_end']}): re-download or re-derive it"
        )


def read_info(path: Path) -> dict[str, Any]:
    """Metadata of a GGUF file, cached by sha256."""
    digest = file_sha256(path)
    memo = cache_dir() / "gguf-info" / f"{digest}.json"
    cached = read_json(memo)
    if isinstance(cached, dict) and cached.get("version") == 2:
        return cached
    gguf = require("gguf", "gguf", "Reading GGUF metadata")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        raise UsageError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}): re-download or re-derive it") from exc

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # noqa: BLE001 - older gguf versions lack contents()
            return None

    types = Counter(t.tensor_type.name for t in reader.tensors)
    data_end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    file_type = field("general.file_type")
    ftype_name = None
    if file_type is not None:
        try:
            ftype_name = gguf.LlamaFileType(int(file_type)).name.replace("MOSTLY_", "")
        except ValueError:
            ftype_name = str(file_type)
    arch = field("general.architecture")
    info = {
        "version": 2,
        "sha256": digest,
        "architecture": arch,
        "name": field("general.name"),
        "file_type": ftype_name,
        "n_tensors": len(reader.tensors),
        "n_parameters": n_params,
        "tensor_types": dict(types.most_common()),
        "chat_template": field("tokenizer.chat_template"),
        "context_length": field(f"{arch}.context_length") if arch else None,
        "n_layers": field(f"{arch}.block_count") if arch else None,
        "data_end": data_end,
        "tensor_bytes": sum(int(t.n_bytes) for t in reader.tensors),
    }
    write_json_atomic(memo, info)
    return info
