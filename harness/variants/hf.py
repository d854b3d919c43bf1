"""Models on the Hugging Face Hub: a repository's file list, the files of one quantization, their download.

A manifest with `[source] hf = "OWNER/REPO"` (from the catalog, `harness models add`, or an `hf:OWNER/REPO...`
spec read by `HubSource.from_spec`) names a repository. Its variants are the repository's own GGUF
files: every file whose name states that quantization (several files = one split GGUF, `-00001-of-0000N`),
or the one `file` it names; `format = "onnx"` names an ONNX export (optimum layout: model.onnx at the root
or under onnx/, tokenizer.json beside). A catalog manifest may also ask for a GGUF variant the repository
lacks: it is derived from the manifest's own variant by llama.cpp's quantizer, like any other.

Downloads go through huggingface_hub, so they share its cache with every other tool and resume from its
`.incomplete` files. What it reads from the environment is read here when a download starts, because the
library reads some of it once at import: HF_ENDPOINT (the Hub, or a mirror), HF_HUB_CACHE or HF_HOME (the
cache), HF_HUB_OFFLINE (no network: the cached snapshot only), HF_TOKEN (private and gated repositories;
passed to the library, never printed or stored). Bytes downloaded go to harness.progress.Progress (the
library's own bars are off). The commit each file came from is in VariantFile.metadata["hf"], and so in the
run's metadata; a file changed upstream has a new sha256, which is in every sample key: new samples.

`listing` and `download` (or `download_repo`, both in one call) serve any repository type of the Hub
(`repo_type` "model", "dataset" or "space"), so other sources and data sets share this one downloader.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cache import file_sha256
from harness.errors import HarnessError, UsageError, redact, require
from harness.variants import gguf, onnx
from harness.variants.manifest import (
    GGUF_FTYPES,
    QUANT_NAME,
    ModelManifest,
    ProgressFn,
    SourceKind,
    VariantFile,
    variant_backend,
)
from harness.variants.onnx_folder import TOKENIZER_FILES, assemble_onnx_folder
from harness.variants.sources import SPLIT_PART, file_variant, gguf_quant, made_manifest, normalize_quant, plain

if TYPE_CHECKING:
    from harness.progress import Progress

DEFAULT_ENDPOINT = "https://huggingface.co"
POLL_S = 0.25  # how often the download's progress is read
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_TYPES = ("model", "dataset", "space")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HubEnv:
    endpoint: str
    cache: Path
    offline: bool
    token_set: bool  # whether HF_TOKEN (or a stored login) gives a token; the token itself is never kept here


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_env() -> HubEnv:
    """The Hub settings of the environment, read now."""
    cache = os.environ.get("HF_HUB_CACHE")
    if cache:
        path = Path(cache).expanduser()
    else:
        home = os.environ.get("HF_HOME")
        if home:
            path = Path(home).expanduser() / "hub"
        else:
            xdg = os.environ.get("XDG_CACHE_HOME")
            path = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"
    hub = require("huggingface_hub", "gguf", "Downloading models from the Hugging Face Hub")
    token_set = bool(os.environ.get("HF_TOKEN")) or bool(hub.get_token())
    return HubEnv(os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/"), path, _true("HF_HUB_OFFLINE"),
                  token_set)


@dataclass(frozen=True)
class RepoFile:
    name: str
    size_bytes: int | None = None
    sha256: str | None = None  # the LFS object id, when the Hub says


@dataclass(frozen=True)
class RepoListing:
    repo: str
    revision: str  # as asked: a branch, tag or commit
    commit: str | None
    files: tuple[RepoFile, ...]
    license: str | None = None
    parameters: int | None = None
    gated: bool = False
    from_cache: bool = False  # read from the cache's snapshot (offline, or the Hub was unreachable)
    card: dict[str, Any] = field(default_factory=dict)
    repo_type: str = "model"  # or "dataset", "space"

    def by_name(self) -> dict[str, RepoFile]:
        return {f.name: f for f in self.files}


_LISTINGS: dict[tuple[str, str, str, str, bool], RepoListing] = {}  # this process's listings


def _repo_folder(env: HubEnv, repo: str, repo_type: str = "model") -> Path:
    return env.cache / (f"{repo_type}s--" + repo.replace("/", "--"))


def _cached_listing(env: HubEnv, repo: str, revision: str, repo_type: str = "model") -> RepoListing | None:
    """The listing of the cache's snapshot of a revision (the Hub's cache layout), None when it has none."""
    folder = _repo_folder(env, repo, repo_type)
    commit = revision if _HEX40.match(revision) else None
    if commit is None:
        ref = folder / "refs" / revision
        try:
            commit = ref.read_text().strip()
        except OSError:
            return None
    snap = folder / "snapshots" / commit
    if not snap.is_dir():
        return None
    files = []
    for p in sorted(snap.rglob("*")):
        if p.is_file():
            target = p.resolve()
            files.append(RepoFile(p.relative_to(snap).as_posix(), target.stat().st_size,
                                  target.name if _HEX64.match(target.name) else None))
    return RepoListing(repo, revision, commit, tuple(files), from_cache=True, repo_type=repo_type)


def _said(exc: BaseException) -> str:
    """The first line of a Hub library's error, the token (HF_TOKEN or the stored login) and anything like a bearer
    token redacted: a server that echoes the Authorization header never gets it printed."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    try:
        token = token or require("huggingface_hub", "gguf", "Downloading models from the Hugging Face Hub").get_token()
    except Exception:  # noqa: BLE001 - no token to redact is fine; the patterns still apply
        pass
    lines = redact(str(exc), [token]).splitlines()
    return lines[0] if lines else ""


