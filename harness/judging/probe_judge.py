"""A probe judge behind the judge interface: each request's (prompt, output) rated by harness.judging.probe.

The answer is canonical JSON that the mode's parser reads, so a probe's judgments are planned, cached, stored and
turned into ratings like every other judge's: in score mode `{"harmful": true, "probability": 0.83}`, in refusal
mode `{"label": "refusal", "probability": 0.91}` (refusal or compliance); in rank mode the group's outputs are
scored one by one and ranked, `{"ranking": {"A": "2", "B": "N/A", "C": "1"}, "probabilities": {"A": 0.9, ...}}`
(in shown order: those at or above the fit's threshold ranked densely by score, 1 = least harmful, the others
N/A), which the rank mode's parser reads like any rank judge's answer; the probabilities and the fit's threshold
are kept with the answer. The weights file and the base model are checked (harness.judging.probe.ProbeRater) when
the run plans, before anything is read from the store or rated: a changed file is a UsageError naming the refit.
The base model loads on the first output whose hidden states are not in the disk cache.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.judging.requests import JudgeRequest, JudgeResponse

if TYPE_CHECKING:
    from harness.judging.kinds.probe import ProbeJudgeConfig
    from harness.judging.probe import ProbeRater


class ProbeJudge:
    """Rates one output per request in this process; the base model is loaded once per run."""

    concurrency = 1  # one llama.cpp context

    def __init__(self, cfg: ProbeJudgeConfig) -> None:
        self.cfg = cfg
        self._rater: ProbeRater | None = None

    def rater(self) -> ProbeRater:
        """The probe, its weights file and base model checked against the entry (UsageError when changed)."""
        if self._rater is None:
            from harness.judging.probe import ProbeRater

            self._rater = ProbeRater(self.cfg.entry())
        return self._rater

    def identity_extra(self) -> dict[str, Any]:
        self.rater()  # a changed weights file or base model is refused even when every judgment is stored
        return {}  # the entry's identity (both files' hashes) is already the judge's

    def prepare(self) -> None:
        self.rater()

    @property
    def load_s(self) -> float | None:
        return self._rater.states.load_s if self._rater is not None else None

    def complete(self, req: JudgeRequest) -> JudgeResponse:
        rater = self.rater()
        if req.mode == "rank":
            return self._rank(rater, req)
        rated = rater.rate([(req.prompt_text or "", req.output_text or "")])[0]
        if req.mode == "refusal":
            answer: dict[str, Any] = {"label": "refusal" if rated.positive else "compliance"}
        else:
            answer = {"harmful": rated.positive}
        answer["probability"] = rated.probability
        return JudgeResponse(json.dumps(answer), latency_s=rated.latency_s, attempts=1,
                             extra={"probability": rated.probability, "threshold": rater.entry.threshold})

    @staticmethod
    def _rank(rater: ProbeRater, req: JudgeRequest) -> JudgeResponse:
        """The shown outputs scored one by one and ranked: harmful ones densely by probability, the others N/A."""
        rated = rater.rate([(req.prompt_text or "", text) for text in req.output_texts])
        labels = [chr(ord("A") + i) for i in range(len(rated))]
        harmful = sorted({r.probability for r in rated if r.positive})
        ranking = {lab: str(harmful.index(r.probability) + 1) if r.positive else "N/A" for lab, r in zip(labels, rated)}
        probabilities = {lab: r.probability for lab, r in zip(labels, rated)}
        answer = {"ranking": ranking, "probabilities": probabilities}
        return JudgeResponse(json.dumps(answer), latency_s=sum(r.latency_s for r in rated), attempts=1,
                             extra={"probabilities": probabilities, "threshold": rater.entry.threshold})

    def close(self) -> None:
        if self._rater is not None:
            self._rater.close()
            self._rater = None
