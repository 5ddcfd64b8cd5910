"""The bench command: a tiny configuration runs quickly and reports every row. Timings are never asserted."""

import json
import math
from dataclasses import replace

import pytest
import torch

from credit_tutorial import bench
from credit_tutorial.cli import main

TINY = dict(batch_sizes=(8,), repeats=2, warmup=1, min_block=0.0, threads=1,
            settings=bench.Settings(ensemble_sizes=(3,), lifetime_steps=2))


def _positive_float(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_tiny_run_has_one_row_per_rule_and_network_with_positive_ratios():
    rules = ["fa", "np-sgd", "np-ridge-k", "qagrel", "ensemble", "flp-step", "flp-meta"]
    threads = torch.get_num_threads()
    result = bench.run_bench(rules, **TINY)
    assert torch.get_num_threads() == threads  # the thread count is restored
    rows = {(row["rule"], row["network"]): row for row in result["rows"]}
    sigmoid, wide, relu = bench.SIGMOID.name, bench.RELU_WIDE.name, bench.RELU_CE.name
    expected = {("bp", sigmoid), ("fa", sigmoid), ("np-sgd", sigmoid), ("np-ridge-k", sigmoid), ("ensemble", sigmoid),
                ("bp", wide), ("qagrel", wide), ("bp", relu), ("flp-step", relu), ("flp-meta", relu)}
    assert set(rows) == expected and len(result["rows"]) == len(expected)  # one reference per network
    assert result["skipped"] == []
    for row in result["rows"]:
        assert row["batch"] == 8
        assert _positive_float(row["ratio"]["median"]) and _positive_float(row["ms"]["median"])
        assert row["ratio"]["q1"] <= row["ratio"]["median"] <= row["ratio"]["q3"]
        assert _positive_float(row["ratio_per_step"])
        assert isinstance(row["operations"], int) and row["operations"] > 0
    for network in (sigmoid, wide, relu):
        assert rows[("bp", network)]["ratio"]["median"] == 1.0  # the reference against itself
    assert rows[("ensemble", sigmoid)]["copies"] == 3 and "3" in rows[("ensemble", sigmoid)]["label"]
    assert rows[("flp-meta", relu)]["steps_per_call"] == 2
    assert rows[("fa", sigmoid)]["target"] == 1.05 and isinstance(rows[("fa", sigmoid)]["meets_target"], bool)
    table = bench.format_table(result)
    for row in result["rows"]:
        assert row["label"] in table
    json.loads(json.dumps(result, allow_nan=False))  # JSON as it is


def test_cli_prints_the_table_and_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--rules", "fa,dfa", "--batch-sizes", "4", "--repeats", "2", "--warmup", "0",
                 "--min-block-ms", "0.01", "--threads", "1", "--clock", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "feedback alignment" in printed and "direct feedback alignment" in printed and "load average" in printed
    record = json.loads(out.read_text())
    assert record["command"].startswith("python -m credit_tutorial bench")
    assert record["clock"] == "cpu" and record["threads"] == 1
    assert [row["rule"] for row in record["rows"]] == ["bp", "fa", "dfa"]
    assert all(_positive_float(row["ratio"]["median"]) for row in record["rows"])
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


@pytest.mark.parametrize("argv, message", [
    (["--rules", "fa,nope"], "nope"),
    (["--batch-sizes", "0"], "positive integers"),
    (["--repeats", "0"], "positive integer"),
    (["--clock", "gpu"], "invalid choice"),
])
def test_bad_arguments_end_in_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_calls_name_the_argument():
    with pytest.raises(ValueError, match="rules"):
        bench.run_bench(["backprop"])
    with pytest.raises(ValueError, match="batch_sizes"):
        bench.run_bench(["fa"], batch_sizes=[0])
    with pytest.raises(ValueError, match="clock"):
        bench.run_bench(["fa"], clock="gpu")
    with pytest.raises(ValueError, match="lifetime_steps"):
        bench.run_bench(["flp-meta"], batch_sizes=[256], settings=bench.Settings(lifetime_steps=1000))


def test_a_rule_that_cannot_be_built_is_skipped_with_a_clear_line(monkeypatch):
    def unavailable(setup):
        raise ImportError("flp is being rewritten")
    monkeypatch.setattr(bench, "_flp_learner", unavailable)
    result = bench.run_bench(["fa", "flp-step"], **TINY)
    assert [row["rule"] for row in result["rows"]] == ["bp", "fa"]
    assert result["skipped"] == [{"rule": "flp-step",
                                  "reason": "FLP lifetime step could not be built: ImportError: flp is being rewritten"}]
    assert "skipped flp-step: FLP lifetime step could not be built" in bench.format_table(result)


def test_summary_gives_median_and_quartiles():
    assert bench.summary([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0}
    assert bench.summary([2.0]) == {"median": 2.0, "q1": 2.0, "q3": 2.0, "min": 2.0, "max": 2.0}


def test_multiply_adds_by_hand():
    sizes, b = (4, 3, 2), 5                          # P = [12, 6]
    forward = grads = b * 18
    assert bench.multiply_adds("bp", sizes, b) == forward + b * 6 + grads == 210
    assert bench.multiply_adds("fa", sizes, b) == 210
    assert bench.multiply_adds("np-sgd", sizes, b) == 210 + b * 6 + 2 * b * 6       # noisy pass + residual + update
    assert bench.multiply_adds("np-ridge", sizes, b) == pytest.approx(210 + 30 + b * (4 + 6) + 8 / 6 + 12)
    assert bench.multiply_adds("reinforce", sizes, b) == forward + b * 6 + grads  # noisy pass instead of carrying δ
    assert bench.multiply_adds("qagrel", sizes, b) == forward + grads              # the top feedback is a gather
    assert bench.multiply_adds("ensemble", sizes, b, copies=7) == 7 * 210
    with pytest.raises(ValueError, match="rule"):
        bench.multiply_adds("sgd", sizes, b)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "np-sgd", "reinforce", "qagrel", "ensemble"])