def _unreachable(env: HubEnv, repo: str, why: str, repo_type: str = "model") -> UsageError:
    folder = _repo_folder(env, repo, repo_type)
    if env.offline:
        return UsageError(f"HF_HUB_OFFLINE is set and hf:{repo} is not in the Hugging Face cache ({folder} has no "
                          "snapshot of it): unset HF_HUB_OFFLINE to download it, or point HF_HOME / HF_HUB_CACHE at "
                          "the cache that has it")
    return UsageError(f"cannot reach {env.endpoint} ({why}) and hf:{repo} is not in the Hugging Face cache ({folder}): "
                      "connect to the network (or set HF_ENDPOINT to a reachable mirror), or copy the model into that "
                      "cache and set HF_HUB_OFFLINE=1")


def _not_found(env: HubEnv, repo: str, revision: str, exc: Exception, repo_type: str = "model") -> UsageError:
    hub_errors = require("huggingface_hub.errors", "gguf", "Downloading models from the Hugging Face Hub")
    if isinstance(exc, hub_errors.GatedRepoError):
        return gated(env, repo)
    if isinstance(exc, hub_errors.RevisionNotFoundError):
        return UsageError(f"hf:{repo} has no revision {revision!r} on {env.endpoint}: name a branch, tag or commit "
                          "it has (or leave @REVISION out for main)")
    hint = "" if env.token_set else "; if it is private or gated, set HF_TOKEN to a token with access"
    return UsageError(f"hf:{repo} is not a {repo_type} repository on {env.endpoint}{hint}: check OWNER/REPO on the Hub")


def gated(env: HubEnv, repo: str) -> UsageError:
    state = "HF_TOKEN is set, but its account has not been granted access" if env.token_set else "HF_TOKEN is not set"
    return UsageError(f"hf:{repo} is a gated repository and {state}: accept its licence on its Hub page, then set "
                      "HF_TOKEN to a read token of that account")


def _card_license(card: Any) -> str | None:
    lic = getattr(card, "license", None) if card is not None else None
    if isinstance(lic, list):
        lic = ", ".join(str(x) for x in lic)
    name = getattr(card, "license_name", None) if card is not None else None
    return str(name or lic) if (name or lic) else None


