"""The engine's records: a RunSpec (built by the API, sent to fleet boards), a sample's frozen Measurements and the
Generation built from them (figures worked out by hand), the one run-metadata builder, the version."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import pytest

import harness
from harness import engine
from harness.backends import BackendResult, Sampling
from harness.devices import load_profile
from harness.errors import UsageError
from harness.measurement import Measurement, MeasurePolicy, Sample, build_generation
from harness.prompts import Prompt, load_set
from harness.variants import VariantFile, parse_spec

MODEL = "smollm2-135m-instruct:Q4_1"


def spec(**settings: object) -> engine.RunSpec:
    return engine.RunSpec(models=[parse_spec(MODEL)], prompts=load_set("default")[:3], **settings)  # type: ignore[arg-type]


def test_a_spec_keeps_tuples_and_lays_out_its_cells_prompt_major() -> None:
    s = spec(seeds=[4, 7], sampling=Sampling(max_tokens=8, temperature=0.5))
    assert isinstance(s.prompts, tuple) and s.seeds == (4, 7) and s.models[0][1] == ("Q4_1",)
    assert s.size == 1 * 3 * 2
    assert [(p.id, f.plain, seed) for p, f, seed in s.cells()] == [(p.id, True, seed) for p in s.prompts
                                                                    for seed in (4, 7)]
    assert s.prompt_sets() == sorted({p.prompt_set for p in s.prompts}) and s.prompt_sets()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seeds = (1,)  # type: ignore[misc]


def test_a_spec_travels_to_a_board_as_json_and_back() -> None:
    s = spec(seeds=[1, 2], sampling=Sampling(max_tokens=8), policy=MeasurePolicy(contention_threshold=0.3))
    manifest, variants = s.models[0]
    one = s.for_variant(manifest, variants[0])
    wire = json.loads(json.dumps(one.to_wire()))  # what a board reads from its job file
    assert wire["models"] == [[manifest.name, ["Q4_1"]]] and wire["seeds"] == [1, 2]
    back = engine.RunSpec.from_wire(wire)
    assert back == one and back.shard is None and back.policy.contention_threshold == 0.3
    # the shard (a tuple) survives JSON's lists too
    assert engine.RunSpec.from_wire(json.loads(json.dumps(spec(shard=(2, 3)).to_wire()))).shard == (2, 3)


def test_a_spec_naming_a_model_the_board_lacks_is_a_usage_error() -> None:
    wire = spec().to_wire()
    wire["models"] = [["no-such-model", ["Q4_1"]]]
    with pytest.raises(UsageError):
        engine.RunSpec.from_wire(wire)


def _measurement(repeat: int, decode_tps: float, rss: int, *, contended: bool | None, energy_j: float | None = None,
                 output: str = "no") -> Measurement:
    result = BackendResult(output, "stop", n_prompt_tokens=10, n_output_tokens=4, timings={"t": 1})
    return Measurement(repeat, result, None, ttft_s=0.5, decode_tps=decode_tps, latency_s=1.0, n_streamed=4,
                       peak_rss_bytes=rss, rss_method="psutil", energy_j=energy_j, energy_source="rapl" if energy_j
                       else None, interference_frac=0.5 if contended else 0.01, cpu_steal_frac=0.0,
                       contended=contended)


def _sample() -> Sample:
    vf = VariantFile("m", "Q4_1", "gguf", Path("m.gguf"), "ab" * 32, 1000)
    prompt = Prompt("p1", "say no", "benign", True, "test", prompt_set="s")
    return Sample("key", vf, None, prompt, Sampling(max_tokens=4, seed=3), "llama 1")  # type: ignore[arg-type]


def _device():  # type: ignore[no-untyped-def]
    """A profile without a peak bandwidth: no roofline (which would read the variant's file)."""
    return dataclasses.replace(load_profile("laptop-cpu"), peak_bandwidth_gbps=None)


def test_a_generation_takes_the_median_of_its_uncontended_measurements() -> None:
    device = _device()
    ms = [_measurement(0, 10.0, 100, contended=False, energy_j=2.0),
          _measurement(0, 99.0, 500, contended=True, energy_j=9.0, output="yes"),
          _measurement(1, 30.0, 200, contended=False, energy_j=4.0)]
    g = build_generation(_sample(), device, "run", ms, warmup=False, policy=MeasurePolicy(repeat=2))
    assert g.output == "no" and g.seed == 3 and g.repeats == 2 and g.prompt_set == "s"
    assert g.decode_tps == 20.0  # median of 10 and 30: the contended 99 is left out
    assert g.energy_j == 3.0 and g.energy_source == "rapl"
    assert g.peak_rss_bytes == 500  # peaks count every measurement that did not fail
    assert g.contended is False and g.interference_frac == 0.01
    assert g.prompt_tps == 20.0  # 10 prompt tokens in 0.5 s
    assert g.measurements is not None and [m["repeat"] for m in g.measurements] == [0, 0, 1]
    assert [m["same_output"] for m in g.measurements] == [True, False, True]
    assert g.measurements[0]["energy_j_per_token"] == 0.5  # 2 J over 4 tokens
    assert g.backend_timings == {"t": 1, "n_streamed_tokens": 4, "rss_method": "psutil"}


def test_a_generation_all_contended_is_flagged_and_measured_once_keeps_no_list() -> None:
    device = _device()
    both = [_measurement(0, 10.0, 1, contended=True), _measurement(0, 20.0, 1, contended=True)]
    g = build_generation(_sample(), device, "run", both, warmup=False, policy=MeasurePolicy())
    assert g.contended is True and g.decode_tps == 15.0
    once = build_generation(_sample(), device, "run", both[:1], warmup=True, policy=MeasurePolicy())
    assert once.measurements is None and once.warmup and once.decode_tps == 10.0


def test_one_builder_writes_every_run_s_plan_metadata() -> None:
    s = spec(seeds=[5])
    meta = engine.run_metadata(s, [{"model": "m"}], {"distributed": "9"}, {"fleet": {"scheduler": "x"}})
    assert meta["versions"] == {"harness": harness.__version__, "distributed": "9"}
    assert meta["seeds"] == [5] and meta["prompt_sets"] == s.prompt_sets() and meta["fleet"] == {"scheduler": "x"}
    assert meta["sampling"] == s.sampling.as_dict() and meta["process"]["pid"] > 0


def test_the_version_is_the_installed_package_s() -> None:
    assert harness.__version__ == importlib.metadata.version("harness")


def test_run_refuses_a_spec_with_plan_arguments_beside_it() -> None:
    with pytest.raises(UsageError, match="spec and also limit, max_tokens"):
        harness.run(spec=spec(), limit=2, max_tokens=8, judge=False, report=False)
    with pytest.raises(UsageError, match="spec and also model"):
        harness.run(MODEL, spec=spec(), judge=False, report=False)


def test_a_ready_spec_runs_the_plan_its_keyword_arguments_would(tmp_path: Path) -> None:
    from harness.api import run_spec

    store = tmp_path / "spec.sqlite"
    ready = run_spec(MODEL, limit=2, limit_mode="first", max_tokens=4)
    first = harness.run(spec=ready, store=store, judge=False, report=False)
    assert first.written == 2 and first.status == "finished"
    again = harness.run(MODEL, limit=2, limit_mode="first", max_tokens=4, store=store, judge=False, report=False)
    assert again.sample_keys == first.sample_keys and again.skipped == 2 and again.written == 0
