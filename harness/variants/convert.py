"""Hugging Face checkpoints converted to GGUF by llama.cpp's own converter, as a source kind and an operation.

A manifest with `[source] convert = "hf:OWNER/REPO"` (a Hub repository, `revision` to pin one) or
`convert = "FOLDER"` (config.json, the weights, the tokenizer files) names an original checkpoint. Its own
variant (`variant`: F16, BF16, F32 or Q8_0, the converter's output types) is the GGUF that llama.cpp's
convert_hf_to_gguf.py writes from it; every other GGUF variant is derived from that file by the quantizer
(harness.variants.gguf), as for any source. The converted file is cached by what it was made from (the
repository's commit and its files' sha256, or the folder's files' sha256) and the output type, so a run finds
it without the converter; `harness models convert --reconvert` makes it again.

The converter is llama.cpp's, never a copy of it in this package: the script named by `--converter PATH` (or
HARNESS_LLAMA_CONVERTER; a convert_hf_to_gguf.py with its conversion/ and gguf-py/ folders beside it, a llama.cpp
checkout, or a llama-cpp-python sdist), else the one vendored in the sdist of the installed llama-cpp-python
version, fetched once with `pip download` into the cache (its sha256 recorded). It runs in a subprocess of this
interpreter, with its own gguf-py first on PYTHONPATH; it needs torch, transformers and numpy (the `export`
extra). Its output is checked as GGUF before it is used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness import catalog
from harness.cache import cache_dir, file_sha256, read_json, staged_folder, verified_sha256, write_json_atomic
from harness.errors import MissingExtraError, UsageError, did_you_mean
from harness.variants import gguf, hf
from harness.variants.manifest import (
    GGUF_FTYPES,
    ModelManifest,
    ProgressFn,
    SourceKind,
    VariantFile,
    check_plain_name,
    load_manifest,
    resolve_variant,
    source_of,
)
from harness.variants.sources import plain

if TYPE_CHECKING:
    from harness.progress import Progress

# The converter's output types, by the variant names users type.
CONVERT_OUTTYPES = {"F16": "f16", "BF16": "bf16", "F32": "f32", "Q8_0": "q8_0"}
CONVERTER_ENV = "HARNESS_LLAMA_CONVERTER"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
# What the converter needs beside its script (recent llama.cpp splits the model classes into conversion/).
CONVERTER_PARTS = (CONVERTER_SCRIPT, "conversion", "gguf-py")
CONVERTER_FORMAT = "llama-converter-1"
CONVERTED_FORMAT = "converted-1"
NEEDED_MODULES = ("torch", "transformers", "numpy")
# The files of a checkpoint the converter reads (weights are chosen apart: safetensors first).
CHECKPOINT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                    "chat_template.jinja")
SAFETENSORS = re.compile(r"^(model|pytorch_model)([-.][\w-]+)?\.safetensors$|^model\.safetensors\.index\.json$")
TORCH_BINS = re.compile(r"^pytorch_model([-.][\w-]+)?\.bin$|^pytorch_model\.bin\.index\.json$")
_REGISTERED = re.compile(r"""\bModel(?:Base)?\.register\(([^)]*)\)""")
_QUOTED = re.compile(r"""["']([A-Za-z0-9_.]+)["']""")


# -- the converter ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Converter:
    """llama.cpp's convert_hf_to_gguf.py and where it came from."""

    script: Path
    sha256: str  # of the script
    origin: str  # how it was found, for messages and the record
    llama_cpp_version: str | None = None  # the llama-cpp-python version whose sdist it came from, when known
    sdist_sha256: str | None = None

    @property
    def gguf_py(self) -> Path | None:
        p = self.script.parent / "gguf-py"
        return p if p.is_dir() else None

    def record(self) -> dict[str, Any]:
        return {"script": str(self.script), "sha256": self.sha256, "origin": self.origin,
                "llama_cpp_python": self.llama_cpp_version, "sdist_sha256": self.sdist_sha256}

    def architectures(self) -> set[str]:
        """The Hugging Face architectures the converter registers (read from its source, nothing imported);
        empty when it registers none this way (then the converter itself says)."""
        names: set[str] = set()
        sources = [self.script, *sorted((self.script.parent / "conversion").glob("*.py"))]
        for path in sources:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for args in _REGISTERED.findall(text):
                names.update(_QUOTED.findall(args))
        return names


def installed_llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingExtraError("llama-cpp-python", "gguf", "Finding the converter that matches llama.cpp "
                                "(or pass --converter PATH)") from exc


def converter_cache(version: str) -> Path:
    return cache_dir() / "llama-converter" / plain(version)


def locate_converter(given: str | None = None, progress: ProgressFn | None = None) -> Converter:
    """The converter: `given` (a script, a llama.cpp folder or an sdist), else $HARNESS_LLAMA_CONVERTER, else the
    installed llama-cpp-python version's own, fetched once from its sdist into the cache."""
    if given is None and os.environ.get(CONVERTER_ENV):
        return _given_converter(os.environ[CONVERTER_ENV], f"${CONVERTER_ENV}", progress)
    if given is not None:
        return _given_converter(given, "--converter", progress)
    version = installed_llama_cpp_version()
    folder = converter_cache(version)
    found = _cached_converter(folder)
    if found is not None:
        return found
    with tempfile.TemporaryDirectory(prefix="harness-sdist-") as tmp:
        sdist = _pip_download_sdist(version, Path(tmp), progress)
        return _unpack_sdist(sdist, folder, f"llama-cpp-python {version} sdist from pip", version)


def _given_converter(text: str, where: str, progress: ProgressFn | None) -> Converter:
    p = Path(text).expanduser()
    if not p.exists():
        raise UsageError(f"{where} {text}: no such file or folder: name llama.cpp's {CONVERTER_SCRIPT}, a llama.cpp "
                         "folder, or a llama-cpp-python sdist (.tar.gz)")
    p = p.resolve()
    if p.is_dir():
        p = p / CONVERTER_SCRIPT
        if not p.is_file():
            raise UsageError(f"{where} {text} holds no {CONVERTER_SCRIPT}: name the script, a llama.cpp folder or a "
                             "llama-cpp-python sdist (.tar.gz)")
    if p.name.endswith((".tar.gz", ".tgz")):
        digest = file_sha256(p)
        folder = cache_dir() / "llama-converter" / f"sdist-{digest[:16]}"
        found = _cached_converter(folder)
        if found is not None:
            return found
        if progress:
            progress(f"unpacking llama.cpp's converter from {p.name} into {folder}")
        return _unpack_sdist(p, folder, f"{where} {p}", _sdist_version(p.name))
    if p.suffix != ".py":
        raise UsageError(f"{where} {text} is neither a Python script nor an sdist (.tar.gz): name llama.cpp's "
                         f"{CONVERTER_SCRIPT}")
    return Converter(p, file_sha256(p), f"{where} {p}")


def _sdist_version(name: str) -> str | None:
    m = re.match(r"^llama_cpp_python-([0-9][\w.+-]*?)\.(tar\.gz|tgz)$", name)
    return m.group(1) if m else None


def _cached_converter(folder: Path) -> Converter | None:
    meta = read_json(folder / "converter.json")
    script = folder / CONVERTER_SCRIPT
    if not isinstance(meta, dict) or meta.get("format") != CONVERTER_FORMAT or not script.is_file():
        return None
    if not verified_sha256(script, str(meta.get("sha256"))):
        return None  # changed since it was unpacked: unpack again
    return Converter(script, str(meta["sha256"]), str(meta.get("origin")), meta.get("llama_cpp_python"),
                     meta.get("sdist_sha256"))


def _pip_download_sdist(version: str, into: Path, progress: ProgressFn | None) -> Path:
    """llama-cpp-python's sdist of `version` (it vendors llama.cpp and its converter), through pip (its index
    settings, its cache)."""
    if progress:
        progress(f"fetching llama.cpp's converter: pip download llama-cpp-python=={version} (the sdist, about 80 MB; "
                 "once, then cached)")
    cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps", "--no-binary",
           ":all:", "--disable-pip-version-check", "-d", str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not found:
        raise UsageError(f"could not fetch llama-cpp-python {version}'s sdist with pip ({_last_line(done.stderr)}): "
                         f"download it elsewhere (pip download llama-cpp-python=={version} --no-deps --no-binary "
                         f":all:) and pass --converter PATH.tar.gz, or set {CONVERTER_ENV} to llama.cpp's "
                         f"{CONVERTER_SCRIPT}")
    return found[0]


def _converter_members(tar: tarfile.TarFile) -> tuple[str, list[tarfile.TarInfo]]:
    """The folder of the sdist (or llama.cpp tarball) that holds the converter, and its members to unpack."""
    scripts = sorted((m.name for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + CONVERTER_SCRIPT)),
                     key=lambda n: n.count("/"))
    if not scripts:
        raise UsageError(f"the archive holds no {CONVERTER_SCRIPT}: name a llama-cpp-python sdist (it vendors "
                         "llama.cpp) or llama.cpp's script")
    base = scripts[0][: -len(CONVERTER_SCRIPT)]
    wanted = []
    for m in tar.getmembers():
        if not m.isfile() or not m.name.startswith(base):
            continue
        rel = PurePosixPath(m.name[len(base):])
        if rel.parts and rel.parts[0] in CONVERTER_PARTS and ".." not in rel.parts and not rel.is_absolute():
            wanted.append(m)
    return base, wanted


