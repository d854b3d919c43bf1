"""Models pulled with Ollama, read straight from its local store: no Ollama server needed.

The store (OLLAMA_MODELS, else ~/.ollama/models) holds a manifest per model and tag,
`manifests/registry.ollama.ai/library/NAME/TAG` (`NAMESPACE/NAME` for a user's model, `HOST/NAMESPACE/NAME`
for another registry), an OCI image manifest whose layer of media type `application/vnd.ollama.image.model`
is the GGUF file, stored by digest as `blobs/sha256-<hex>` (`sha256:<hex>` in older stores). The config
blob names the quantization (`file_type`); a license layer holds the licence text. The digest is the
blob's sha256, checked once before the blob is used; llama.cpp loads the blob as it is. A manifest with
`[source] ollama = "NAME:TAG"`, or an `ollama:NAME[:TAG]` spec (`OllamaSource`), names such a model.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import jsontext
from harness.cache import file_sha256
from harness.errors import UsageError
from harness.variants import gguf
from harness.variants.manifest import ModelManifest, ProgressFn, SourceKind, VariantFile
from harness.variants.sources import made_manifest, normalize_quant, plain

if TYPE_CHECKING:
    from harness.progress import Progress

DEFAULT_REGISTRY = "registry.ollama.ai"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"
OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){0,2}$")
OLLAMA_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def models_dir() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def parse_ollama_spec(spec: str) -> tuple[str, str]:
    """'ollama:NAME[:TAG]' -> (NAME, TAG), TAG 'latest' by default."""
    body = spec[len("ollama:"):]
    name, _, tag = body.partition(":")
    tag = tag or "latest"
    if not OLLAMA_NAME.match(name) or not OLLAMA_TAG.match(tag) or ".." in body:
        raise UsageError(f"{spec!r} is not an Ollama model name: write ollama:NAME or ollama:NAME:TAG "
                         "(e.g. ollama:llama3.2:1b), as `ollama list` shows it")
    return name, tag


def manifest_path(root: Path, name: str, tag: str) -> Path:
    parts = name.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return root.joinpath("manifests", *parts, tag)


def available(root: Path) -> list[str]:
    """Every NAME:TAG in a store, as `ollama list` spells them."""
    base = root / "manifests"
    out: list[str] = []
    if not base.is_dir():
        return out
    for f in sorted(base.glob("*/*/*/*")):
        if not f.is_file():
            continue
        host, ns, name, tag = f.relative_to(base).parts
        full = name if (host, ns) == (DEFAULT_REGISTRY, "library") else \
            f"{ns}/{name}" if host == DEFAULT_REGISTRY else f"{host}/{ns}/{name}"
        out.append(f"{full}:{tag}")
    return sorted(out)


def blob_file(root: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    for name in (f"{algo}-{hexd}", f"{algo}:{hexd}"):
        if (root / "blobs" / name).is_file():
            return root / "blobs" / name
    return root / "blobs" / f"{algo}-{hexd}"


@dataclass(frozen=True)
class OllamaModel:
    name: str
    tag: str
    manifest_path: Path
    blob: Path
    digest: str  # sha256 hex of the blob
    size_bytes: int | None
    file_type: str | None  # the quantization the config blob names
    license_name: str | None  # first line of the licence layer
    config: dict[str, Any]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = jsontext.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{what} {path} is not readable JSON ({exc}): the Ollama store is damaged; pull the "
                         "model again with `ollama pull`") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} is not a JSON object: pull the model again with `ollama pull`")
    return data


def lookup(name: str, tag: str, root: Path | None = None) -> OllamaModel:
    """The model NAME:TAG in the local store (UsageError naming what the store has when it is not there)."""
    root = root or models_dir()
    path = manifest_path(root, name, tag)
    if not path.is_file():
        have = available(root)
        listing = ", ".join(have[:20]) + (" ..." if len(have) > 20 else "") if have else "no models"
        where = "OLLAMA_MODELS" if os.environ.get("OLLAMA_MODELS") else "~/.ollama/models"
        raise UsageError(f"ollama:{name}:{tag} is not in the Ollama store {root} ({where}; it has {listing}): "
                         f"run `ollama pull {name}:{tag}` first, or set OLLAMA_MODELS to the store that has it")
    manifest = _read_json(path, "Ollama manifest")
    raw_layers = manifest.get("layers")
    layers: list[Any] = raw_layers if isinstance(raw_layers, list) else []
    model = next((la for la in layers if isinstance(la, dict) and la.get("mediaType") == MODEL_MEDIA_TYPE), None)
    if model is None or not str(model.get("digest", "")).startswith("sha256:"):
        raise UsageError(f"Ollama manifest {path} has no {MODEL_MEDIA_TYPE} layer: ollama:{name}:{tag} is not a "
                         "GGUF model harness can run")
    digest = str(model["digest"])
    blob = blob_file(root, digest)
    config: dict[str, Any] = {}
    cfg = manifest.get("config")
    if isinstance(cfg, dict) and cfg.get("digest"):
        cfg_blob = blob_file(root, str(cfg["digest"]))
        if cfg_blob.is_file():
            config = _read_json(cfg_blob, "Ollama config blob")
    license_name = None
    lic = next((la for la in layers if isinstance(la, dict) and la.get("mediaType") == LICENSE_MEDIA_TYPE), None)
    if lic and lic.get("digest") and (lic_blob := blob_file(root, str(lic["digest"]))).is_file():
        text = lic_blob.read_text(encoding="utf-8", errors="replace").strip()
        license_name = text.splitlines()[0].strip()[:200] if text else None
    file_type = config.get("file_type")
    return OllamaModel(name, tag, path, blob, digest.partition(":")[2],
                       int(model["size"]) if isinstance(model.get("size"), int) else None,
                       str(file_type) if file_type else None, license_name, config)


def _found(m: ModelManifest) -> OllamaModel:
    name, _, tag = str(m.source["ollama"]).partition(":")
    return lookup(name, tag or "latest")


def blob_path(m: ModelManifest) -> Path:
    """The GGUF blob of an Ollama manifest's model, checked (exists, size, digest)."""
    found = _found(m)
    spec = f"ollama:{found.name}:{found.tag}"
    if not found.blob.is_file():
        raise UsageError(f"{spec}: its model blob {found.blob} is missing from the store: `ollama pull "
                         f"{found.name}:{found.tag}` again")
    size = found.blob.stat().st_size
    if found.size_bytes is not None and size != found.size_bytes:
        raise UsageError(f"{spec}: blob {found.blob} has {size} bytes, its manifest says {found.size_bytes}: "
                         f"the download is incomplete; `ollama pull {found.name}:{found.tag}` again")
    if file_sha256(found.blob) != found.digest:
        raise UsageError(f"{spec}: blob {found.blob} does not match its sha256 digest: the store is damaged; "
                         f"`ollama rm` and `ollama pull {found.name}:{found.tag}` again")
    return found.blob