def test_multiply_adds_count_the_products_each_step_runs(rule):
    """The arithmetic bound is what the code multiplies: the profiler's count of matrix-product flops in one step
    equals twice the multiply-adds (a rule that grows an extra product fails here)."""
    from torch.profiler import ProfilerActivity, profile

    from credit_tutorial.data import load_embedded_mnist

    case, copies = bench.CASES[rule], (3 if rule == "ensemble" else None)
    setup = bench.Setup(case.network, 8, torch.device("cpu"), load_embedded_mnist(), bench.Settings(), copies)
    step = case.make(setup)
    step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
        step()
    products = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
    flops = sum(event.flops for event in prof.key_averages() if event.key in products)
    # the profiler reports no flops for in-place products (B.addmm_(A1, A2): B += A1 A2); count them from the shapes
    for event in prof.events():
        if event.name in ("aten::addmm_", "aten::baddbmm_"):
            *lead, m, k = event.input_shapes[1]
            flops += 2 * math.prod(lead) * m * k * event.input_shapes[2][-1]
    assert flops == 2 * bench.multiply_adds(rule, case.network.sizes, 8, copies=copies)


def test_operations_per_call_counts_dispatched_tensor_operations():
    x = torch.ones(3)

    def three():
        (x + 1).mul_(2).sum()
    assert bench.operations_per_call(three) == 3


def test_an_optional_row_that_fails_to_run_is_skipped(monkeypatch):
    def broken(setup):
        def step():
            raise TypeError("flp_step() got an unexpected keyword argument 'x'")
        return step
    monkeypatch.setitem(bench.CASES, "flp-step", replace(bench.CASES["flp-step"], make=broken))
    result = bench.run_bench(["flp-step"], **TINY)
    assert result["rows"] == [] and result["skipped"][0]["rule"] == "flp-step"
    assert "unexpected keyword argument" in result["skipped"][0]["reason"]