def listing(repo: str, revision: str | None = None, repo_type: str = "model") -> RepoListing:
    """A repository's files at a revision: from the Hub (one API call per process), else from the cache."""
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    env = hub_env()
    rev = revision or "main"
    key = (env.endpoint, repo_type, repo, rev, env.offline)
    if key in _LISTINGS:
        return _LISTINGS[key]
    if env.offline:
        found = _cached_listing(env, repo, rev, repo_type)
        if found is None:
            raise _unreachable(env, repo, "offline", repo_type)
        _LISTINGS[key] = found
        return found
    hub = require("huggingface_hub", "gguf", "Downloading models from the Hugging Face Hub")
    hub_errors = require("huggingface_hub.errors", "gguf", "Downloading models from the Hugging Face Hub")
    requests = require("requests", "gguf", "Downloading models from the Hugging Face Hub")
    api = hub.HfApi(endpoint=env.endpoint)
    try:
        if repo_type == "model":
            info = api.model_info(repo, revision=revision, files_metadata=True)
        else:
            info = api.repo_info(repo, repo_type=repo_type, revision=revision, files_metadata=True)
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError) as exc:
        raise _not_found(env, repo, rev, exc, repo_type) from exc
    except (requests.ConnectionError, requests.Timeout, hub_errors.OfflineModeIsEnabled) as exc:
        found = _cached_listing(env, repo, rev, repo_type)
        if found is None:
            raise _unreachable(env, repo, type(exc).__name__, repo_type) from exc
        _LISTINGS[key] = found
        return found
    except hub_errors.HfHubHTTPError as exc:
        raise HarnessError(f"the Hub at {env.endpoint} refused the file list of hf:{repo} "
                           f"({_said(exc)}): try again later") from exc
    found = _listing_of_info(repo, rev, repo_type, info)
    _LISTINGS[key] = found
    return found


def _listing_of_info(repo: str, rev: str, repo_type: str, info: Any) -> RepoListing:
    """A listing from the Hub library's info of a repository (files with sizes and LFS digests, card facts)."""
    files = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        files.append(RepoFile(s.rfilename, getattr(s, "size", None) or (getattr(lfs, "size", None) if lfs else None),
                              sha))
    params = None
    gguf_meta, safetensors = getattr(info, "gguf", None), getattr(info, "safetensors", None)
    if isinstance(gguf_meta, dict) and isinstance(gguf_meta.get("total"), int):
        params = int(gguf_meta["total"])
    elif safetensors is not None and getattr(safetensors, "total", None):
        params = int(safetensors.total)
    card = info.card_data.to_dict() if info.card_data is not None else {}
    return RepoListing(repo, rev, info.sha, tuple(files), _card_license(info.card_data), params,
                       bool(info.gated), False, card, repo_type)


def clear_listings() -> None:
    _LISTINGS.clear()


# -- choosing files -------------------------------------------------------------------------------------
def quant_groups(lst: RepoListing) -> dict[str, list[RepoFile]]:
    """The repository's GGUF files by the quantization their names state (projector files left out), split
    parts in order."""
    groups: dict[str, list[RepoFile]] = {}
    for f in lst.files:
        base = f.name.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or base.lower().startswith("mmproj"):
            continue
        q = gguf_quant(base)
        if q is not None:
            groups.setdefault(q, []).append(f)
    return {q: sorted(fs, key=lambda f: f.name) for q, fs in sorted(groups.items())}


def _one_model(files: list[RepoFile], what: str, repo: str) -> list[RepoFile]:
    """The files of one GGUF model among those of a quantization: one file, or every part of one split."""
    singles = [f for f in files if not SPLIT_PART.search(f.name)]
    splits: dict[str, list[RepoFile]] = {}
    for f in files:
        if (m := SPLIT_PART.search(f.name)) is not None:
            splits.setdefault(f.name[: m.start()], []).append(f)
    models = [[f] for f in singles] + [sorted(v, key=lambda f: f.name) for v in splits.values()]
    if len(models) != 1:
        names = ", ".join(fs[0].name for fs in models)
        raise UsageError(f"hf:{repo} has {len(models)} {what} models ({names}): name one with hf:{repo}/FILE.gguf")
    parts = models[0]
    m = SPLIT_PART.search(parts[0].name)
    if m is not None and len(parts) != int(m.group(2)):
        raise UsageError(f"hf:{repo}: split GGUF {parts[0].name} has {len(parts)} of its {int(m.group(2))} parts in "
                         "the repository: it cannot be loaded")
    return parts