def _unpack_sdist(sdist: Path, folder: Path, origin: str, version: str | None) -> Converter:
    """The converter, its conversion/ package and its gguf-py unpacked from an sdist into `folder` (the cache)."""
    try:
        with tarfile.open(sdist, "r:*") as tar:
            base, members = _converter_members(tar)
            with staged_folder(folder, parents=True) as tmp:
                for m in members:
                    src = tar.extractfile(m)
                    if src is None:
                        continue
                    out = tmp / m.name[len(base):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with src, open(out, "wb") as fh:
                        shutil.copyfileobj(src, fh)
                script = tmp / CONVERTER_SCRIPT
                meta = {"format": CONVERTER_FORMAT, "origin": origin, "llama_cpp_python": version,
                        "sdist": sdist.name, "sdist_sha256": file_sha256(sdist), "sha256": file_sha256(script),
                        "files": len(members)}
                write_json_atomic(tmp / "converter.json", meta)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"cannot read {sdist} as a tar.gz archive ({exc}): name a llama-cpp-python sdist") from exc
    found = _cached_converter(folder)
    assert found is not None
    return found


# -- the checkpoint -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointRef:
    """What a convert source names: a Hub repository (at a revision) or a local folder."""

    text: str
    repo: str | None = None
    revision: str | None = None
    folder: Path | None = None

    @property
    def label(self) -> str:
        """The name a model made for it gets: OWNER--REPO, or the folder's name."""
        if self.repo is not None:
            return hf.hf_model_name(self.repo)
        assert self.folder is not None
        return plain(self.folder.name)


