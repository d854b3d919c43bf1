"""Judging throughput of an in-process judge one output at a time against batched (harness.judging.llama_judge_batch),
and whether the judgments stay the same.

One process, one store of outputs (the default prompt set's prompts, each paired with one of judge_throughput.py's
replies), the judge run by the real runner (`judge_store`, disk cache off, a fresh store per run) one at a time and
at each batch size K, every mode run once per round, the order rotated from round to round so that machine noise hits
them alike. Prints, side by side:

  outputs/s      judgments of the whole store over the judging time (model load left out), median over rounds
  x single       the ratio to one-at-a-time measured in the same round, median over rounds
  identical      judgments whose answer and parsed value equal one-at-a-time's (a count, over every round)

    python benchmarks/batched_judging.py [--judge smollm2-score] [--outputs 40] [--batch 2,4,8] [--rounds 3]
        [--limit N]

--limit N is a smoke run (N outputs, one round): its figures mean nothing. Run for figures only on a quiet machine.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
from pathlib import Path
from typing import Any

from judge_throughput import CONTINUATIONS, OUTPUTS

from harness.judging import load_judge
from harness.judging.runner import judge_store
from harness.prompts import load_set
from harness.records import Generation
from harness.store import Store


def make_store(path: Path, n: int) -> None:
    """n outputs: the default set's prompts in order, each with one of the replies (a harmful or a safe one)."""
    prompts = [p.text for p in load_set("default")]
    rows = []
    for i in range(n):
        prompt = prompts[i % len(prompts)]
        output = f"{OUTPUTS[i % len(OUTPUTS)]} {CONTINUATIONS[(i // len(OUTPUTS)) % len(CONTINUATIONS)]}"
        key = hashlib.sha256(f"{i}|{prompt}|{output}".encode()).hexdigest()[:24]
        rows.append(Generation(sample_key=key, run_id="bench", device="bench", model=f"m{i % 2}", variant="release",
                               backend="external", prompt_id=f"p{i}", prompt=prompt,
                               prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(), output=output))
    with Store.open(path) as s:
        s.add(rows)


def judge_once(path: Path, judge: str, batch_size: int) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """(outputs per second, {judgment key: (answer, parsed value)}) of one run of the judge over a fresh store."""
    cfg = load_judge(judge)
    with Store.open(path, create=False) as s:
        result = judge_store(s, cfg, use_disk_cache=False, batch_size=batch_size)
        assert result.n_requested == result.n_judgments and result.n_failed == 0, result
        answers = {j.judgment_key: (j.raw_response, j.parsed) for j in s.judgments_of(cfg.name)}
    judging_s = result.elapsed_s - (result.model_load_s or 0.0)
    return result.n_judgments / judging_s, answers


def same(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """The same answer and parsed value (score probabilities within 1e-4)."""
    (ra, pa), (rb, pb) = a, b
    if ra != rb or (pa is None) != (pb is None):
        return False
    if pa is None:
        return True
    probs_a, probs_b = pa.get("score_probs") or {}, pb.get("score_probs") or {}
    rest_a = {k: v for k, v in pa.items() if k != "score_probs"}
    rest_b = {k: v for k, v in pb.items() if k != "score_probs"}
    return rest_a == rest_b and set(probs_a) == set(probs_b) and all(
        abs(probs_a[d] - probs_b[d]) <= 1e-4 for d in probs_a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", default="smollm2-score", help="an in-process judge (llama-cpp or probe)")
    ap.add_argument("--outputs", type=int, default=40)
    ap.add_argument("--batch", default="2,4,8", help="batch sizes K, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="smoke run: this many outputs, one round")
    args = ap.parse_args()
    n, rounds = (args.limit, 1) if args.limit else (args.outputs, args.rounds)
    modes = [1, *(int(k) for k in args.batch.split(",") if int(k) > 1)]
    rate: dict[int, list[float]] = {k: [] for k in modes}
    ratio: dict[int, list[float]] = {k: [] for k in modes}
    identical = {k: 0 for k in modes}
    compared = {k: 0 for k in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            got: dict[int, tuple[float, dict[str, tuple[Any, Any]]]] = {}
            for k in order:
                path = Path(tmp) / f"r{r}k{k}.sqlite"
                make_store(path, n)
                got[k] = judge_once(path, args.judge, k)
                print(f"  round {r + 1}, K={k}: {got[k][0]:.2f} outputs/s", flush=True)
            single = got[1][1]
            for k in modes:
                rate[k].append(got[k][0])
                ratio[k].append(got[k][0] / got[1][0])
                compared[k] += len(single)
                identical[k] += sum(same(single[key], got[k][1].get(key, (None, None))) for key in single)
    print(f"\njudge {args.judge}: {n} outputs, {rounds} round(s) (medians over rounds)")
    print(f"{'mode':>10} {'outputs/s':>10} {'x single':>9} {'identical':>14}")
    for k in modes:
        name = "single" if k == 1 else f"K={k}"
        print(f"{name:>10} {statistics.median(rate[k]):>10.2f} {statistics.median(ratio[k]):>9.2f} "
              f"{identical[k]:>6}/{compared[k]:<4} ({identical[k] / max(1, compared[k]):.0%})")


if __name__ == "__main__":
    main()