def gguf_files(lst: RepoListing, quant: str | None, file: str | None) -> list[RepoFile]:
    """The files of one variant: `file` (with its split siblings), or the files of `quant`."""
    groups = quant_groups(lst)
    have = ", ".join(groups) or "none"
    if file is not None:
        by_name = lst.by_name()
        if file not in by_name:
            ggufs = [f.name for f in lst.files if f.name.lower().endswith(".gguf")]
            raise UsageError(f"hf:{lst.repo} has no file {file!r} at {lst.revision} (its GGUF files: "
                             f"{', '.join(ggufs[:20]) or 'none'}): name one of them")
        m = SPLIT_PART.search(file)
        if m is None:
            return [by_name[file]]
        prefix = file[: m.start()]
        return _one_model([f for f in lst.files if f.name.startswith(prefix) and SPLIT_PART.search(f.name)],
                          "split", lst.repo)
    assert quant is not None
    if quant not in groups:
        raise UsageError(f"hf:{lst.repo} has no {quant} GGUF file (its quantizations: {have}): choose one of them, "
                         f"e.g. hf:{lst.repo}:{next(iter(groups), 'Q4_K_M')}")
    return _one_model(groups[quant], quant, lst.repo)


def onnx_files(lst: RepoListing, file: str | None) -> tuple[RepoFile, list[RepoFile], list[RepoFile]]:
    """(the model, its external data, the tokenizer files) of an ONNX export repository."""
    by_name = lst.by_name()
    if file is None:
        file = next((n for n in ("model.onnx", "onnx/model.onnx") if n in by_name), None)
        if file is None:
            groups = quant_groups(lst)
            if groups:
                raise UsageError(f"hf:{lst.repo} holds GGUF files, not an ONNX export: name a quantization, e.g. "
                                 f"hf:{lst.repo}:{next(iter(groups))} (it has {', '.join(groups)})")
            onnx = [n for n in by_name if n.endswith(".onnx")]
            raise UsageError(f"hf:{lst.repo} has no model.onnx (at its root or under onnx/) and no GGUF file"
                             + (f"; its ONNX files: {', '.join(onnx[:10])}: name one with hf:{lst.repo}/FILE.onnx"
                                if onnx else ": it is not a model harness can run (convert it to GGUF, or export "
                                "it with optimum-cli export onnx --task text-generation-with-past)"))
    elif file not in by_name:
        raise UsageError(f"hf:{lst.repo} has no file {file!r} at {lst.revision}: name one of its .onnx files")
    folder = file.rsplit("/", 1)[0] + "/" if "/" in file else ""
    data = [f for n, f in sorted(by_name.items()) if n != file and n.startswith(file) and "/" not in n[len(folder):]]
    tokenizer = [by_name[n] for n in TOKENIZER_FILES if n in by_name]
    if not tokenizer and folder:
        tokenizer = [by_name[folder + n] for n in TOKENIZER_FILES if folder + n in by_name]
    return by_name[file], data, tokenizer