def parse_checkpoint(text: str, revision: str | None = None, relative_to: Path | None = None) -> CheckpointRef:
    """`hf:OWNER/REPO[@REV]` or a folder (relative to `relative_to`, a manifest's folder, when given)."""
    if text.startswith("hf:"):
        repo, _, rev = text[3:].partition("@")
        if not hf.REPO_ID.fullmatch(repo) or (rev == "" and "@" in text):
            raise UsageError(f"{text!r} is not a Hub repository: write hf:OWNER/REPO or hf:OWNER/REPO@REVISION")
        return CheckpointRef(text, repo, rev or revision)
    p = Path(os.path.expandvars(text)).expanduser()
    if not p.is_absolute() and relative_to is not None:
        p = relative_to / p
    return CheckpointRef(text, folder=p.resolve())


def _weights(names: Sequence[str]) -> list[str]:
    """The weight files of a checkpoint: its safetensors (with their index), else its PyTorch .bin files."""
    tensors = sorted(n for n in names if "/" not in n and SAFETENSORS.match(n))
    if any(n.endswith(".safetensors") for n in tensors):
        return tensors
    return sorted(n for n in names if "/" not in n and TORCH_BINS.match(n))


def checkpoint_files(names: Sequence[str]) -> list[str]:
    return [*(n for n in CHECKPOINT_FILES if n in names), *_weights(names)]


