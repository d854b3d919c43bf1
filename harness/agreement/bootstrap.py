"""Bootstrap over items: resample item indices with replacement and sum per-item statistics.

Every agreement metric is a function of a sum of per-item statistics (a mean is sum / count, alpha a
coincidence matrix, kappa a confusion matrix), so one resample is a weight vector (how often each
item was drawn) times the items x statistics matrix. Weights are built in chunks with `bincount`,
which keeps 1,000 resamples of 100,000 items to a few matrix products.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

CHUNK_CELLS = 4_000_000  # resamples x items per chunk of weights (32 MB of float64)


def seed_for(seed: int, *labels: object) -> np.random.Generator:
    """A generator that depends only on the seed and the labels (not on the order pairs are visited)."""
    key = zlib.crc32("\x1f".join(map(str, labels)).encode("utf-8"))
    return np.random.default_rng([int(seed), key])


def resampled_sums(stats: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples x d) sums of `stats` (items x d) over item resamples drawn with replacement."""
    n_items = stats.shape[0]
    stats = np.ascontiguousarray(stats, dtype=np.float64)
    out = np.empty((n_resamples, stats.shape[1]))
    if n_items == 0 or n_resamples <= 0:
        return out[:0]
    chunk = max(1, min(n_resamples, CHUNK_CELLS // n_items))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        draws = rng.integers(0, n_items, size=(b, n_items))
        draws += (np.arange(b) * n_items)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n_items).reshape(b, n_items).astype(np.float64)
        out[done:done + b] = weights @ stats  # float @ float: BLAS (an int matrix would take a slow loop)
        done += b
    return out


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap values, ignoring resamples where the metric is undefined."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(stats: np.ndarray, value_of: Callable[[np.ndarray], np.ndarray], n_resamples: int,
                       rng: np.random.Generator) -> tuple[float | None, float | None]:
    """95% percentile interval of `value_of(summed stats)` over item resamples."""
    if n_resamples <= 0 or stats.shape[0] == 0:
        return None, None
    sums = resampled_sums(stats, n_resamples, rng)
    return percentile_interval(np.asarray(value_of(sums), dtype=float))
