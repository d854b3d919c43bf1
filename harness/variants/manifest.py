"""Model manifests and variant files, and the one registry of source kinds: the leaf of the variants package.

A manifest (models/NAME.toml) names the model's source, which is the variant given by
`source.variant`: a local `path`, a Python `package` + `file`, an `assemble` function, a Hugging Face
repository (`hf`, with `file`, `revision` or `format = "onnx"`), an Ollama model (`ollama`), an ONNX
export folder (`onnx_folder`), or an original checkpoint converted to GGUF (`convert`). Each [source] key is a kind of source (`SourceKind`), registered once in
`SOURCES` under that key with the module that defines it, and every question about a manifest's source
(which kind, its own file, how a variant is made, which variant names it offers, what a command-line spec
means) is asked of its kind through `source_of` or `spec_source`: a new source is one module and one line of
`SOURCE_MODULES`. Variants the source does not hold are derived on demand through `VARIANT_KINDS`
(harness.variants.gguf for GGUF quantizations, harness.variants.onnx for ONNX exports). A model spec on the
command line is `name` or `name:variant[,variant...]`, or a source given directly (harness.variants.sources):
`hf:OWNER/REPO:QUANT`, `hf:OWNER/REPO/FILE.gguf`, `hf:OWNER/REPO`, `ollama:NAME[:TAG]`, or a path to a .gguf
file or an ONNX folder.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import catalog
from harness.errors import UsageError, did_you_mean
from harness.registry import Registry
from harness.tomlfile import read_toml

if TYPE_CHECKING:
    from harness.progress import Progress

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
ProgressFn = Callable[[str], None]


def variant_bits(variant: str) -> float:
    return float(_BITS.get(variant, 0))


def variant_backend(variant: str) -> str:
    """The backend that runs a variant: 'onnx' for onnx and onnx-*, else 'gguf'."""
    return "onnx" if variant == "onnx" or variant.startswith("onnx-") else "gguf"


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


# -- source kinds ---------------------------------------------------------------------------------------
class SourceKind:
    """A kind of source: how a manifest's [source] names it, its own file, how its variants are made, and which
    command-line specs it reads. One subclass per kind, in its own module, registered once in SOURCES."""

    key: str = ""  # the [source] key that names this kind
    name: str = ""  # what source_kind() says: 'path', 'hf', 'onnx-folder' ...
    needs: tuple[str, ...] = ()  # the other [source] keys it cannot do without
    shape: str = ""  # how the key's value is written, for messages ('OWNER/REPO')
    spec_prefix: str | None = None  # the command-line specs it reads ('hf:'), if any

    def check(self, src: dict[str, Any], where: str) -> None:
        """Refuse a [source] table this kind cannot use (a UsageError naming `where`)."""

    def offers(self, m: ModelManifest, variant: str) -> bool:
        """Whether `variant` (not the manifest's own) can be had: by default the GGUF and ONNX variants derived
        from the source's own file."""
        return variant in GGUF_FTYPES or variant in ONNX_VARIANTS

    def claims(self, spec: str) -> bool:
        """Whether a command-line model spec names a source of this kind."""
        return self.spec_prefix is not None and spec.startswith(self.spec_prefix)

    def from_spec(self, spec: str) -> tuple[ModelManifest, list[str]]:
        """A manifest made for a spec this kind claims, and the variants it names (nothing is downloaded)."""
        raise NotImplementedError(f"source kind {self.name!r} reads no command-line spec")

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        """The manifest's own variant as a local file (fetched first where it is remote; `reporter` shows the
        download), the file other variants are derived from."""
        raise NotImplementedError(f"source kind {self.name!r} has no local file")

    def resolve(self, m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                reporter: Progress | None = None) -> VariantFile:
        """The file of a variant: by default, the variant's kind derives it from `local_file`."""
        return VARIANT_KINDS.get(variant_backend(variant))(m, variant, progress)

    def facts(self, m: ModelManifest) -> dict[str, Any]:
        """Licence, parameter count and a note on where they came from, without downloading anything."""
        return {}

    def usage(self, *, brief: bool = False) -> str:
        """How a [source] table names this kind, for messages: "'package' and 'file'", "'hf' (OWNER/REPO)"."""
        keys = [f"'{k}'" for k in (self.key, *self.needs)]
        if brief:
            return "+".join(keys)
        return " and ".join(keys) + (f" ({self.shape})" if self.shape else "")


# The source kinds, by the [source] key that names each, in the order messages list them: a new kind is one
# module and one line here.
SOURCE_MODULES = {
    "path": "harness.variants.local:PATH",
    "package": "harness.variants.local:PACKAGE",
    "assemble": "harness.variants.local:ASSEMBLE",
    "hf": "harness.variants.hf:SOURCE",
    "ollama": "harness.variants.ollama:SOURCE",
    "onnx_folder": "harness.variants.onnx_folder:SOURCE",
    "convert": "harness.variants.convert:SOURCE",
}
SOURCES: Registry[SourceKind] = Registry("model source")
for _key, _target in SOURCE_MODULES.items():
    SOURCES.register(_key, _target)
# Variants a source does not hold, derived from its own file, by the backend that runs them.
VariantResolver = Callable[[ModelManifest, str, ProgressFn | None], VariantFile]
VARIANT_KINDS: Registry[VariantResolver] = Registry("variant kind")
VARIANT_KINDS.register("gguf", "harness.variants.gguf:resolve")
VARIANT_KINDS.register("onnx", "harness.variants.onnx:resolve")


def source_keys() -> list[str]:
    """The [source] keys of every registered kind, the built-in ones first in SOURCE_MODULES' order."""
    order = list(SOURCE_MODULES)
    return sorted(SOURCES.names(), key=lambda k: (order.index(k) if k in order else len(order), k))


def source_of(m: ModelManifest) -> SourceKind:
    """The kind of a manifest's source: the one place a manifest is dispatched by where it comes from."""
    key = next((k for k in source_keys() if k in m.source), None)
    if key is None:
        raise UsageError(f"model '{m.name}': its [source] names no source: give one of {', '.join(source_keys())}")
    return SOURCES.get(key)


def source_kind(m: ModelManifest) -> str:
    """What kind a manifest's source is: 'path', 'package', 'assemble', 'hf', 'ollama', 'onnx-folder' ..."""
    return source_of(m).name


def spec_source(spec: str) -> SourceKind | None:
    """The kind a command-line model spec names (specs with a prefix first: 'hf:./x' is never a path); None for
    a catalog name."""
    kinds = sorted((SOURCES.get(k) for k in source_keys()), key=lambda kind: kind.spec_prefix is None)
    return next((kind for kind in kinds if kind.claims(spec)), None)


def source_path(m: ModelManifest, reporter: Progress | None = None) -> Path:
    """The manifest's own variant as a local file (downloaded first for a Hugging Face source; `reporter` is the
    harness.progress.Progress that shows the download)."""
    return source_of(m).local_file(m, reporter)


def source_facts(m: ModelManifest) -> dict[str, Any]:
    """What `harness models add` writes about a source: licence, parameter count, a note (nothing downloaded)."""
    return source_of(m).facts(m)


def resolve_variant(m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                    reporter: Progress | None = None) -> VariantFile:
    """The file for a variant, deriving, downloading and caching it first if needed (`progress` gets what is
    being done; `reporter`, when given, shows a download's bytes)."""
    check_variant_name(m, variant)
    return source_of(m).resolve(m, variant, progress, reporter=reporter)


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
    keys = source_keys()
    if not isinstance(src, dict) or not isinstance(src.get("variant"), str) or not src.get("variant"):
        raise UsageError(f"{where}: needs a [source] table with 'variant' and one of "
                         + ", ".join(SOURCES.get(k).usage(brief=True) for k in keys))
    given = [k for k in keys if k in src]
    if len(given) != 1:
        raise UsageError(f"{where}: [source] needs exactly one of " + ", ".join(SOURCES.get(k).usage() for k in keys)
                         + (f", not {' and '.join(given)}" if given else ""))
    for k in (*keys, "file", "revision", "format"):
        if k in src and not isinstance(src[k], str):
            raise UsageError(f"{where}: [source] {k} must be a string")
    SOURCES.get(given[0]).check(src, where)
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


def parse_spec(spec: str) -> tuple[ModelManifest, list[str]]:
    """'name' or 'name:v1,v2' -> (manifest, variants); a source given directly (hf:, ollama:, a path) -> a
    manifest made for it (harness.variants.sources)."""
    kind = spec_source(spec)
    if kind is not None:
        return kind.from_spec(spec)
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
    if m.extra.get("spec"):  # a source given on the command line: only what it names
        if variant in m.default_variants:
            return
        raise UsageError(f"{m.extra['spec']} has no variant '{variant}': it names {', '.join(m.default_variants)}")
    if source_of(m).offers(m, variant):
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