def read_config(folder: Path, label: str) -> dict[str, Any]:
    """A checkpoint's config.json, refused when missing or naming no architecture."""
    path = folder / "config.json"
    if not path.is_file():
        raise UsageError(f"{label} has no config.json: it is not a Hugging Face checkpoint (a folder with "
                         "config.json, the weights and the tokenizer files, as save_pretrained writes it)")
    config = read_json(path)
    if not isinstance(config, dict):
        raise UsageError(f"{path} is not a JSON object: it is not a Hugging Face model config")
    arch = config.get("architectures")
    if not isinstance(arch, list) or not arch or not all(isinstance(a, str) for a in arch):
        raise UsageError(f"{path} names no \"architectures\": the converter picks the model class by it (e.g. "
                         "[\"GPTNeoXForCausalLM\"]); add it")
    return config


def check_architecture(config: dict[str, Any], converter: Converter, label: str) -> str:
    arch = str(config["architectures"][0])
    known = converter.architectures()
    if known and arch not in known:
        version = f" (llama-cpp-python {converter.llama_cpp_version})" if converter.llama_cpp_version else ""
        raise UsageError(f"{label}: architecture {arch} is not one llama.cpp's converter{version} supports"
                         f"{did_you_mean(arch, known)}: it converts {len(known)} architectures (MPTForCausalLM, "
                         "GPTNeoXForCausalLM, LlamaForCausalLM ...); a newer llama-cpp-python's may (--converter)")
    return arch