# -- downloading ----------------------------------------------------------------------------------------
@contextmanager
def _library_bars_off() -> Iterator[None]:
    """huggingface_hub's own progress bars print to stderr: off while harness shows its own."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def _incomplete_bytes(blobs: Path) -> int:
    total = 0
    for p in blobs.glob("*.incomplete"):
        try:
            total += p.stat().st_size
        except OSError:
            continue
    return total


def download(lst: RepoListing, files: list[RepoFile], reporter: Any = None,
             message: ProgressFn | None = None) -> tuple[list[Path], str | None]:
    """Fetch files of a listing into the Hugging Face cache (or find them there); returns their paths (in the
    snapshot folder of one commit) and that commit."""
    env = hub_env()
    hub = require("huggingface_hub", "gguf", "Downloading models from the Hugging Face Hub")
    hub_errors = require("huggingface_hub.errors", "gguf", "Downloading models from the Hugging Face Hub")
    requests = require("requests", "gguf", "Downloading models from the Hugging Face Hub")
    revision = lst.commit if lst.from_cache and lst.commit else lst.revision
    offline = env.offline or lst.from_cache
    folder = _repo_folder(env, lst.repo, lst.repo_type)
    blobs = folder / "blobs"
    paths: list[Path] = []
    commit = lst.commit
    for f in files:
        done: dict[str, Any] = {}

        def fetch(name: str = f.name, done: dict[str, Any] = done) -> None:
            try:
                done["path"] = hub.hf_hub_download(lst.repo, name, repo_type=lst.repo_type, revision=revision,
                                                   cache_dir=str(env.cache),
                                                   endpoint=env.endpoint, local_files_only=offline)
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
                done["error"] = err

        cached = hub.try_to_load_from_cache(lst.repo, f.name, cache_dir=str(env.cache), revision=commit,
                                            repo_type=lst.repo_type) \
            if commit else None
        shown = reporter is not None and not offline and not isinstance(cached, str)
        if shown:
            total_mb = max(1, -(-(f.size_bytes or 0) // 1_000_000))
            reporter.start(total_mb, f"downloading hf:{lst.repo} {f.name} (MB)")
        elif message and not offline and not isinstance(cached, str):
            message(f"downloading hf:{lst.repo} {f.name} into {env.cache}")
        try:
            with _library_bars_off():
                worker = threading.Thread(target=fetch, name="hf-download", daemon=True)
                worker.start()
                shown_mb = 0
                while worker.is_alive():
                    worker.join(POLL_S)
                    if shown:
                        mb = _incomplete_bytes(blobs) // 1_000_000
                        if mb > shown_mb:
                            reporter.advance(mb - shown_mb)
                            shown_mb = mb
                if shown and "error" not in done and total_mb > shown_mb:
                    reporter.advance(total_mb - shown_mb)  # finished between two looks: the bar ends full
        finally:
            if shown:
                reporter.stop()
        exc = done.get("error")
        if exc is not None:
            if isinstance(exc, hub_errors.GatedRepoError):
                raise gated(env, lst.repo) from exc
            if isinstance(exc, (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError)):
                raise _not_found(env, lst.repo, lst.revision, exc, lst.repo_type) from exc
            if isinstance(exc, hub_errors.LocalEntryNotFoundError):
                raise _unreachable(env, lst.repo, "offline" if offline else "no connection", lst.repo_type) from exc
            if isinstance(exc, hub_errors.EntryNotFoundError):
                raise UsageError(f"hf:{lst.repo} no longer has {f.name} at {lst.revision}: run again (the file list "
                                 "changed) or pin a commit with hf:OWNER/REPO@COMMIT") from exc
            if isinstance(exc, (requests.RequestException, OSError)):
                raise HarnessError(f"the download of {f.name} from hf:{lst.repo} stopped ({type(exc).__name__}: "
                                   f"{_said(exc)}): run the same command again to "
                                   f"resume it (the partial file is kept in {blobs})") from exc
            raise exc
        path = Path(done["path"])
        parts = path.parts
        if "snapshots" in parts:
            snap_commit = parts[parts.index("snapshots") + 1]
            if commit and snap_commit != commit and not lst.from_cache:
                # The branch moved between the file list and the download: list again and start over.
                clear_listings()
                raise HarnessError(f"hf:{lst.repo} changed while downloading (commit {commit[:12]} -> "
                                   f"{snap_commit[:12]}): run the same command again")
            commit = snap_commit
        if f.sha256 and file_sha256(path) != f.sha256:
            raise UsageError(f"{path} does not match the sha256 the Hub lists for {f.name}: the cached copy is "
                             f"damaged; delete it (and its blob in {blobs}) and run again")
        paths.append(path)
    return paths, commit


def download_repo(repo: str, names: list[str] | None = None, *, repo_type: str = "model", revision: str | None = None,
                  reporter: Progress | None = None, message: ProgressFn | None = None) -> tuple[list[Path], str | None]:
    """Fetch files of a Hub repository of any type (all of them when `names` is None) into the Hugging Face cache,
    or find them there; returns their paths, in the order asked, and the commit they came from."""
    lst = listing(repo, revision, repo_type)
    by_name = lst.by_name()
    missing = [n for n in names or [] if n not in by_name]
    if missing:
        raise UsageError(f"hf:{repo} has no file {missing[0]!r} at {lst.revision} (it has "
                         f"{', '.join(list(by_name)[:20]) or 'no files'}): name one of its files")
    files = list(lst.files) if names is None else [by_name[n] for n in names]
    return download(lst, files, reporter, message)


def _meta(lst: RepoListing, files: list[RepoFile], commit: str | None) -> dict[str, Any]:
    env = hub_env()
    return {"hf": {"repo": lst.repo, "revision": lst.revision, "commit": commit, "endpoint": env.endpoint,
                   "files": [f.name for f in files], "from_cache": lst.from_cache, "license": lst.license}}


def _digest_of(paths: list[Path]) -> str:
    if len(paths) == 1:
        return file_sha256(paths[0])
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def _gguf_variant(m: ModelManifest, variant: str, lst: RepoListing, files: list[RepoFile], reporter: Any,
                  progress: ProgressFn | None) -> VariantFile:
    paths, commit = download(lst, files, reporter, progress)
    gguf.check_gguf(paths[0])
    sha = _digest_of(paths)
    info = gguf.read_info(paths[0], sha)
    size = sum(p.stat().st_size for p in paths)
    return VariantFile(m.name, variant, "gguf", paths[0], sha, size, None,
                       {"gguf": gguf.brief(info), **_meta(lst, files, commit),
                        **({"split_parts": len(paths)} if len(paths) > 1 else {})})


def _onnx_variant(m: ModelManifest, variant: str, lst: RepoListing, reporter: Any,
                  progress: ProgressFn | None) -> VariantFile:
    model, data, tokenizer = onnx_files(lst, m.source.get("file"))
    files = [model, *data, *tokenizer]
    paths, commit = download(lst, files, reporter, progress)
    local = dict(zip([f.name for f in files], paths))
    beside = {f.name.rsplit("/", 1)[-1]: local[f.name] for f in tokenizer}
    return assemble_onnx_folder(m.name, variant, local[model.name], [local[f.name] for f in data], beside,
                                _meta(lst, files, commit))


def _listing_of(m: ModelManifest) -> RepoListing:
    return listing(str(m.source["hf"]), m.source.get("revision"))


def source_file(m: ModelManifest, reporter: Any = None) -> Path:
    """The local copy of a Hugging Face manifest's own variant (downloaded first if needed)."""
    if m.source.get("format") == "onnx":
        raise UsageError(f"model '{m.name}' is an ONNX export on the Hub: it has no GGUF file to derive variants "
                         "from; run its own variant")
    lst = _listing_of(m)
    file = m.source.get("file")
    files = gguf_files(lst, None if file else normalize_quant(m.source_variant), file)
    return download(lst, files, reporter)[0][0]


