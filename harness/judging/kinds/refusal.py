"""Kind `refusal`: the pattern detector (harness.judging.refusal), no model, in mode `refusal` only.

It has no options. Its requests carry the output alone (no rubric, no messages), its answers are not worth the
disk cache (it is instant), and the detector's version (a hash of its source) stands in for a rubric in its
judgments' keys and its cards' identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.judging.config import JudgeConfig

if TYPE_CHECKING:
    from harness.judging.kinds import JudgeBackend

DETECTOR_RUBRIC = "refusal-patterns"


@dataclass(frozen=True)
class RefusalJudgeConfig(JudgeConfig):
    """The refusal detector as a judge."""

    default_mode: ClassVar[str] = "refusal"
    asks_a_model: ClassVar[bool] = False

    def takes_mode(self, mode: str) -> bool:
        return mode == "refusal"

    def kind_card_identity(self) -> dict[str, Any]:
        from harness.judging.refusal import detector_version

        return {"detector": detector_version()}

    def recorded_model(self) -> str | None:
        return "patterns"

    def fixed_rubric(self) -> tuple[str, str] | None:
        from harness.judging.refusal import detector_version

        return DETECTOR_RUBRIC, detector_version()

    def make_backend(self) -> JudgeBackend:
        from harness.judging.refusal import RefusalDetectorJudge

        return RefusalDetectorJudge(self)
