"""A probe judge's weights and its rating: a dot product, no scikit-learn.

A probe is a linear model over a base model's pooled hidden state (harness.judging.probe_features): each feature
standardised by the training set's mean and scale, then weighted, plus an intercept; the logistic of that is the
probability that the output is harmful (or, for a refusal probe, that it refuses; for a rank probe, a graded harm
score fitted on the people's rank positions, harness.probe_fit), and the threshold chosen when it was fitted turns
the probability into a verdict (a rank probe: ranked harmful, or N/A). The weights live in a small JSON file beside the judge's TOML;
the entry records the file's sha256 and the base model file's sha256, and a file or a base that no longer hashes
to them is refused (UsageError) before anything is rated: a refit is a new judge, never a silent change.

`ProbeRater` rates (prompt, output) pairs in-process; `ProbeEntry` is what a judge entry of kind "probe" holds.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import jsontext
from harness.errors import UsageError
from harness.judging.probe_features import FeatureRecipe, HiddenStates, resolve_base

if TYPE_CHECKING:
    import numpy as np

TASKS = ("harm", "refusal", "rank")
WEIGHTS_FORMAT = "harness-probe-weights/1"


@dataclass(frozen=True)
class ProbeWeights:
    """Standardisation, linear weights and threshold of a fitted probe, with the recipe of its features."""

    task: str
    recipe: FeatureRecipe
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    fit: dict[str, Any] = field(default_factory=dict)  # C, folds, seed, sets: what the fit chose and read
    # the out-of-fold probability of each (prompt, output) it was fitted on, by content_key: what the probe says of
    # its own training outputs, so that people's labels of them still check it honestly (PPI++ needs a prediction
    # made without the label it is compared with)
    out_of_fold: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {"format": WEIGHTS_FORMAT, "task": self.task, "recipe": self.recipe.as_dict(), "mean": list(self.mean),
             "scale": list(self.scale), "coef": list(self.coef), "intercept": self.intercept,
             "threshold": self.threshold, "fit": self.fit}
        if self.out_of_fold:
            d["out_of_fold"] = dict(self.out_of_fold)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ProbeWeights:
        if not isinstance(d, dict) or d.get("format") != WEIGHTS_FORMAT:
            raise UsageError(f"{where} is not a probe weights file ({WEIGHTS_FORMAT}): refit the probe")
        try:
            n = len(d["coef"])
            weights = cls(task=str(d["task"]), recipe=FeatureRecipe.from_dict(dict(d["recipe"]), where),
                          mean=tuple(float(x) for x in d["mean"]), scale=tuple(float(x) for x in d["scale"]),
                          coef=tuple(float(x) for x in d["coef"]), intercept=float(d["intercept"]),
                          threshold=float(d["threshold"]), fit=dict(d.get("fit") or {}),
                          out_of_fold={str(k): float(v) for k, v in dict(d.get("out_of_fold") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: a probe weights file with a missing or malformed field ({exc}): refit the "
                             "probe") from None
        if weights.task not in TASKS:
            raise UsageError(f"{where}: task '{weights.task}' is unknown: use one of {', '.join(TASKS)}")
        if not n or len(weights.mean) != n or len(weights.scale) != n:
            raise UsageError(f"{where}: mean, scale and coef must be of one length (the features'): refit the probe")
        numbers = (*weights.mean, *weights.scale, *weights.coef, weights.intercept, weights.threshold)
        if not all(0.0 <= p <= 1.0 for p in weights.out_of_fold.values()):
            raise UsageError(f"{where}: out_of_fold holds probabilities (0..1): refit the probe")
        if not all(math.isfinite(x) for x in numbers) or any(s <= 0 for s in weights.scale):
            raise UsageError(f"{where}: weights must be finite numbers and scales positive: refit the probe")
        if not 0.0 <= weights.threshold <= 1.0:
            raise UsageError(f"{where}: threshold must be a probability (0..1), not {weights.threshold}")
        return weights

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(positive) per row of features: logistic(((x - mean) / scale) . coef + intercept)."""
        import numpy as np

        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.coef):
            raise UsageError(f"the probe expects {len(self.coef)} features per output, the base model gave "
                             f"{x.shape[-1] if x.ndim else 0}: the base model is not the one it was fitted on; refit")
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))))