def resolve(m: ModelManifest, variant: str, progress: ProgressFn | None = None, *, reporter: Any = None
            ) -> VariantFile:
    """A Hugging Face manifest's variant: the repository's file(s), downloaded; or, for a catalog manifest, a
    GGUF variant the repository lacks derived from its own variant, or an ONNX export of it."""
    src = m.source
    if src.get("format") == "onnx":
        if variant != m.source_variant:
            raise UsageError(f"model '{m.name}' is an ONNX export on the Hub: it has only its own variant, "
                             f"{m.source_variant}")
        return _onnx_variant(m, variant, _listing_of(m), reporter, progress)
    lst = _listing_of(m)
    if variant_backend(variant) == "onnx":
        source_file(m, reporter)  # downloaded first, with its progress
        vf = onnx.resolve(m, variant, progress)
        return VariantFile(vf.model, vf.variant, vf.backend, vf.path, vf.sha256, vf.size_bytes, vf.derived_from,
                           {**vf.metadata, "hf_source": _meta(lst, [], lst.commit)["hf"]})
    if variant == m.source_variant and src.get("file"):
        return _gguf_variant(m, variant, lst, gguf_files(lst, None, str(src["file"])), reporter, progress)
    quant = normalize_quant(variant)
    groups = quant_groups(lst)
    if quant in groups or m.extra.get("spec") or variant not in GGUF_FTYPES or variant == m.source_variant:
        return _gguf_variant(m, variant, lst, gguf_files(lst, quant, None), reporter, progress)
    source_file(m, reporter)  # the variant to derive from, downloaded first with its progress
    vf = gguf.resolve(m, variant, progress)
    return VariantFile(vf.model, vf.variant, vf.backend, vf.path, vf.sha256, vf.size_bytes, vf.derived_from,
                       {**vf.metadata, "hf_source": _meta(lst, [], lst.commit)["hf"]})


def describe(m: ModelManifest) -> dict[str, Any]:
    """What `harness models add` writes about a repository: licence and parameter count from its card and the
    Hub's GGUF metadata, and the files of the variants asked for (checked to exist; nothing is downloaded)."""
    lst = _listing_of(m)
    if m.source.get("format") == "onnx":
        onnx_files(lst, m.source.get("file"))
    else:
        for v in m.default_variants:
            gguf_files(lst, None if m.source.get("file") else normalize_quant(v), m.source.get("file"))
    return {"license": lst.license, "parameters": lst.parameters, "commit": lst.commit,
            "quantizations": list(quant_groups(lst)), "checked_at": time.strftime("%Y-%m-%d")}


