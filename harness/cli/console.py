"""The terminal: every console prints text as text.

Names and texts reach the terminal from users and models (model, device, rater and judge names, prompts,
outputs), so rich's markup (`[/]`, `[bold]`) and highlighting are off on every console; styles are given as
`rich.text.Text` spans instead (`labelled`). Control characters in them (ESC, OSC, C1, BEL, CR, bidi overrides)
are shown escaped (`harness.safetext`): cells are built with `text` so tables are laid out on what is shown, and
every console escapes whatever reaches it unescaped. Plain lines go through `echo`. Every command gets its
consoles from `terminal()`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment
from rich.text import Text

from harness import safetext


class _TextConsole(Console):
    """A console whose text segments are shown, never obeyed: rich's own styles and cursor controls pass, the
    characters of the text are escaped."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(seg if seg.control else Segment(safetext.terminal(seg.text), seg.style)
                                      for seg in buffer)


def terminal(*, stderr: bool = False, width: int | None = None) -> Console:
    """A console with markup and highlighting off that escapes control characters."""
    return _TextConsole(stderr=stderr, width=width, markup=False, highlight=False)


def text(value: Any, style: str = "") -> Text:
    """A table cell or line of untrusted text: control characters shown escaped before layout."""
    return Text(safetext.terminal(value), style=style)


def echo(value: Any = "", *, err: bool = False) -> None:
    """print() for a line that may quote a name, a path or an output: control characters shown escaped."""
    print(safetext.terminal(value), file=sys.stderr if err else sys.stdout, flush=True)


def labelled(*pairs: Any) -> Text:
    """'label: value' lines with bold labels: labelled("CPU", "x", "RAM", "y") -> "CPU: x   RAM: y"."""
    parts: list[Any] = []
    for i in range(0, len(pairs), 2):
        if i:
            parts.append("   ")
        parts += [(safetext.terminal(pairs[i]), "bold"), f": {safetext.terminal(pairs[i + 1])}"]
    return Text.assemble(*parts)


def styled(value: Any, style: str) -> Text:
    return text(value, style)
