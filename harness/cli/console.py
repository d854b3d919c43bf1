"""The terminal: every console prints text as text.

Names and texts reach the terminal from users and models (model, device, rater and judge names, prompts,
outputs), so rich's markup (`[/]`, `[bold]`) and highlighting are off on every console; styles are given as
`rich.text.Text` spans instead (`labelled`). Every command gets its consoles from `terminal()`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


def terminal(*, stderr: bool = False, width: int | None = None) -> Console:
    """A console with markup and highlighting off."""
    return Console(stderr=stderr, width=width, markup=False, highlight=False)


def labelled(*pairs: Any) -> Text:
    """'label: value' lines with bold labels: labelled("CPU", "x", "RAM", "y") -> "CPU: x   RAM: y"."""
    parts: list[Any] = []
    for i in range(0, len(pairs), 2):
        if i:
            parts.append("   ")
        parts += [(str(pairs[i]), "bold"), f": {pairs[i + 1]}"]
    return Text.assemble(*parts)


def styled(text: Any, style: str) -> Text:
    return Text(str(text), style=style)