# -- hf: specs and the source kind ---------------------------------------------------------------------
@dataclass(frozen=True)
class HubSpec:
    repo: str
    revision: str | None = None
    quants: tuple[str, ...] = ()
    file: str | None = None  # a path inside the repository


def parse_hf_spec(spec: str) -> HubSpec:
    """'hf:OWNER/REPO[@REV][:Q1,Q2]' or 'hf:OWNER/REPO[@REV]/PATH/FILE.gguf' -> HubSpec (UsageError if malformed)."""
    body = spec[len("hf:"):]
    fix = "write hf:OWNER/REPO:QUANT (e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M), hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO"
    parts = body.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"{spec!r} names no repository: {fix}")
    owner, rest = parts[0], "/".join(parts[1:])
    file = None
    if len(parts) > 2:
        repo_rev, file = parts[1], "/".join(parts[2:])
        if not file.lower().endswith((".gguf", ".onnx")) or ":" in file:
            raise UsageError(f"{spec!r}: a file in a repository must be a .gguf or .onnx file: {fix}")
        quants: tuple[str, ...] = ()
    else:
        repo_rev, _, quant_text = rest.partition(":")
        quants = tuple(dict.fromkeys(normalize_quant(q.strip()) for q in quant_text.split(",") if q.strip()))
        bad = [q for q in quants if not QUANT_NAME.match(q)]
        if bad:
            raise UsageError(f"{spec!r}: {bad[0]!r} is not a quantization name (such as Q4_K_M, Q8_0, IQ4_XS): {fix}")
        if quant_text and not quants:
            raise UsageError(f"{spec!r} ends with ':' but names no quantization: {fix}")
    repo_name, _, revision = repo_rev.partition("@")
    repo = f"{owner}/{repo_name}"
    if not REPO_ID.match(repo) or (revision == "" and "@" in repo_rev):
        raise UsageError(f"{spec!r}: {repo!r} is not a repository id: {fix}")
    if revision and not re.fullmatch(r"[A-Za-z0-9._/-]+", revision):
        raise UsageError(f"{spec!r}: revision {revision!r} is not a branch, tag or commit name")
    return HubSpec(repo, revision or None, quants, file)


def hf_model_name(repo: str) -> str:
    return plain(repo.replace("/", "--"))



def hub_manifest(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest made for an hf: spec, and the variants it names (nothing is downloaded here)."""
    hs = parse_hf_spec(spec)
    source: dict[str, Any] = {"hf": hs.repo, **({"revision": hs.revision} if hs.revision else {})}
    name = hf_model_name(hs.repo)
    if hs.file:
        variant = file_variant(hs.file)
        source["file"] = hs.file
        if hs.file.lower().endswith(".onnx"):
            source["format"] = "onnx"
        variants = [variant]
    elif hs.quants:
        variants = list(hs.quants)
    else:
        source["format"] = "onnx"
        variants = ["onnx"]
    return made_manifest(name, spec, variants, source, f"{spec} (Hugging Face Hub)"), variants


class HubSource(SourceKind):
    """`[source] hf = "OWNER/REPO"`: a repository of the Hugging Face Hub, its own quantizations downloaded."""

    key = name = "hf"
    shape = "OWNER/REPO"
    spec_prefix = "hf:"

    def check(self, src: dict[str, Any], where: str) -> None:
        if not REPO_ID.fullmatch(src["hf"]):
            raise UsageError(f"{where}: [source] hf = {src['hf']!r} is not a repository id: write OWNER/REPO")

    def offers(self, m: ModelManifest, variant: str) -> bool:
        # one of the repository's own files (checked against its file list when resolved), or derived
        return bool(QUANT_NAME.match(variant)) or super().offers(m, variant)

    def from_spec(self, spec: str) -> tuple[ModelManifest, list[str]]:
        return hub_manifest(spec)

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        return source_file(m, reporter)

    def resolve(self, m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                reporter: Progress | None = None) -> VariantFile:
        return resolve(m, variant, progress, reporter=reporter)

    def facts(self, m: ModelManifest) -> dict[str, Any]:
        d = describe(m)
        note = f"From hf:{m.source['hf']} (commit {str(d['commit'])[:12]} when added on {d['checked_at']})."
        return {"license": d["license"], "parameters": d["parameters"], "notes": note}


SOURCE = HubSource()