def check_export_modules() -> None:
    """The converter's own imports, checked in this interpreter before it starts."""
    for module in NEEDED_MODULES:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, "export", "Converting a checkpoint to GGUF")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's files on this machine and what identifies them (the converted file's cache key)."""

    ref: CheckpointRef
    folder: Path
    identity: dict[str, Any]


def _local_checkpoint(ref: CheckpointRef) -> Checkpoint:
    folder = ref.folder
    assert folder is not None
    if not folder.is_dir():
        raise UsageError(f"checkpoint folder {ref.text} does not exist (or is not a folder): name a folder with "
                         "config.json, the weights and the tokenizer files, or hf:OWNER/REPO")
    read_config(folder, str(folder))
    names = [p.name for p in folder.iterdir() if p.is_file()]
    files = checkpoint_files(names)
    if not _weights(names):
        raise UsageError(f"{folder} has config.json but no weights (model*.safetensors or pytorch_model*.bin)")
    return Checkpoint(ref, folder, {"folder": str(folder), "files": {n: file_sha256(folder / n) for n in files}})


def _hub_listing(ref: CheckpointRef) -> tuple[hf.RepoListing, list[hf.RepoFile]]:
    assert ref.repo is not None
    lst = hf.listing(ref.repo, ref.revision)
    names = [f.name for f in lst.files]
    if "config.json" not in names:
        raise UsageError(f"hf:{ref.repo} has no config.json: it is not a Hugging Face checkpoint (GGUF repositories "
                         f"run as hf:{ref.repo}:QUANT)")
    if not _weights(names):
        raise UsageError(f"hf:{ref.repo} has no weights the converter reads (model*.safetensors or "
                         "pytorch_model*.bin)")
    by_name = lst.by_name()
    return lst, [by_name[n] for n in checkpoint_files(names)]


def _hub_identity(ref: CheckpointRef, lst: hf.RepoListing, files: list[hf.RepoFile]) -> dict[str, Any]:
    return {"hf": ref.repo, "commit": lst.commit or lst.revision, "files": {f.name: f.sha256 for f in files}}


def _hub_checkpoint(ref: CheckpointRef, lst: hf.RepoListing, files: list[hf.RepoFile], conv: Converter,
                    reporter: Any, progress: ProgressFn | None) -> tuple[Checkpoint, str]:
    """The repository's checkpoint files, downloaded into the Hugging Face cache (config.json first, so a model the
    converter cannot read stops before the weights come), and its architecture."""
    config, _ = hf.download(lst, [f for f in files if f.name == "config.json"], None, progress)
    arch = check_architecture(read_config(config[0].parent, f"hf:{ref.repo}"), conv, f"hf:{ref.repo}")
    paths, commit = hf.download(lst, files, reporter, progress)
    return Checkpoint(ref, paths[0].parent, {**_hub_identity(ref, lst, files), "commit": commit or lst.commit}), arch


# -- converting ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Converted:
    """A converted GGUF in the cache and the record of how it was made."""

    path: Path
    sha256: str
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)
    converted_now: bool = False


def outtype_of(variant: str, where: str) -> str:
    if variant not in CONVERT_OUTTYPES:
        raise UsageError(f"{where}: a converted checkpoint's own variant is the converter's output type: "
                         f"{', '.join(CONVERT_OUTTYPES)}, not {variant!r} (other variants are quantized from it)")
    return CONVERT_OUTTYPES[variant]


def converted_dir(ref: CheckpointRef, identity: dict[str, Any], variant: str) -> Path:
    key = hashlib.sha256(json.dumps({"checkpoint": identity, "variant": variant}, sort_keys=True).encode())
    return cache_dir() / "converted" / ref.label / key.hexdigest()[:16]


def _cached(folder: Path) -> Converted | None:
    meta = read_json(folder / "converted.json")
    if not isinstance(meta, dict) or meta.get("format") != CONVERTED_FORMAT:
        return None
    target = folder / str(meta.get("file"))
    if not target.is_file() or target.stat().st_size != meta.get("size_bytes") or \
            not verified_sha256(target, str(meta.get("sha256"))):
        return None
    return Converted(target, str(meta["sha256"]), int(meta["size_bytes"]), meta)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes: two runs converting the same checkpoint wait for each other."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _last_line(text: str) -> str:
    """The last line a program wrote (a progress bar's carriage returns kept to their last state)."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:400] if lines else "it wrote nothing"


def run_converter(converter: Converter, folder: Path, out: Path, outtype: str, log: Path) -> None:
    """llama.cpp's converter on a checkpoint folder, in a subprocess of this interpreter, writing `out` atomically;
    its output goes to `log`. A failure is a UsageError with its last line."""
    env = dict(os.environ)
    if converter.gguf_py is not None:  # its own gguf package, matching it, before any installed one
        env["PYTHONPATH"] = os.pathsep.join([str(converter.gguf_py), *filter(None, [env.get("PYTHONPATH")])])
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    cmd = [sys.executable, str(converter.script), str(folder), "--outfile", str(tmp), "--outtype", outtype]
    try:
        with open(log, "w", encoding="utf-8") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
                rc = subprocess.run(cmd, stdout=fh, stderr=err, env=env, cwd=str(out.parent)).returncode
                err.seek(0)
                said = err.read()
            fh.write(said)
        if rc != 0:
            raise UsageError(_failure(said, rc, converter, log))
        if not tmp.is_file():
            raise UsageError(f"llama.cpp's converter exited 0 but wrote no {tmp.name} (log: {log})")
        gguf.check_gguf(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _failure(stderr: str, rc: int, converter: Converter, log: Path) -> str:
    last = _last_line(stderr)
    missing = re.search(r"No module named '([\w.]+)'", last)
    if missing:
        return (f"llama.cpp's converter needs the Python package '{missing.group(1).split('.')[0]}', which is not "
                f"installed: pip install 'harness[export]' (log: {log})")
    return f"llama.cpp's converter ({converter.origin}) failed (exit {rc}): {last} (log: {log})"


def ensure_converted(m: ModelManifest, progress: ProgressFn | None = None, *, reporter: Any = None,
                     converter: str | None = None, reconvert: bool = False) -> Converted:
    """The manifest's converted GGUF: from the cache, or converted now (the checkpoint downloaded first for hf:)."""
    where = str(m.path or m.name)
    outtype = outtype_of(m.source_variant, where)
    ref = checkpoint_ref(m)
    if ref.repo is not None:
        lst, files = _hub_listing(ref)
        identity = _hub_identity(ref, lst, files)
    else:
        local = _local_checkpoint(ref)
        identity = local.identity
    folder = converted_dir(ref, identity, m.source_variant)
    with _locked(folder.parent / f".{folder.name}.lock"):
        found = None if reconvert else _cached(folder)
        if found is not None:
            return found
        check_export_modules()
        conv = locate_converter(converter, progress)
        if ref.repo is not None:
            checkpoint, arch = _hub_checkpoint(ref, lst, files, conv, reporter, progress)
            label = f"hf:{ref.repo}"
        else:
            checkpoint, label = local, str(local.folder)
            arch = check_architecture(read_config(local.folder, label), conv, label)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{ref.label}.{m.source_variant}.gguf"
        if progress:
            progress(f"converting {label} ({arch}) to GGUF {m.source_variant} with llama.cpp's converter "
                     f"({conv.origin}); log in {folder / 'convert.log'}")
        run_converter(conv, checkpoint.folder, target, outtype, folder / "convert.log")
        size, sha = target.stat().st_size, file_sha256(target)
        meta: dict[str, Any] = {"format": CONVERTED_FORMAT, "file": target.name, "variant": m.source_variant,
                                "architecture": arch, "checkpoint": checkpoint.identity, "converter": conv.record(),
                                "size_bytes": size, "sha256": sha}
        write_json_atomic(folder / "converted.json", meta)
    return Converted(target, sha, size, meta, True)


def checkpoint_ref(m: ModelManifest) -> CheckpointRef:
    return parse_checkpoint(str(m.source["convert"]), m.source.get("revision"),
                            m.path.parent if m.path is not None else None)


def _record(c: Converted) -> dict[str, Any]:
    return {k: c.meta.get(k) for k in ("architecture", "checkpoint", "converter", "sha256")}


class ConvertSource(SourceKind):
    """`[source] convert = "hf:OWNER/REPO"` or a checkpoint folder: an original checkpoint, converted to GGUF."""

    key = name = "convert"
    shape = "hf:OWNER/REPO or a checkpoint folder"

    def check(self, src: dict[str, Any], where: str) -> None:
        parse_checkpoint(str(src["convert"]), src.get("revision"))
        outtype_of(str(src["variant"]), where)

    def offers(self, m: ModelManifest, variant: str) -> bool:
        return variant in GGUF_FTYPES

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        return ensure_converted(m, reporter=reporter).path

    def resolve(self, m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                reporter: Progress | None = None) -> VariantFile:
        converted = ensure_converted(m, progress, reporter=reporter)
        vf = gguf.resolve(m, variant, progress)
        return VariantFile(vf.model, vf.variant, vf.backend, vf.path, vf.sha256, vf.size_bytes, vf.derived_from,
                           {**vf.metadata, "converted": _record(converted)})

    def facts(self, m: ModelManifest) -> dict[str, Any]:
        ref = checkpoint_ref(m)
        if ref.repo is None:
            return {}
        lst = hf.listing(ref.repo, ref.revision)
        return {"license": lst.license, "parameters": lst.parameters,
                "notes": f"Converted from hf:{ref.repo} (commit {str(lst.commit)[:12]})."}


SOURCE = ConvertSource()


# -- the operation: harness models convert ------------------------------------------------------------
@dataclass(frozen=True)
class Conversion:
    """What `convert_model` made: the converted GGUF, the variants quantized from it, the manifest written."""

    model: str
    source: str  # what the manifest's [source] convert names
    converted: VariantFile
    variants: list[VariantFile]
    converted_now: bool
    converter: dict[str, Any]
    manifest: Path | None = None  # the manifest written (--name) or read (a catalog model)


def _chat_of(folder: Path | None) -> dict[str, Any]:
    """'template' when the checkpoint has a chat template (the converter puts it in the GGUF), else a plain
    completion frame."""
    if folder is not None:
        tok = read_json(folder / "tokenizer_config.json")
        if (folder / "chat_template.jinja").is_file() or (isinstance(tok, dict) and tok.get("chat_template")):
            return {"format": "template"}
    return {"format": "completion"}


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def manifest_text(name: str, source: str, variant: str, chat: dict[str, Any], description: str,
                  defaults: Sequence[str] = ()) -> str:
    """The TOML of a catalog manifest for a converted checkpoint (what `harness models convert --name` writes)."""
    lines = [f"# Written by `harness models convert {source} --name {name}`.",
             f"description = {_toml_str(description)}",
             f"default_variants = [{', '.join(_toml_str(v) for v in defaults or [variant])}]", "", "[source]",
             f"convert = {_toml_str(source)}",
             f"variant = {_toml_str(variant)}", "", "[chat]",
             f"format = {_toml_str(str(chat['format']))}   # \"template\": the model's own chat template"]
    return "\n".join(lines) + "\n"


def _checkpoint_manifest(target: str, name: str | None, variant: str) -> ModelManifest:
    ref = parse_checkpoint(target)
    source = target if ref.repo is not None else str(ref.folder)
    model = check_plain_name(name, "model name", "--name") if name else ref.label
    return ModelManifest(name=model, description=f"{target} converted to GGUF by llama.cpp", source_variant=variant,
                         source={"convert": source, "variant": variant}, chat=_chat_of(ref.folder),
                         default_variants=(variant,))


def _manifest_path(name: str, overwrite: bool) -> Path:
    path = catalog.writable_catalog() / "models" / f"{name}.toml"
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists: pass --force to overwrite it, or choose another --name")
    return path


def _write_manifest(m: ModelManifest, path: Path, defaults: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(manifest_text(m.name, str(m.source["convert"]), m.source_variant, m.chat, m.description, defaults),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def convert_model(target: str, *, name: str | None = None, outtype: str | None = None, to: Sequence[str] = (),
                  converter: str | None = None, reconvert: bool = False, overwrite: bool = False,
                  progress: ProgressFn | None = None, reporter: Progress | None = None) -> Conversion:
    """Convert a checkpoint to GGUF with llama.cpp's converter (cached), then quantize it to each of `to`.

    `target`: hf:OWNER/REPO[@REV] or a checkpoint folder (with `name`, a manifest models/NAME.toml is written to
    the user catalog so `--model NAME` runs it), or a catalog model whose [source] is convert. `outtype`: the
    converted file's type (F16, BF16, F32, Q8_0; default F16) for a checkpoint. `converter`: llama.cpp's script, a
    llama.cpp folder or a llama-cpp-python sdist (default: $HARNESS_LLAMA_CONVERTER, else the installed version's).
    """
    is_checkpoint = target.startswith("hf:") or Path(target).expanduser().is_dir() or \
        ("/" in target and not target.endswith(".toml"))
    if is_checkpoint:
        variant = (outtype or "F16").upper()
        outtype_of(variant, "--outtype")
        m = _checkpoint_manifest(target, name, variant)
    else:
        if name is not None or outtype is not None:
            raise UsageError(f"--name and --outtype apply to a checkpoint (hf:OWNER/REPO or a folder); the catalog "
                             f"model '{target}' already names its source and variant")
        m = load_manifest(target)
        if source_of(m).key != ConvertSource.key:
            raise UsageError(f"model '{m.name}' is not a checkpoint to convert (its source is {source_of(m).name}): "
                             "give hf:OWNER/REPO, a checkpoint folder, or a catalog model with [source] convert")
    wanted = [v.strip().upper() for v in to if v.strip()]
    unknown = [v for v in wanted if v not in GGUF_FTYPES]
    if unknown:
        raise UsageError(f"--to {unknown[0]} is not a GGUF variant{did_you_mean(unknown[0], GGUF_FTYPES)}: choose "
                         f"from {', '.join(GGUF_FTYPES)}")
    manifest_path = _manifest_path(m.name, overwrite) if is_checkpoint and name else None
    converted = ensure_converted(m, progress, reporter=reporter, converter=converter, reconvert=reconvert)
    written = _write_manifest(m, manifest_path, wanted) if manifest_path is not None else None
    if written is not None:
        m = load_manifest(str(written))
    own = SOURCE.resolve(m, m.source_variant, progress, reporter=reporter)
    variants = [resolve_variant(m, v, progress, reporter=reporter) for v in dict.fromkeys(wanted)
                if v != m.source_variant]
    return Conversion(m.name, str(m.source["convert"]), own, variants, converted.converted_now,
                      dict(converted.meta.get("converter") or {}), written or (m.path if not is_checkpoint else None))
