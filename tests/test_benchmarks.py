"""The benchmarks at their smallest size: each writes its result as a page the report renders (no timing is
asserted here; timings belong to the benchmarks' own pages)."""

import importlib
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "experiments", "benchmarks"))
    monkeypatch.syspath_prepend(ROOT)
    return lambda name: importlib.import_module(name)


def test_step_overhead_writes_a_page_with_ratios_to_adam_and_its_targets(benchmarks, tmp_path):
    step_overhead, report = benchmarks("step_overhead"), benchmarks("experiments.report")
    args = ["--widths", "4", "--repeats", "2", "--optimizers", "adam", "mlp_l2o (32,32)", "lstm_l2o (2x20)"]
    data = step_overhead.main([*args, "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "benchmark_step_overhead_cnn.json").read_text())
    assert saved == json.loads(json.dumps(data)) and saved["kind"] == "benchmark"
    ((table,),) = [saved["tables"]]
    assert [row[1] for row in table["rows"]] == ["adam", "mlp_l2o (32,32)", "lstm_l2o (2x20)"]
    assert table["rows"][0][3] == "1.00x"  # Adam against itself, round by round
    assert table["rows"][2][4].startswith("<= 2x, ")  # LSTM's target on the CNN, checked against the ratio
    assert float(table["rows"][1][2]) > 0
    assert (tmp_path / "benchmark_step_overhead_cnn.md").read_text() == report.render(saved)


def test_interleaved_timing_names_every_call_and_compiles_each_once(benchmarks):
    timing = benchmarks("timing")
    traced = []

    def slow(x):
        traced.append("slow")
        return (x @ x.T).sum()

    x = __import__("jax").numpy.ones((64, 64))
    seconds, ratios, compiled = timing.time_interleaved({"base": (lambda v: v.sum(), (x,)), "slow": (slow, (x,))}, 3)
    assert set(seconds) == set(ratios) == set(compiled) == {"base", "slow"} and traced == ["slow"]
    assert ratios["base"] == 1.0 and all(s > 0 for s in seconds.values())
