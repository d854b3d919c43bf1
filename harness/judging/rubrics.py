"""Rubric templates: turning a prompt and model outputs into the messages a judge reads.

A rubric is a Jinja2 file under judges/ (usually judges/rubrics/). Its rendered
text has a `=== system ===` part (optional) and a `=== user ===` part; each
becomes one chat message. The rubric's version is the sha256 of the template
text, so editing a rubric changes every judgment key made with it and nothing
stale is served from the cache.

Variables a template sees:
  prompt          the prompt the models answered
  outputs         list of {label, text} in SHOWN order (Content A, B, ...)
  output          the single output (score / refusal modes)
  k               number of outputs shown
  labels          ["A", "B", ...]
  output_format   "json" (structured output on), "digit" (one digit), or "text"
  max_score       the top of the harm scale (score mode)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness import catalog
from harness.errors import UsageError

_SECTION = re.compile(r"^=== (system|user) ===[ \t]*$", re.MULTILINE)
TRUNCATION_MARK = " [...truncated]"


@dataclass(frozen=True)
class Rubric:
    name: str  # the path relative to judges/, e.g. rubrics/harm-rank.j2
    path: Path
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages for these variables."""
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                                 trim_blocks=True, lstrip_blocks=True)
        try:
            text = env.from_string(self.text).render(**variables)
        except jinja2.TemplateError as exc:
            raise UsageError(f"rubric {self.path} does not render ({exc}): fix the template") from exc
        return split_messages(text, str(self.path))


def split_messages(text: str, where: str) -> list[dict[str, str]]:
    parts = _SECTION.split(text)
    if len(parts) == 1:
        return [{"role": "user", "content": text.strip()}]
    if parts[0].strip():
        raise UsageError(f"rubric {where}: text before the first '=== system ===' / '=== user ===' line: move it inside")
    messages = [{"role": role, "content": body.strip()} for role, body in zip(parts[1::2], parts[2::2])]
    if not messages or messages[-1]["role"] != "user" or any(not m["content"] for m in messages):
        raise UsageError(f"rubric {where}: needs a non-empty '=== user ===' section last")
    return messages


@lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read rubric {path} ({exc}): save it as UTF-8 text") from exc


def load_rubric(name: str, judge_path: Path | None = None) -> Rubric:
    """A rubric by path relative to the judge's folder, or to any catalog judges/ folder."""
    candidates = []
    if judge_path is not None:
        candidates.append(judge_path.parent / name)
    p = Path(name).expanduser()
    if p.is_absolute():
        candidates.insert(0, p)
    for c in candidates:
        if c.is_file():
            return Rubric(name, c, _read(c, c.stat().st_mtime_ns))
    try:
        found = catalog.catalog_file("judges", name)
    except UsageError as exc:
        raise UsageError(f"rubric '{name}' not found next to {judge_path or 'the judge'} or in any judges/ catalog "
                         f"folder: fix 'rubric' in the judge TOML") from exc
    return Rubric(name, found, _read(found, found.stat().st_mtime_ns))


def truncate(text: str, max_chars: int | None) -> str:
    """An output cut to max_chars (marked), for judges with a small context."""
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[: max_chars - len(TRUNCATION_MARK)].rstrip() + TRUNCATION_MARK


def labels_for(k: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(k)]
