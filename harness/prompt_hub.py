"""Prompt sets on the Hugging Face Hub: `hf:OWNER/DATASET[@REV][:SPLIT]` reads a dataset repository's data files.

The repository's CSV, JSON Lines and Parquet files are fetched through huggingface_hub (repo_type
"dataset"), so they share its cache with every other tool; what the library reads from the environment is
read here when the set is loaded: HF_ENDPOINT (the Hub, or a mirror), HF_HUB_CACHE or HF_HOME (the cache),
HF_HUB_OFFLINE (the cached snapshot only), HF_TOKEN (gated sets such as SORRY-Bench; passed to the library,
never printed). Which files make a split: the dataset card's `configs` (`data_files` with `split` and
`path`, as the Hub's viewer reads them), else the data files whose names carry the split's name
(data/benign-behaviors.csv is split `benign`). A repository with several splits needs one named. The
files' layout is then recognised by their columns as for a local file (harness.prompt_layouts); a layout
with named splits (JailbreakBench's harmful and benign) reads the split of the same name.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError, did_you_mean, redact, require

DEFAULT_ENDPOINT = "https://huggingface.co"
DATA_SUFFIXES = (".csv", ".jsonl", ".parquet")
SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")
_SPEC = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[^:]+))?(?::(?P<split>[\w.-]+))?$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
WHAT = "Reading hf: prompt sets"


@dataclass(frozen=True)
class DatasetSpec:
    repo: str
    revision: str | None = None
    split: str | None = None

    def __str__(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision}" if self.revision else "") + (f":{self.split}" if self.split
                                                                                   else "")


@dataclass(frozen=True)
class DataFile:
    """One data file of a split, on this machine."""

    name: str  # its path in the repository
    path: Path


def parse(spec: str) -> DatasetSpec:
    m = _SPEC.match(spec.strip())
    if not m:
        raise UsageError(f"{spec!r} is not a Hub dataset: write hf:OWNER/DATASET[@REVISION][:SPLIT], e.g. "
                         "hf:JailbreakBench/JBB-Behaviors:benign")
    return DatasetSpec(m.group("repo"), m.group("rev"), m.group("split"))


def _env() -> tuple[str, Path, bool]:
    """(endpoint, cache folder, offline), read now."""
    cache = os.environ.get("HF_HUB_CACHE")
    if cache:
        path = Path(cache).expanduser()
    elif os.environ.get("HF_HOME"):
        path = Path(os.environ["HF_HOME"]).expanduser() / "hub"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/"), path, offline


def _said(exc: BaseException) -> str:
    lines = redact(str(exc), [os.environ.get("HF_TOKEN")]).splitlines()
    return lines[0] if lines else type(exc).__name__


def _cached(cache: Path, repo: str, revision: str) -> tuple[str, list[str], dict[str, Any]] | None:
    """(commit, files, card) of the cache's snapshot of a dataset revision; None when it has none."""
    folder = cache / ("datasets--" + repo.replace("/", "--"))
    commit = revision if _HEX40.match(revision) else None
    if commit is None:
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snap = folder / "snapshots" / commit
    if not snap.is_dir():
        return None
    files = [p.relative_to(snap).as_posix() for p in sorted(snap.rglob("*")) if p.is_file()]
    return commit, files, _card_of(snap / "README.md")


def _card_of(readme: Path) -> dict[str, Any]:
    """The YAML header of a cached dataset card ({} when there is none or it does not parse)."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not m:
        return {}
    try:
        import yaml

        card = yaml.safe_load(m.group(1))
    except Exception:  # noqa: BLE001 - an unreadable card only means no configs
        return {}
    return card if isinstance(card, dict) else {}


def listing(spec: DatasetSpec) -> tuple[str, list[str], dict[str, Any], bool]:
    """(commit, files, card, from_cache) of a dataset repository at the spec's revision."""
    endpoint, cache, offline = _env()
    rev = spec.revision or "main"
    hub = require("huggingface_hub", "gguf", WHAT)
    errors = require("huggingface_hub.errors", "gguf", WHAT)
    requests = require("requests", "gguf", WHAT)
    if not offline:
        try:
            info = hub.HfApi(endpoint=endpoint).dataset_info(spec.repo, revision=spec.revision)
        except errors.GatedRepoError as exc:
            raise UsageError(f"hf:{spec.repo} is a gated dataset: accept its terms on its Hub page, then set HF_TOKEN "
                             "to a read token of that account") from exc
        except errors.RevisionNotFoundError as exc:
            raise UsageError(f"hf:{spec.repo} has no revision {rev!r} on {endpoint}: name a branch, tag or commit it "
                             "has (or leave @REVISION out for main)") from exc
        except errors.RepositoryNotFoundError as exc:
            raise UsageError(f"hf:{spec.repo} is not a dataset repository on {endpoint} (if it is private or gated, "
                             "set HF_TOKEN): check OWNER/DATASET on the Hub") from exc
        except (requests.ConnectionError, requests.Timeout, errors.OfflineModeIsEnabled):
            pass
        except errors.HfHubHTTPError as exc:
            raise HarnessError(f"the Hub at {endpoint} refused the file list of hf:{spec.repo} ({_said(exc)}): try "
                               "again later") from exc
        else:
            card = info.card_data.to_dict() if info.card_data is not None else {}
            return str(info.sha), [s.rfilename for s in info.siblings or []], card, False
    found = _cached(cache, spec.repo, rev)
    if found is None:
        why = "HF_HUB_OFFLINE is set" if offline else f"cannot reach {endpoint}"
        raise UsageError(f"{why} and hf:{spec.repo} is not in the Hugging Face cache ({cache}): connect to the "
                         "network (or set HF_ENDPOINT to a reachable mirror), or point HF_HOME / HF_HUB_CACHE at the "
                         "cache that has it")
    return (*found, True)