def content_key(prompt: str, output: str) -> str:
    """What a probe's out-of-fold probabilities are kept under: the conversation it rates (as judge requests are)."""
    return hashlib.sha256(json.dumps([prompt, output], ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


def weights_bytes(weights: ProbeWeights) -> bytes:
    """The weights file's bytes (floats written so that they read back exactly)."""
    return (json.dumps(weights.as_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")


def save_weights(weights: ProbeWeights, path: Path) -> str:
    """Write the weights file (atomically); returns its sha256, which the judge entry records."""
    data = weights_bytes(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{time.perf_counter_ns()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def load_weights(path: Path, expected_sha256: str) -> ProbeWeights:
    """The weights of a file that hashes to `expected_sha256`; UsageError when it is missing, changed or
    malformed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"the probe weights file {path} cannot be read ({exc.strerror or exc}): refit the probe "
                         "with `harness judge fit`") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise UsageError(f"the probe weights file {path} does not match its entry (sha256 {digest[:12]}, recorded "
                         f"{expected_sha256[:12]}): it changed since the fit; refit the probe with `harness judge fit`")
    try:
        parsed = jsontext.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is not a probe weights file ({exc}): refit the probe") from None
    return ProbeWeights.from_dict(parsed, str(path))


@dataclass(frozen=True)
class ProbeEntry:
    """What a judge entry of kind "probe" holds: the base model, the weights file and their hashes, the recipe, the
    threshold and the card of the fit (`harness judge fit` writes it)."""

    name: str
    base: str
    base_sha256: str
    weights: Path  # resolved against the entry's folder
    weights_sha256: str
    task: str
    threshold: float
    recipe: dict[str, Any]
    card: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What makes two ratings by probes interchangeable: the base file, the weights file (which holds the recipe
        and threshold) and the task."""
        return {"kind": "probe", "base_sha256": self.base_sha256, "weights_sha256": self.weights_sha256,
                "task": self.task, "threshold": self.threshold, "recipe": self.recipe}

    def identity_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]


PROBE_KEYS = ("base", "base_sha256", "weights", "weights_sha256", "task", "threshold", "recipe", "card")


def parse_probe_entry(d: dict[str, Any], path: Path | None, name: str) -> ProbeEntry:
    """A probe entry from its TOML table `[probe]` (relative weights paths are against the TOML's folder)."""
    where = str(path) if path else f"judge '{name}'"
    probe = d.get("probe")
    if not isinstance(probe, dict):
        raise UsageError(f"{where}: a kind = \"probe\" judge needs a [probe] table (written by `harness judge fit`)")
    unknown = sorted(set(probe) - set(PROBE_KEYS))
    missing = [k for k in PROBE_KEYS[:7] if k not in probe]
    if unknown or missing:
        raise UsageError(f"{where}: [probe] " + (f"lacks {', '.join(missing)}" if missing else
                                                 f"has unknown key(s) {', '.join(unknown)}")
                         + f": it holds {', '.join(PROBE_KEYS)}; refit with `harness judge fit`")
    for key in ("base", "base_sha256", "weights", "weights_sha256", "task"):
        if not isinstance(probe[key], str) or not probe[key]:
            raise UsageError(f"{where}: [probe] {key} must be a non-empty string")
    threshold = probe["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise UsageError(f"{where}: [probe] threshold must be a probability (0..1), not {threshold!r}")
    if probe["task"] not in TASKS:
        raise UsageError(f"{where}: [probe] task '{probe['task']}' is unknown: use one of {', '.join(TASKS)}")
    if not isinstance(probe["recipe"], dict) or not isinstance(probe.get("card", {}), dict):
        raise UsageError(f"{where}: [probe] recipe and card must be tables")
    weights = Path(probe["weights"]).expanduser()
    if not weights.is_absolute() and path is not None:
        weights = path.parent / weights
    return ProbeEntry(name=name, base=probe["base"], base_sha256=probe["base_sha256"], weights=weights,
                      weights_sha256=probe["weights_sha256"], task=probe["task"], threshold=float(threshold),
                      recipe=dict(probe["recipe"]), card=dict(probe.get("card", {})))


@dataclass(frozen=True)
class ProbeRating:
    """One output rated by a probe: its probability and the verdict at the fit's threshold."""

    probability: float
    positive: bool  # harmful (harm probes) or refused (refusal probes)
    latency_s: float


class ProbeRater:
    """Rates (prompt, output) pairs with a probe entry: checks the weights file and the base model's hashes, then
    embeds each conversation through the base model and takes the dot product. No scikit-learn."""

    def __init__(self, entry: ProbeEntry, *, use_disk_cache: bool = True, n_threads: int = 0) -> None:
        self.entry = entry
        self.weights = load_weights(entry.weights, entry.weights_sha256)
        if self.weights.recipe.base_sha256 != entry.base_sha256:
            raise UsageError(f"judge '{entry.name}': its weights file was fitted on another base model than its entry "
                             "names: refit the probe with `harness judge fit`")
        path, sha, manifest = resolve_base(entry.base)
        if sha != entry.base_sha256:
            raise UsageError(f"judge '{entry.name}': its base model {entry.base} has changed (its file {path.name} "
                             f"hashes to {sha[:12]}, the probe was fitted on {entry.base_sha256[:12]}): refit the "
                             "probe with `harness judge fit`")
        self.states = HiddenStates(self.weights.recipe, path, manifest, use_disk_cache=use_disk_cache,
                                   n_threads=n_threads)

    def rate(self, pairs: list[tuple[str, str]]) -> list[ProbeRating]:
        """One rating per (prompt, output), in order; an output the probe was fitted on gets its out-of-fold
        probability (ProbeWeights.out_of_fold), every other one the fitted probe's."""
        import numpy as np

        out = []
        for prompt, output in pairs:
            t0 = time.perf_counter()
            held = self.weights.out_of_fold.get(content_key(prompt, output)) if self.weights.out_of_fold else None
            if held is not None:
                out.append(ProbeRating(held, held >= self.entry.threshold, time.perf_counter() - t0))
                continue
            x = self.states.features(prompt, output)[self.weights.recipe.pooling]
            p = float(self.weights.probabilities(np.asarray(x)[None, :])[0])
            out.append(ProbeRating(p, p >= self.entry.threshold, time.perf_counter() - t0))
        return out

    def close(self) -> None:
        self.states.close()
