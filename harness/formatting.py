"""Number formatting shared by the HTML page, the Markdown leaderboard, the terminal tables and messages."""

from __future__ import annotations

import math
from typing import Any


def missing(v: Any) -> bool:
    """None, NaN, pandas NA/NaT: anything that is not a value."""
    if v is None:
        return True
    if isinstance(v, (int, str)):
        return False
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True  # pd.NA and other non-numbers that stand for "no value"


def pct(v: Any, digits: int = 0) -> str:
    return "-" if missing(v) else f"{float(v) * 100:.{digits}f}%"


def rate_ci(rate: Any, lo: Any, hi: Any) -> str:
    """'33% [6-79%]', or '-' when there is no rate."""
    if missing(rate):
        return "-"
    if missing(lo) or missing(hi):
        return pct(rate)
    return f"{pct(rate)} [{float(lo) * 100:.0f}-{float(hi) * 100:.0f}%]"


def mb(v: Any) -> str:
    if missing(v):
        return "-"
    b = float(v)
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.0f} MB"


def num(v: Any, spec: str = ".1f") -> str:
    return "-" if missing(v) else format(float(v), spec)


def count(v: Any) -> str:
    return "-" if missing(v) else str(int(v))


def pvalue(v: Any) -> str:
    if missing(v):
        return "-"
    p = float(v)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def ratio(v: Any) -> str:
    return "-" if missing(v) else f"{float(v):.2f}x"


def num_iqr(value: Any, q1: Any, q3: Any, spec: str = ".1f") -> str:
    """'87.0 [84.1-90.2]' (a median and its interquartile range), or '-' when there is no value."""
    if missing(value):
        return "-"
    if missing(q1) or missing(q3):
        return num(value, spec)
    return f"{num(value, spec)} [{num(q1, spec)}-{num(q3, spec)}]"


def excluded(n_contended: Any, n_warmup: Any) -> str:
    """'2 contended, 1 warm-up' (samples left out of the cost medians), or '-' for none."""
    parts = [f"{int(n)} {what}" for n, what in ((n_contended, "contended"), (n_warmup, "warm-up"))
             if not missing(n) and int(n)]
    return ", ".join(parts) or "-"


def model_name(model: Any, base_model: Any = False) -> str:
    """A model's name as every leaderboard shows it: "(base)" beside a base model (pretrained, not chat-tuned: its
    outputs continue text rather than answer, so a low harm rate says less)."""
    return f"{model} (base)" if not missing(base_model) and bool(base_model) else str(model)


CONTENDED_MARK = "*"  # after a figure measured only while other processes used the machine


def contended_or(value: Any, contended: Any, text: str, contended_text: str) -> str:
    """`text` (a clean figure), or `contended_text` marked when there is no clean figure but a contended one."""
    return contended_text + CONTENDED_MARK if missing(value) and not missing(contended) else text


def decode_iqr(clean: tuple[Any, Any, Any], contended: tuple[Any, Any, Any]) -> str:
    """'87.0 [84.1-90.2]', or the contended median [IQR] marked when every sample was contended: '41.0 [39-44]*'."""
    return contended_or(clean[0], contended[0], num_iqr(*clean), num_iqr(*contended))


def contended_note(name: str, n_cost: Any, interference_frac: Any) -> str:
    """Why a variant's speed is marked: every sample contended, and how busy the machine was."""
    busy = (f"other processes took {pct(interference_frac)} of the machine" if not missing(interference_frac)
            else "the machine was busy")
    return (f"{CONTENDED_MARK} {name}: every sample contended ({busy}); median of {count(n_cost)} contended "
            "measurement(s): re-run on a quiet machine, or count them with --include-flagged")
