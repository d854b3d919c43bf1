"""Kind `probe`: a linear probe on a base model's hidden states (harness.judging.probe), fitted by `harness judge fit`.

Its options are the TOML's `[probe]` table as the fit writes it (base, base_sha256, weights, weights_sha256, task,
threshold, recipe, card: harness.judging.probe.parse_probe_entry), a key no other kind may hold. It asks no model
with a rubric: a harm probe judges in mode `score` (a harm verdict per output with its probability), a refusal probe
in mode `refusal` (refusal or compliance, with the probability that it refuses), a rank probe in mode `rank` (the
outputs of one prompt scored one by one, those at or above the threshold ranked by score, the others N/A). Its identity is the entry's
(base file, weights file, task, threshold, recipe), so a refit is a new judge and old ratings keep theirs; the card
of the fit is not part of it. The backend is harness.judging.probe_judge.ProbeJudge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import UsageError
from harness.judging.config import JudgeConfig

if TYPE_CHECKING:
    from harness.judging.kinds import JudgeBackend
    from harness.judging.probe import ProbeEntry

TASK_MODES = {"harm": "score", "refusal": "refusal", "rank": "rank"}  # a probe's task -> the mode it judges in


@dataclass(frozen=True)
class ProbeJudgeConfig(JudgeConfig):
    """A fitted probe as a judge."""

    probe: dict[str, Any] = field(default_factory=dict)  # the TOML's [probe] table

    asks_a_model: ClassVar[bool] = False
    answers_probability: ClassVar[bool] = True
    claimed_keys: ClassVar[tuple[str, ...]] = ("probe",)

    @classmethod
    def default_mode_for(cls, values: dict[str, Any]) -> str:
        table = values.get("probe")
        task = table.get("task") if isinstance(table, dict) else None
        return TASK_MODES.get(str(task), cls.default_mode)

    def takes_mode(self, mode: str) -> bool:
        task = self.probe.get("task")
        return mode == TASK_MODES[task] if task in TASK_MODES else mode in TASK_MODES.values()

    def entry(self) -> ProbeEntry:
        """The probe entry of the [probe] table (UsageError naming the file when it is malformed)."""
        from harness.judging.probe import parse_probe_entry

        return parse_probe_entry({"probe": self.probe}, self.path, self.name)

    def check_kind(self, bad: Callable[[str], UsageError]) -> None:
        if not self.probe:
            raise bad("a 'probe' judge needs a [probe] table: fit one with `harness judge fit`")
        self.entry()

    def kind_identity(self) -> dict[str, Any]:
        return self.entry().identity()

    def model_name(self) -> str | None:
        base = self.probe.get("base")
        return str(base) if base else None

    def fixed_rubric(self) -> tuple[str, str] | None:
        return "probe-weights", str(self.probe.get("weights_sha256", ""))[:12]

    def make_backend(self) -> JudgeBackend:
        from harness.judging.probe_judge import ProbeJudge

        return ProbeJudge(self)