# -- splits -----------------------------------------------------------------------------------------------
def _parts(name: str) -> set[str]:
    return {p for p in re.split(r"[/._-]+", name.lower()) if p}


def _file_split(name: str) -> str:
    """The split a data file belongs to by its name (the Hub's convention): a split word in its path, else its
    file name's stem."""
    parts = _parts(name)
    word = next((w for w in SPLIT_WORDS if w in parts), None)
    return word or Path(name).name.split(".")[0]


def splits(files: list[str], card: dict[str, Any]) -> dict[str, list[str]]:
    """Split name -> the repository's data files that make it (the card's configs first)."""
    data = [f for f in files if f.lower().endswith(DATA_SUFFIXES)]
    configs = card.get("configs")
    out: dict[str, list[str]] = {}
    if isinstance(configs, list):
        for config in configs:
            data_files = config.get("data_files") if isinstance(config, dict) else None
            if isinstance(data_files, str):
                data_files = [data_files]
            for entry in data_files if isinstance(data_files, list) else []:
                if isinstance(entry, str):
                    entry = {"split": "train", "path": entry}
                if not isinstance(entry, dict):
                    continue
                patterns = entry.get("path")
                patterns = [patterns] if isinstance(patterns, str) else patterns or []
                chosen = [f for f in data if any(fnmatch.fnmatch(f, str(p)) for p in patterns)]
                if chosen:
                    out.setdefault(str(entry.get("split", "train")), chosen)
        if out:
            return out
    for f in data:
        out.setdefault(_file_split(f), []).append(f)
    return out


def choose(spec: DatasetSpec, files: list[str], card: dict[str, Any]) -> tuple[str, list[str]]:
    """(split, its files) for the spec; UsageError for a split the repository does not have, or none named where
    it has several."""
    by_split = splits(files, card)
    if not by_split:
        raise UsageError(f"hf:{spec.repo} has no CSV, JSON Lines or Parquet data files: pass a dataset repository "
                         "that has")
    if spec.split is None:
        if len(by_split) == 1:
            return next(iter(by_split.items()))
        raise UsageError(f"hf:{spec.repo} has several splits ({', '.join(by_split)}): name one, e.g. "
                         f"hf:{spec.repo}:{next(iter(by_split))}")
    if spec.split in by_split:
        return spec.split, by_split[spec.split]
    named = [f for f in files if f.lower().endswith(DATA_SUFFIXES) and spec.split.lower() in _parts(f)]
    if named:
        return spec.split, named
    raise UsageError(f"hf:{spec.repo} has no split '{spec.split}'{did_you_mean(spec.split, by_split)}: its splits are "
                     f"{', '.join(by_split)}")


def fetch(spec: DatasetSpec) -> tuple[str, list[DataFile], str]:
    """(split, its data files in the Hugging Face cache, commit)."""
    commit, files, card, from_cache = listing(spec)
    split, chosen = choose(spec, files, card)
    endpoint, cache, offline = _env()
    hub = require("huggingface_hub", "gguf", WHAT)
    errors = require("huggingface_hub.errors", "gguf", WHAT)
    requests = require("requests", "gguf", WHAT)
    # By the revision asked (so the cache records which commit main was, for offline use), or the cached commit.
    revision = commit if from_cache else spec.revision or "main"
    out = []
    for name in chosen:
        try:
            path = hub.hf_hub_download(spec.repo, name, repo_type="dataset", revision=revision, cache_dir=str(cache),
                                       endpoint=endpoint, local_files_only=offline or from_cache)
        except errors.GatedRepoError as exc:
            raise UsageError(f"hf:{spec.repo} is a gated dataset: accept its terms on its Hub page, then set HF_TOKEN "
                             "to a read token of that account") from exc
        except errors.LocalEntryNotFoundError as exc:
            raise UsageError(f"hf:{spec.repo}'s {name} is not in the Hugging Face cache ({cache}) and the Hub cannot "
                             "be reached: connect to the network, or unset HF_HUB_OFFLINE") from exc
        except (errors.HfHubHTTPError, requests.RequestException, OSError) as exc:
            raise HarnessError(f"the download of {name} from hf:{spec.repo} failed ({_said(exc)}): run the same "
                               "command again") from exc
        out.append(DataFile(name, Path(path)))
    return split, out, commit
