"""Rubric templates: turning a prompt and model outputs into the messages a judge reads.

A rubric is a Jinja2 file in a judges/ catalog folder (usually judges/rubrics/). Its text has a
`=== system ===` part (optional) and a `=== user ===` part; each becomes one chat message. The
template is split into its parts first and each part is rendered on its own, so the prompt and the
outputs (adversarial text) are only ever data inside their message: an output that contains a
marker line cannot add or end a message. Templates render in Jinja2's sandbox (no access to Python
internals), and a rubric path must stay inside the catalog folder of the judge that names it.
The rubric's version is the sha256 of the template text, so editing a rubric changes every
judgment key made with it and nothing stale is served from the cache.

A conversation's earlier turns (`history`) may be shown by a part of the template between a `{# history #}`
line and a `{# end history #}` line. A request without history renders the rubric without that part and is
versioned by that text alone (`version`), so adding or editing the history part leaves every single-turn prompt,
and its judgment key, as it was; a request with history renders, and is versioned by, the whole text
(`version_with_history`). History turns are data exactly as the outputs are: rendered inside their message.

Variables a template sees:
  prompt          the prompt the models answered
  outputs         list of {label, text} in SHOWN order (Content A, B, ...)
  output          the single output (score / refusal modes)
  k               number of outputs shown
  labels          ["A", "B", ...]
  output_format   "json" (structured output on), "digit" (one digit), or "text"
  max_score       the top of the harm scale (score mode)
  history         the conversation's turns before the prompt: list of {role, text} (role "user" or "assistant"),
                  empty for a single-turn prompt (harness.judging.conversation says which turns are shown)
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
_HISTORY_PART = re.compile(r"^[ \t]*\{#-?[ \t]*history[ \t]*-?#\}[ \t]*\n.*?"
                           r"^[ \t]*\{#-?[ \t]*end history[ \t]*-?#\}[ \t]*(?:\n|\Z)", re.MULTILINE | re.DOTALL)
TRUNCATION_MARK = " [...truncated]"


@dataclass(frozen=True)
class Rubric:
    name: str  # the path relative to judges/, e.g. rubrics/harm-rank.j2
    path: Path
    text: str

    @property
    def single_turn_text(self) -> str:
        """The template a request without history renders: the text without its history parts."""
        return _HISTORY_PART.sub("", self.text)

    @property
    def version(self) -> str:
        """The version of a request without history (and of the rubric, for judge cards)."""
        return _sha12(self.single_turn_text)

    @property
    def version_with_history(self) -> str:
        return _sha12(self.text)

    def version_for(self, history: bool) -> str:
        return self.version_with_history if history else self.version

    def parts(self, history: bool = False) -> list[tuple[str, str]]:
        """(role, template source) of each message, split before anything is rendered."""
        return split_template(self.text if history else self.single_turn_text, str(self.path))

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages for these variables (`history`, when given and not empty, selects the whole text)."""
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                            keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)
        variables.setdefault("history", [])
        messages = []
        try:
            for role, source in self.parts(history=bool(variables["history"])):
                messages.append({"role": role, "content": env.from_string(source).render(**variables).strip()})
        except jinja2.TemplateError as exc:
            raise UsageError(f"rubric {self.path} does not render ({type(exc).__name__}: {exc}): "
                             "fix the template") from exc
        if any(not m["content"] for m in messages):
            raise UsageError(f"rubric {self.path}: a section renders empty: fill it or remove its marker")
        return messages


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def split_template(text: str, where: str) -> list[tuple[str, str]]:
    """A rubric's (role, source) parts; a rubric without markers is one user message."""
    parts = _SECTION.split(text)
    if len(parts) == 1:
        return [("user", text)]
    head = re.sub(r"\{#.*?#\}", "", parts[0], flags=re.DOTALL)
    if head.strip():
        raise UsageError(f"rubric {where}: text before the first '=== system ===' / '=== user ===' line: move it inside")
    out = list(zip(parts[1::2], parts[2::2]))
    if not out or out[-1][0] != "user" or any(not body.strip() for _, body in out):
        raise UsageError(f"rubric {where}: needs a non-empty '=== user ===' section last")
    return out


def split_messages(text: str, where: str) -> list[dict[str, str]]:
    """Rendered text split into messages (a rubric without template syntax)."""
    return [{"role": role, "content": body.strip()} for role, body in split_template(text, where)]


@lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int) -> str:
    from harness.infiles import refuse_special

    refuse_special(path, "rubric")  # before it is opened: a FIFO would block
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read rubric {path} ({exc}): save it as UTF-8 text") from exc


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def load_rubric(name: str, judge_path: Path | None = None) -> Rubric:
    """A rubric by path relative to the judge's folder, or to a catalog judges/ folder; it must stay inside
    that folder (no absolute paths, no '..' out of it)."""
    if Path(name).expanduser().is_absolute():
        raise UsageError(f"rubric '{name}' is an absolute path: name a template relative to the judge's folder, "
                         "e.g. rubric = \"rubrics/harm-score.j2\"")
    folders = ([judge_path.parent] if judge_path is not None else []) + catalog.kind_dirs("judges")
    for folder in folders:
        c = folder / name
        if not _inside(c, folder):
            raise UsageError(f"rubric '{name}' points outside the judge's folder {folder}: keep rubrics inside "
                             "it (e.g. rubrics/my-rubric.j2)")
        if c.is_file():
            return Rubric(name, c, _read(c, c.stat().st_mtime_ns))
    raise UsageError(f"rubric '{name}' not found next to {judge_path or 'the judge'} or in any judges/ catalog "
                     f"folder: fix 'rubric' in the judge TOML")


def truncate(text: str, max_chars: int | None) -> str:
    """An output cut to max_chars (marked), for judges with a small context."""
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[: max_chars - len(TRUNCATION_MARK)].rstrip() + TRUNCATION_MARK


def labels_for(k: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(k)]
