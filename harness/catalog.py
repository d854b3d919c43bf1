"""Finds catalog files (devices, models, prompts, judges, attacks) by name.

Search order: folders given with `--catalog DIR` (or the HARNESS_CATALOG
environment variable, os.pathsep-separated), then the user catalog
($XDG_CONFIG_HOME/harness, default ~/.config/harness, where `harness models add`
writes when no --catalog is given), then the catalog shipped in the wheel
(harness/_catalog), then the repository checkout (for editable installs).
A user folder may hold the same sub-folders as the shipped catalog; an entry
there shadows a shipped entry of the same name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from harness.errors import UsageError, did_you_mean

KINDS = ("devices", "models", "prompts", "judges", "attacks")
SUFFIXES = {"devices": (".toml",), "models": (".toml",), "prompts": (".jsonl", ".toml"), "judges": (".toml",),
            "attacks": (".toml",)}

# The folders given with --catalog, for the command (or `with user_dirs(...)` block) in progress.
_USER_DIRS: ContextVar[tuple[Path, ...]] = ContextVar("harness_user_catalog_dirs", default=())


@contextmanager
def user_dirs(dirs: Sequence[str | Path]) -> Iterator[None]:
    """Within the block, these folders come first when looking catalog entries up."""
    paths = []
    for d in dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise UsageError(f"catalog folder {p} does not exist: pass an existing folder to --catalog")
        paths.append(p)
    token = _USER_DIRS.set(tuple(paths))
    try:
        yield
    finally:
        _USER_DIRS.reset(token)


def default_user_catalog() -> Path:
    """$XDG_CONFIG_HOME/harness (default ~/.config/harness)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "harness"


def writable_catalog() -> Path:
    """Where commands that add entries write: the first --catalog folder, else the first HARNESS_CATALOG
    folder, else the default user catalog."""
    given = list(_USER_DIRS.get())
    env = [Path(p).expanduser() for p in os.environ.get("HARNESS_CATALOG", "").split(os.pathsep) if p]
    return (given or env or [default_user_catalog()])[0]


def roots() -> list[Path]:
    """Catalog roots, highest priority first."""
    out = list(_USER_DIRS.get())
    env = os.environ.get("HARNESS_CATALOG", "")
    out += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    user = default_user_catalog()
    if user.is_dir() and user not in out:
        out.append(user)
    here = Path(__file__).resolve().parent
    shipped = here / "_catalog"
    if shipped.is_dir():
        out.append(shipped)
    checkout = here.parent
    if (checkout / "devices").is_dir() and (checkout / "pyproject.toml").is_file():
        out.append(checkout)
    return out


def kind_dirs(kind: str) -> list[Path]:
    """Existing folders holding entries of one kind, highest priority first."""
    assert kind in KINDS, kind
    return [r / kind for r in roots() if (r / kind).is_dir()]


def entries(kind: str) -> dict[str, Path]:
    """All entries of a kind, name -> file, higher-priority folders shadowing lower ones."""
    found: dict[str, Path] = {}
    for d in reversed(kind_dirs(kind)):
        for f in sorted(d.iterdir()):
            if f.suffix in SUFFIXES[kind] and f.is_file():
                found[f.stem] = f
    return dict(sorted(found.items()))


SINGULAR = {"devices": "device", "models": "model", "prompts": "prompt set", "judges": "judge", "attacks": "attack"}
PLURAL = {"devices": "devices", "models": "models", "prompts": "prompt sets", "judges": "judges",
          "attacks": "attacks"}


def find(kind: str, name_or_path: str, also: Sequence[str] = ()) -> Path:
    """Resolve a catalog name, or an existing file path, to a file. `also`: names the caller accepts besides the
    catalog's (e.g. the composite prompt set `default`), listed and suggested in the error."""
    p = Path(name_or_path).expanduser()
    if p.suffix in SUFFIXES[kind] and p.is_file():
        return p
    found = entries(kind)
    if name_or_path in found:
        return found[name_or_path]
    names = [*also, *found]
    listing = "harness judge --list" if kind == "judges" else f"harness {kind} list"
    raise UsageError(
        f"unknown {SINGULAR[kind]} '{name_or_path}'{did_you_mean(name_or_path, names)}: known {PLURAL[kind]} are "
        f"{', '.join(names) or 'none'} (see `{listing}`, or pass a path to a {SUFFIXES[kind][0]} file)"
    )


def catalog_file(kind: str, relative: str) -> Path:
    """A non-entry file of a catalog folder (e.g. a rubric template in judges/)."""
    for d in kind_dirs(kind):
        if (d / relative).is_file():
            return d / relative
    raise UsageError(f"{kind}/{relative} not found in any catalog folder: {', '.join(map(str, kind_dirs(kind)))}")
