"""Cost figures per variant: medians over the cost measurements of generations without an error (TTFT, prompt and
decode tokens/s, latency, energy per output token, share of the bandwidth bound); a generation measured several
times (--repeat, re-measurements) contributes each of its measurements.

By default the medians leave out the warm-up sample of each loaded variant and every contended measurement (other
processes took more than the threshold of the machine); `n_warmup` and `n_contended` count the samples left out (a
sample counts as contended when none of its measurements was clean), `n_cost` the measurements the medians are over.
Unflagged rows (older stores, imports) count as clean. Samples generated in a batch (`made_by` "batched", harness run
--batch) have no cost: they count in `n` but never in a median, `n_cost` or the samples left out. A variant with no clean measurement left keeps its clean
medians unknown (None) and gets `contended` figures instead: the medians of its contended measurements and the share
of the machine others took, for surfaces to show marked (never used for a limit, a rank or a Pareto front).
Decode tok/s comes with its interquartile range (q1, q3; linear interpolation). Peak RAM and VRAM are maxima over
every generation without an error; latency p90 is where the slowest decile starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from harness.rates.inputs import VariantKey
from harness.records import Generation
from harness.stats import maximum, median, quantile


@dataclass(frozen=True)
class ContendedCost:
    """The cost medians of a variant none of whose samples was measured cleanly, over its contended measurements
    (warm-up left out), with what else used the machine meanwhile: shown marked as contended where the clean
    medians are unknown, never used for a limit, a rank or a front (those need clean measurements)."""

    n_cost: int  # contended measurements the medians are over
    decode_tps: float | None
    decode_tps_q1: float | None
    decode_tps_q3: float | None
    ttft_s: float | None
    interference_frac: float | None  # median share of the machine other processes (and steal) took


NO_CONTENDED_COST = ContendedCost(0, None, None, None, None, None)  # the flat columns of a variant without them


@dataclass(frozen=True)
class CostSummary:
    device: str
    model: str
    variant: str
    backend: str
    n: int
    n_errors: int
    size_bytes: int | None
    ttft_s: float | None
    prompt_tps: float | None
    decode_tps: float | None
    latency_s: float | None
    latency_p90_s: float | None
    peak_rss_bytes: int | None
    peak_vram_bytes: int | None
    energy_j_per_token: float | None
    bandwidth_fraction: float | None
    n_cost: int = 0  # cost measurements the medians are over
    n_contended: int = 0  # samples left out: no clean measurement
    n_warmup: int = 0  # samples left out: the warm-up after loading
    decode_tps_q1: float | None = None
    decode_tps_q3: float | None = None
    contended: ContendedCost | None = None  # when no clean measurement is left: the contended figures, marked

    @property
    def n_excluded(self) -> int:
        return self.n_contended + self.n_warmup

    @property
    def key(self) -> VariantKey:
        return (self.device, self.model, self.variant)

    def columns(self) -> dict[str, Any]:
        """The summary as flat columns (`cost_columns`): its own figures, then the contended ones named
        `contended_*` (0 measurements and unknown figures when there are none)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "contended"}
        contended = self.contended or NO_CONTENDED_COST
        return {**own, **{f"contended_{f.name}": getattr(contended, f.name) for f in fields(ContendedCost)}}


def cost_columns() -> list[str]:
    """The names of `CostSummary.columns`, in order."""
    return ([f.name for f in fields(CostSummary) if f.name != "contended"]
            + [f"contended_{f.name}" for f in fields(ContendedCost)])


COST_FIELDS = ("ttft_s", "prompt_tps", "decode_tps", "latency_s", "energy_j_per_token", "bandwidth_fraction")


def cost_measurements(g: Generation, include_flagged: bool = False) -> list[dict[str, Any]]:
    """The cost measurements of one generation that count (see the module docstring): its `measurements`
    without errors (and, unless `include_flagged`, without contended ones), else its own figures."""
    if g.measurements:
        entries = [m for m in g.measurements if isinstance(m, dict) and m.get("error") is None]
        return entries if include_flagged else [m for m in entries if not m.get("contended")]
    if g.contended and not include_flagged:
        return []
    return [{"ttft_s": g.ttft_s, "prompt_tps": g.prompt_tps, "decode_tps": g.decode_tps, "latency_s": g.latency_s,
             "energy_j_per_token": g.energy_j_per_token, "bandwidth_fraction": g.bandwidth_fraction,
             "interference_frac": g.interference_frac, "cpu_steal_frac": g.cpu_steal_frac}]


def _busy_share(m: dict[str, Any]) -> float | None:
    """Other processes' share of the machine during one measurement, steal included (None when not measured)."""
    frac = m.get("interference_frac")
    return None if frac is None else float(frac) + float(m.get("cpu_steal_frac") or 0.0)


def contended_cost(counted: Sequence[Generation]) -> ContendedCost | None:
    """The contended figures of samples none of which was measured cleanly (None when nothing was measured)."""
    ms = [m for g in counted for m in cost_measurements(g, include_flagged=True)]
    decode = [m.get("decode_tps") for m in ms]
    if not ms or all(v is None for v in decode):
        return None
    return ContendedCost(len(ms), median(decode), quantile(decode, 0.25), quantile(decode, 0.75),
                         median([m.get("ttft_s") for m in ms]), median([_busy_share(m) for m in ms]))


def cost_summaries(generations: Sequence[Generation], include_flagged: bool = False) -> list[CostSummary]:
    groups: dict[VariantKey, list[Generation]] = {}
    for g in generations:
        groups.setdefault((g.device, g.model, g.variant), []).append(g)
    out = []
    for (device, model, variant), rows in sorted(groups.items()):
        ok = [g for g in rows if g.ok]
        measured = [g for g in ok if g.made_by != "batched"]  # batched samples have no per-user cost
        warm = 0 if include_flagged else sum(1 for g in measured if g.warmup)
        counted = measured if include_flagged else [g for g in measured if not g.warmup]
        per = [cost_measurements(g, include_flagged) for g in counted]
        n_contended = sum(1 for ms in per if not ms)
        ms = [m for sample in per for m in sample]

        def col(name: str, ms: list[dict[str, Any]] = ms) -> list[float | None]:
            return [m.get(name) for m in ms]

        size = maximum(g.model_size_bytes for g in rows)
        rss = maximum(g.peak_rss_bytes for g in ok)
        vram = maximum(g.peak_vram_bytes for g in ok)
        out.append(CostSummary(
            device, model, variant, rows[0].backend, len(rows), len(rows) - len(ok),
            int(size) if size is not None else None,
            median(col("ttft_s")), median(col("prompt_tps")), median(col("decode_tps")),
            median(col("latency_s")), quantile(col("latency_s"), 0.9),
            int(rss) if rss is not None else None, int(vram) if vram is not None else None,
            median(col("energy_j_per_token")), median(col("bandwidth_fraction")),
            n_cost=len(ms), n_contended=n_contended, n_warmup=warm,
            decode_tps_q1=quantile(col("decode_tps"), 0.25), decode_tps_q3=quantile(col("decode_tps"), 0.75),
            contended=None if ms else contended_cost(counted)))
    return out