def resolve(m: ModelManifest, variant: str, progress: ProgressFn | None = None, *, reporter: Any = None
            ) -> VariantFile:
    """An Ollama model's own GGUF blob, or a variant derived from it by llama.cpp's quantizer."""
    found = _found(m)
    meta = {"ollama": {"name": found.name, "tag": found.tag, "manifest": str(found.manifest_path),
                       "digest": f"sha256:{found.digest}", "file_type": found.file_type,
                       "model_family": found.config.get("model_family"), "model_type": found.config.get("model_type")}}
    if variant != m.source_variant:
        vf = gguf.resolve(m, variant, progress)
        return VariantFile(vf.model, vf.variant, vf.backend, vf.path, vf.sha256, vf.size_bytes, vf.derived_from,
                           {**vf.metadata, **meta})
    path = blob_path(m)
    gguf.check_gguf(path)
    info = gguf.read_info(path, found.digest)
    return VariantFile(m.name, variant, "gguf", path, found.digest, path.stat().st_size, None,
                       {"gguf": gguf.brief(info), **meta})


def ollama_model_name(name: str, tag: str) -> str:
    return plain("ollama--" + name.replace("/", "--") + ("" if tag == "latest" else f"--{tag}"))


def ollama_manifest(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest made for an ollama: spec (the model must be in the local store), and its one variant."""
    name, tag = parse_ollama_spec(spec)
    found = lookup(name, tag)
    variant = normalize_quant(found.file_type) if found.file_type else "gguf"
    return made_manifest(ollama_model_name(name, tag), spec, [variant], {"ollama": f"{name}:{tag}"},
                         f"{name}:{tag} from the Ollama store {models_dir()}",
                         license=found.license_name or ""), [variant]


class OllamaSource(SourceKind):
    """`[source] ollama = "NAME[:TAG]"`: a model in the local Ollama store, its blob loaded as it is."""

    key = name = "ollama"
    shape = "NAME[:TAG]"
    spec_prefix = "ollama:"

    def from_spec(self, spec: str) -> tuple[ModelManifest, list[str]]:
        return ollama_manifest(spec)

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        return blob_path(m)

    def resolve(self, m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                reporter: Progress | None = None) -> VariantFile:
        return resolve(m, variant, progress, reporter=reporter)

    def facts(self, m: ModelManifest) -> dict[str, Any]:
        found = _found(m)
        info = gguf.read_info(found.blob, found.digest)
        return {"license": m.license or info.get("license"), "parameters": info.get("n_parameters")}


SOURCE = OllamaSource()
