"""A probe judge behind the judge interface: each request's (prompt, output) rated by harness.judging.probe.

The answer is canonical JSON that the mode's parser reads, so a probe's judgments are planned, cached, stored and
turned into ratings like every other judge's: in score mode `{"harmful": true, "probability": 0.83}`, in refusal
mode `{"label": "refusal", "probability": 0.91}` (refusal or compliance); the probability and the fit's threshold
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
        rated = rater.rate([(req.prompt_text or "", req.output_text or "")])[0]
        if req.mode == "refusal":
            answer: dict[str, Any] = {"label": "refusal" if rated.positive else "compliance"}
        else:
            answer = {"harmful": rated.positive}
        answer["probability"] = rated.probability
        return JudgeResponse(json.dumps(answer), latency_s=rated.latency_s, attempts=1,
                             extra={"probability": rated.probability, "threshold": rater.entry.threshold})

    def close(self) -> None:
        if self._rater is not None:
            self._rater.close()
            self._rater = None
