"""GGUF files: one cached reader of what a file says about itself, llama.cpp's quantizer, and GGUF variants.

`read_info(path)` is the only place a GGUF header is parsed (with the `gguf` package, slow on large
vocabularies): architecture, file type, tensor types and sizes, the KV cache's bytes per context token,
tokenizer facts and the chat template, cached by the file's sha256 (memory and disk). Derived variants
(F16, Q8_0, Q4_K_M, ...) are made by llama.cpp's own quantizer under a per-variant lock, written to a
unique temporary file and renamed into place, and verified by their recorded sha256 before use: a cached file changed
in place is derived again, never used under the healthy file's hash.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.cache import cache_dir, file_sha256, read_json, verified_sha256, write_json_atomic
from harness.errors import UsageError, require
from harness.variants.manifest import GGUF_FTYPES, ModelManifest, VariantFile, source_path

GGUF_MAGIC = b"GGUF"
INFO_VERSION = 4
ProgressFn = Callable[[str], None]

_INFO: dict[str, dict[str, Any]] = {}  # sha256 -> info, for this process


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


def read_info(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Metadata of a GGUF file, cached by sha256."""
    digest = sha256 or file_sha256(path)
    if digest in _INFO:
        return _INFO[digest]
    memo = cache_dir() / "gguf-info" / f"{digest}.json"
    cached = read_json(memo)
    if isinstance(cached, dict) and cached.get("version") == INFO_VERSION:
        _INFO[digest] = cached
        return cached
    gguf = require("gguf", "gguf", "Reading GGUF metadata")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        raise UsageError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}): "
                         "re-download or re-derive it") from exc

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # noqa: BLE001 - older gguf versions lack contents()
            return None

    types = Counter(t.tensor_type.name for t in reader.tensors)
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    data_end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    file_type = field("general.file_type")
    ftype_name = None
    if file_type is not None:
        try:
            ftype_name = gguf.LlamaFileType(int(file_type)).name.replace("MOSTLY_", "")
        except ValueError:
            ftype_name = str(file_type)
    arch = field("general.architecture")
    add_bos = field("tokenizer.ggml.add_bos_token")
    kv_dims = [field(f"{arch}.{k}") if arch else None for k in (
        "block_count", "embedding_length", "attention.head_count", "attention.head_count_kv", "attention.key_length",
        "attention.value_length")]
    info = {
        "version": INFO_VERSION,
        "sha256": digest,
        "architecture": arch,
        "name": field("general.name"),
        "license": field("general.license"),
        "file_type": ftype_name,
        "n_tensors": len(reader.tensors),
        "n_parameters": sum(int(t.n_elements) for t in reader.tensors),
        "tensor_types": dict(types.most_common()),
        "chat_template": field("tokenizer.chat_template"),
        "context_length": field(f"{arch}.context_length") if arch else None,
        "n_layers": field(f"{arch}.block_count") if arch else None,
        "kv_bytes_per_token": kv_bytes_per_token(*kv_dims),
        "data_end": data_end,
        "tensor_bytes": sum(sizes.values()),
        "token_embd_bytes": sizes.get("token_embd.weight"),
        "has_output_weight": "output.weight" in sizes,
        "bos_token_id": field("tokenizer.ggml.bos_token_id"),
        "eos_token_id": field("tokenizer.ggml.eos_token_id"),
        "eot_token_id": field("tokenizer.ggml.eot_token_id"),
        "add_bos_token": bool(add_bos) if add_bos is not None else True,
    }
    write_json_atomic(memo, info)
    _INFO[digest] = info
    return info


