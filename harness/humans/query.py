"""Options written after an importer's path: `PATH?flags=S,H,V&missing=negative`.

The same spelling serves `harness humans import FORMAT PATH?...` and `--set FORMAT:PATH?...` (as prompt sets
take `?split=`, harness.prompt_layouts). A path that exists as written is never split, so a file whose name holds
a '?' is still read. Each format takes only its own options; another is a UsageError naming them.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import UsageError, did_you_mean

FORMAT_OPTIONS: dict[str, tuple[str, ...]] = {
    "labels-csv": ("flags", "missing"),
    "labels-jsonl": ("flags", "missing"),
}
_QUERY = re.compile(r"\?((?:[A-Za-z_]+=[^?&=]*)(?:&[A-Za-z_]+=[^?&=]*)*)$")


def split_options(spec: str, fmt: str) -> tuple[str, dict[str, str]]:
    """(path, {option: value}) of `PATH[?name=value&...]`; UsageError for an option `fmt` does not take."""
    m = _QUERY.search(spec)
    if m is None or Path(spec).expanduser().exists():
        return spec, {}
    allowed = FORMAT_OPTIONS.get(fmt, ())
    takes = f"{fmt} takes {', '.join(f'?{o}=' for o in allowed)}" if allowed else f"{fmt} takes no ?options"
    options: dict[str, str] = {}
    for part in m.group(1).split("&"):
        name, _, value = part.partition("=")
        if name not in allowed:
            raise UsageError(f"{spec}: unknown option '?{name}='{did_you_mean(name, allowed)}: {takes}")
        if not value.strip():
            raise UsageError(f"{spec}: ?{name}= is empty: give a value, e.g. ?flags=S,H,V or ?missing=negative")
        if name in options:
            raise UsageError(f"{spec}: ?{name}= is given twice: give it once")
        options[name] = value.strip()
    return spec[:m.start()], options


def options_text(options: dict[str, str]) -> str:
    """'?name=value&...' of options (sorted), '' for none: how a set names its options."""
    return "?" + "&".join(f"{k}={v}" for k, v in sorted(options.items())) if options else ""