def _per_layer(value: Any, n_layers: int) -> list[int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n_layers
    if isinstance(value, list) and len(value) == n_layers and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def kv_bytes_per_token(n_layers: Any, n_embd: Any, n_head: Any, n_head_kv: Any = None, key_length: Any = None,
                       value_length: Any = None) -> int | None:
    """Bytes of llama.cpp's default KV cache (keys and values in f16) per context token, from a GGUF's attention
    sizes (head counts may be per layer); None when the file does not say."""
    if not isinstance(n_layers, int) or not isinstance(n_embd, int) or n_layers <= 0:
        return None
    heads = _per_layer(n_head, n_layers)
    kv_heads = _per_layer(n_head_kv if n_head_kv is not None else n_head, n_layers)
    if heads is None or kv_heads is None or not any(heads):
        return None
    head_dim = n_embd // max(heads)
    k_dim = key_length if isinstance(key_length, int) and key_length > 0 else head_dim
    v_dim = value_length if isinstance(value_length, int) and value_length > 0 else head_dim
    return 2 * sum(h * (k_dim + v_dim) for h in kv_heads)


def bytes_per_token(path: Path, sha256: str) -> int:
    """Weight bytes one decode step reads: every tensor, except a token-embedding table that is only looked up
    (when a separate output matrix exists); a tied embedding is the output matrix too."""
    info = read_info(path, sha256)
    total = int(info["tensor_bytes"])
    if info.get("has_output_weight") and info.get("token_embd_bytes"):
        total -= int(info["token_embd_bytes"])
    return total


def brief(info: dict[str, Any]) -> dict[str, Any]:
    """What a run records about a GGUF file."""
    return {k: info.get(k) for k in ("architecture", "file_type", "n_parameters", "tensor_types", "n_layers",
                                     "tensor_bytes")}


# -- deriving variants ---------------------------------------------------------------------------
def derived_dir(m: ModelManifest, source_sha: str) -> Path:
    return cache_dir() / "models" / m.name / source_sha[:16]


def resolve(m: ModelManifest, variant: str, progress: ProgressFn | None = None) -> VariantFile:
    """The GGUF file for a variant: the shipped file, or a derived one (derived and cached first if needed)."""
    src = source_path(m)
    check_gguf(src)
    src_sha = file_sha256(src)
    if variant == m.source_variant:
        return VariantFile(m.name, variant, "gguf", src, src_sha, src.stat().st_size, None,
                           {"gguf": brief(read_info(src, src_sha))})
    out_dir = derived_dir(m, src_sha)
    target = out_dir / f"{m.name}.{variant}.gguf"
    meta_path = out_dir / f"{m.name}.{variant}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / f".{variant}.lock"):
        meta = read_json(meta_path)
        healthy = (target.is_file() and isinstance(meta, dict) and meta.get("size_bytes") == target.stat().st_size
                   and verified_sha256(target, str(meta.get("sha256"))))
        if not healthy:
            if progress:
                why = "the cached file does not match its recorded sha256; " if target.is_file() else ""
                progress(f"deriving {m.name}:{variant} from {m.source_variant} with llama.cpp's quantizer "
                         f"({why}cached in {out_dir})")
            quantize_gguf(src, target, variant)
            meta = {"source": str(src), "source_sha256": src_sha, "source_variant": m.source_variant,
                    "variant": variant, "size_bytes": target.stat().st_size, "sha256": file_sha256(target)}
            write_json_atomic(meta_path, meta)
    assert isinstance(meta, dict)
    check_gguf(target)
    info = read_info(target, str(meta["sha256"]))
    return VariantFile(m.name, variant, "gguf", target, str(meta["sha256"]), int(meta["size_bytes"]),
                       m.source_variant, {"gguf": brief(info), "requantized_from": m.source_variant})


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two runs deriving the same variant wait for each other)."""
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def quantize_gguf(src: Path, dst: Path, variant: str) -> None:
    """Derive `variant` from `src` with llama.cpp's quantizer (requantizing if needed), atomically."""
    llama_cpp = require("llama_cpp", "gguf", "Quantizing GGUF models")
    ftype = getattr(llama_cpp, GGUF_FTYPES[variant], None)
    if ftype is None:
        raise UsageError(f"this llama-cpp-python build cannot make {variant}: upgrade llama-cpp-python")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    try:
        with captured_native_stderr() as log:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0 or not tmp.is_file():
            last = (log.text().strip().splitlines() or [""])[-1]
            raise UsageError(f"llama.cpp could not quantize {src.name} to {variant} (code {rc}: {last}): "
                             "try another variant")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


class _Captured:
    """What native code wrote to stderr inside `captured_native_stderr` (read once the block ends)."""

    def __init__(self) -> None:
        self.content = ""

    def text(self) -> str:
        return self.content


@contextmanager
def captured_native_stderr() -> Iterator[_Captured]:
    """Send file descriptor 2 (where llama.cpp's C code logs) to a temporary file for the block."""
    import sys
    import tempfile

    sys.stderr.flush()
    fd, name = tempfile.mkstemp(prefix="harness-native-", suffix=".log")
    saved = os.dup(2)
    os.dup2(fd, 2)
    captured = _Captured()
    try:
        yield captured
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        captured.content = Path(name).read_text(errors="replace")
        try:
            os.unlink(name)
        except OSError:
            pass
