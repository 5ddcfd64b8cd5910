"""The comparison of chapter 12 on a tiny configuration: the update measurements against hand computations and
exact cases, the runner (ensembles, skipped rules, learning-rate sweeps), the table, the figure, the costs."""

import math
from dataclasses import replace

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from credit_tutorial import MLP, bench, rng
from credit_tutorial import comparison as cmp
from credit_tutorial.experiment import run
from credit_tutorial.rules import QAGREL, Backprop, FeedbackAlignment, LearnedFeedback, get_rule

from conftest import make_classification


@pytest.fixture(scope="module")
def tiny_settings():
    return cmp.standard_settings(1, mnist_train=64, mnist_test=64, teacher_sizes=(5, 8, 6, 2), teacher_train=64,
                                 teacher_test=64, eval_every_epochs=1)


@pytest.fixture(scope="module")
def tiny(tiny_settings):
    return cmp.run_comparison(tiny_settings, seeds=[0, 1], probe=64)


# ------------------------------------------------------------------------------------------------ measurements
def test_sign_agreement_leaves_out_zero_gradients_and_counts_zero_updates_as_misses():
    gradient = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, -1.0]])
    update = torch.tensor([[3.0, 1.0, 7.0], [0.0, 5.0, -0.1]])
    # informative entries: 1, -2, 0.5, -1 → agree, disagree, miss (update 0), agree
    assert cmp.sign_agreement(update, gradient).item() == pytest.approx(0.5)
    assert math.isnan(cmp.sign_agreement(update, torch.zeros(2, 3)).item())
    stacked = cmp.sign_agreement(torch.stack([update, gradient]), torch.stack([gradient, gradient]))
    assert stacked.tolist() == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="equal shapes"):
        cmp.sign_agreement(update, gradient[:, :2])


def _net(seed=0, sizes=(12, 10, 8, 4), activation="tanh", generator=None):
    return MLP(sizes, activation, generator=generator or rng.make_generator(seed), dtype=torch.float64)


def test_backprop_agrees_exactly_and_transported_feedback_alignment_too(small_task):
    x, y = small_task.x_train[:64].double(), small_task.y_train[:64]
    report = cmp.update_agreement(Backprop(_net()), x, y, batch_size=16)
    assert report["update_angle"] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert report["update_sign_congruence"] == [1.0, 1.0]
    assert report["update_size"] == pytest.approx([1.0, 1.0], rel=1e-12)
    net = _net()
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    for i, W in enumerate(list(net.weights)[1:]):
        fa.feedback[i] = W.detach().mT.clone()
    assert cmp.update_agreement(fa, x, y)["update_angle"] == pytest.approx([0.0, 0.0], abs=1e-5)


def test_agreement_matches_a_hand_computation_for_feedback_alignment(small_task):
    x, y = small_task.x_train[:32].double(), small_task.y_train[:32]
    net = _net(2)
    fa = FeedbackAlignment(net, generator=rng.make_generator(3))
    W = [w.detach() for w in net.weights]
    B = list(fa.feedback)
    trace = net.trace(x)
    h = [trace.input] + [r.activity for r in trace.layers]
    fprime = [1 - r.activity ** 2 for r in trace.layers[:-1]]              # tanh' = 1 − h²
    target = torch.nn.functional.one_hot(y, 4).double()
    delta_out = h[-1] - target                                             # δ_L for ½‖ŷ − y‖², linear output
    rule_d2 = fprime[1] * (delta_out @ B[1].mT)                            # δ_2 = f' ⊙ B_3 δ_3
    rule_d1 = fprime[0] * (rule_d2 @ B[0].mT)
    true_d2 = fprime[1] * (delta_out @ W[2])                               # δ_2 = f' ⊙ W_3ᵀ δ_3
    true_d1 = fprime[0] * (true_d2 @ W[1])
    expected_angle, expected_sign, expected_size = [], [], []
    for rule_d, true_d, pre in ((rule_d1, true_d1, h[0]), (rule_d2, true_d2, h[1])):
        update, gradient = rule_d.T @ pre / 32, true_d.T @ pre / 32
        cos = (update * gradient).sum() / (update.norm() * gradient.norm())
        expected_angle.append(math.degrees(math.acos(cos.item())))
        mask = gradient != 0
        expected_sign.append(((update.sign() == gradient.sign()) & mask).sum().item() / mask.sum().item())
        expected_size.append((update.norm() / gradient.norm()).item())
    report = cmp.update_agreement(fa, x, y)
    assert report["update_angle"] == pytest.approx(expected_angle, abs=1e-6)
    assert report["update_sign_congruence"] == pytest.approx(expected_sign, abs=1e-12)
    assert report["update_size"] == pytest.approx(expected_size, rel=1e-10)


def test_probe_batches_are_averaged(small_task):
    x, y = small_task.x_train[:64].double(), small_task.y_train[:64]
    fa = FeedbackAlignment(_net(4), generator=rng.make_generator(5))
    halves = [cmp.update_agreement(fa, x[i:i + 32], y[i:i + 32]) for i in (0, 32)]
    both = cmp.update_agreement(fa, x, y, batch_size=32)
    for key in both:
        assert both[key] == pytest.approx([(a + b) / 2 for a, b in zip(halves[0][key], halves[1][key])])
    with pytest.raises(ValueError, match="batch_size"):
        cmp.update_agreement(fa, x, y, batch_size=0)
    with pytest.raises(ValueError, match="probe batch"):
        cmp.update_agreement(fa, x[:8], y[:8], batch_size=16)


def test_measuring_a_noisy_rule_does_not_change_its_random_stream(small_task):
    x, y = small_task.x_train[:32].double(), small_task.y_train[:32]
    rule = LearnedFeedback(_net(6), generator=rng.make_generator(7), c=1e-3)
    before = rule.generator.get_state()
    cmp.update_agreement(rule, x, y, batch_size=16)
    assert torch.equal(rule.generator.get_state(), before)


def test_ensemble_values_equal_single_network_values(small_task):
    x, y = small_task.x_train[:32].double(), small_task.y_train[:32]
    seeds = [0, 1, 2]
    ensemble = FeedbackAlignment(_net(generator=[rng.make_generator(s) for s in seeds]),
                                 generator=[rng.make_generator(10 + s) for s in seeds])
    report = cmp.update_agreement(ensemble, x, y)
    for k, s in enumerate(seeds):
        single = cmp.update_agreement(FeedbackAlignment(_net(s), generator=rng.make_generator(10 + s)), x, y)
        for key in report:
            assert [layer[k] for layer in report[key]] == pytest.approx(single[key], abs=1e-6)


def test_symmetric_qagrel_is_the_exact_gradient_of_its_own_objective(small_task):
    x, y = small_task.x_train[:32].double(), small_task.y_train[:32]
    net = _net(8, activation="relu")
    report = cmp.update_agreement(QAGREL(net, generator=rng.make_generator(9), epsilon=0.3), x, y)
    assert report["update_angle"] == pytest.approx([0.0, 0.0], abs=1e-5)


def test_random_feedback_is_far_from_the_gradient_before_learning():
    # wide hidden layers: a random B sends an error nearly orthogonal to backprop's (cosine of order 1/sqrt(n))
    data = make_classification(n_train=256, n_features=40, n_classes=10)
    net = MLP((40, 200, 200, 10), "tanh", generator=rng.make_generator(0), dtype=torch.float64)
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    angles = cmp.update_agreement(fa, data.x_train.double(), data.y_train, 64)["update_angle"]
    assert all(60 < a < 120 for a in angles)


# ------------------------------------------------------------------------------------------------ the runner
def test_every_applicable_rule_runs_and_the_others_are_skipped_with_a_reason(tiny):
    assert set(tiny.histories) == {"mnist-sigmoid", "mnist-relu", "teacher"}
    assert "qagrel" in tiny.histories["mnist-relu"]
    assert "ReLU" in tiny.skipped["mnist-sigmoid"]["qagrel"]
    assert "classification" in tiny.skipped["teacher"]["qagrel"]
    others = set(cmp.ENTRIES) - {"qagrel"}
    assert all(others <= set(per_entry) for per_entry in tiny.histories.values())
    history = tiny.histories["teacher"]["fa"]
    assert len(history["update_angle"][-1]) == 2 and len(history["update_angle"][-1][0]) == 2  # layers × seeds
    assert tiny.epochs("teacher") == [0.0, 1.0]


def test_a_comparison_copy_is_the_run_of_its_seed(tiny, tiny_settings):
    setting, entry = tiny_settings["teacher"], cmp.ENTRIES["fa"]
    single = run(cmp.entry_config(entry, setting, seed=1), data=setting.data)
    got = [point[1] for point in tiny.histories["teacher"]["fa"]["test_loss"]]
    assert got == pytest.approx(single.history["test_loss"], rel=1e-5)


def _tensor(values):
    """Nested lists of floats, None for an undefined value (an angle of a zero update), as a float64 tensor."""
    if isinstance(values, list):
        return torch.stack([_tensor(v) for v in values])
    return torch.tensor(math.nan if values is None else values, dtype=torch.float64)


def test_a_learning_rate_sweep_reads_back_one_rate(tiny_settings):
    teacher = {"teacher": tiny_settings["teacher"]}
    entries = {k: cmp.ENTRIES[k] for k in ("bp", "np-ridge")}
    sweep = cmp.run_comparison(teacher, entries, seeds=[0, 1], lrs=[0.01, 0.1], probe=32)
    at = sweep.at_lr(0.1)
    assert at.entries["bp"].lr == 0.1 and at.lrs is None
    direct = cmp.run_comparison(teacher, {k: replace(e, lr=0.1) for k, e in entries.items()}, seeds=[0, 1],
                                probe=32)
    for name in entries:
        for key in ("test_loss", "update_angle", "update_sign_congruence"):
            a = _tensor(at.histories["teacher"][name][key])
            b = _tensor(direct.histories["teacher"][name][key])
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3, equal_nan=True)
    with pytest.raises(ValueError, match="lr must be one of"):
        sweep.at_lr(0.05)
    with pytest.raises(ValueError, match="not a learning-rate sweep"):
        direct.at_lr(0.1)
    # every entry at its own rate: bp at 0.01, np-ridge at 0.1
    own = cmp.run_comparison(teacher, {"bp": replace(entries["bp"], lr=0.01), "np-ridge": entries["np-ridge"]},
                             seeds=[0, 1], lrs=[0.01, 0.1], probe=32).at_own_lrs()
    assert own.histories["teacher"]["bp"]["test_loss"] == sweep.at_lr(0.01).histories["teacher"]["bp"]["test_loss"]
    assert own.histories["teacher"]["np-ridge"]["test_loss"] == at.histories["teacher"]["np-ridge"]["test_loss"]


def test_combine_merges_comparisons_over_different_settings(tiny, tiny_settings):
    teacher = cmp.run_comparison({"teacher": tiny_settings["teacher"]}, seeds=[0, 1], probe=32)
    mnist = {k: v for k, v in tiny.settings.items() if k != "teacher"}
    part = cmp.Comparison(mnist, tiny.entries, tiny.seeds, {k: tiny.histories[k] for k in mnist},
                          {k: tiny.skipped[k] for k in mnist}, {k: tiny.seconds[k] for k in mnist})
    both = cmp.combine(part, teacher)
    assert list(both.settings) == ["mnist-sigmoid", "mnist-relu", "teacher"]
    assert both.histories["teacher"]["fa"]["test_loss"] == tiny.histories["teacher"]["fa"]["test_loss"]
    with pytest.raises(ValueError, match="different settings"):
        cmp.combine(teacher, teacher)


def test_bad_arguments_of_the_runner(tiny_settings):
    with pytest.raises(ValueError, match="seeds"):
        cmp.run_comparison(tiny_settings, seeds=[])
    with pytest.raises(ValueError, match="lrs"):
        cmp.run_comparison(tiny_settings, lrs=[0.1, -1.0])
    with pytest.raises(ValueError, match="probe"):
        cmp.run_comparison(tiny_settings, probe=0)
    with pytest.raises(ValueError, match="eval_every_epochs"):
        cmp.standard_settings(1, eval_every_epochs=0, mnist_train=64, mnist_test=64)


# ------------------------------------------------------------------------------------------------ summaries
def test_stat_leaves_out_diverged_and_undefined_values():
    s = cmp.stat([1.0, None, 3.0, float("nan")])
    assert (s.mean, s.missing, s.diverged) == (2.0, 2, 1) and s.sd == pytest.approx(math.sqrt(2))
    assert cmp.format_stat(s) == "2.0 ± 1.4 (1 diverged)"
    assert cmp.format_stat(cmp.stat([None, None])) == "diverged"
    assert cmp.format_stat(cmp.stat([float("nan")])) == "—"
    # an undefined angle (a rule that sends no error yet) is not a divergence
    assert cmp.format_stat(cmp.stat([None, None], diverged=[False, False])) == "—"
    assert cmp.format_stat(cmp.stat([10.0, 12.0]), digits=0) == "11 ± 1"


def test_margin_below_needs_the_gap_to_exceed_the_seed_spread():
    low, high = cmp.stat([1.0, 1.2, 0.8]), cmp.stat([3.0, 3.2, 2.8])   # sd 0.2 each, gap 2
    assert cmp.margin_below(low, high, sds=3) == pytest.approx(2 - 3 * math.hypot(0.2, 0.2))
    assert cmp.margin_below(low, high, sds=3, at_least=2.5) < 0
    assert cmp.margin_below(high, low) < 0
    assert cmp.margin_below(cmp.stat([1.0, None]), high) == -math.inf


def test_summary_reads_the_end_of_training_or_any_evaluated_epoch(tiny):
    end, start = cmp.summary(tiny), cmp.summary(tiny, epoch=0.0)
    bp_end = end["mnist-sigmoid"]["bp"]
    assert bp_end["angle"][0].mean == pytest.approx(0.0, abs=1e-3) and bp_end["sign"][1].mean == 1.0
    assert start["mnist-sigmoid"]["bp"]["error"].values == start["mnist-sigmoid"]["fa"]["error"].values  # same init
    teacher = end["teacher"]["bp"]["error"]                                   # % of variance unexplained
    assert 0 < teacher.mean < 150
    with pytest.raises(ValueError, match="epoch"):
        cmp.summary(tiny, epoch=0.5)


# ------------------------------------------------------------------------------------------------ requirements, costs
def test_requirements_come_from_the_rules():
    for key, entry in cmp.ENTRIES.items():
        needs = cmp.requirements(entry)
        assert list(needs) == list(cmp.REQUIREMENTS)
        declared = get_rule(entry.rule).requirements
        if declared:
            assert needs == {k: declared[k] for k in cmp.REQUIREMENTS}
    assert cmp.requirements(cmp.ENTRIES["bp"])["weight transport"]
    qagrel = cmp.requirements(cmp.ENTRIES["qagrel"])          # learned W′: no weight transport, reward only
    assert not qagrel["weight transport"] and qagrel["global reward only"]
    symmetric = replace(cmp.ENTRIES["qagrel"], options={"feedback": "symmetric"})
    assert cmp.requirements(symmetric)["weight transport"]
    assert cmp.FLP_REQUIREMENTS["meta-learned prior"] and not cmp.FLP_REQUIREMENTS["weight transport"]


@pytest.fixture(scope="module")
def tiny_bench():
    return bench.run_bench(["fa", "np-ridge-k", "reinforce"], batch_sizes=(8,), repeats=2, warmup=1, min_block=0.0,
                           threads=1, settings=bench.Settings(solve_every=5))


def test_costs_come_from_the_bench(tiny_bench):
    costs = cmp.bench_costs(tiny_bench, batch=8)
    assert set(costs) == {"bp", "fa", "np-ridge", "reinforce"}
    assert costs["bp"]["ratio"] == 1.0
    for c in costs.values():
        assert c["q1"] <= c["ratio"] <= c["q3"] and c["ratio"] > 0 and c["macs"] > 0
    assert cmp.bench_costs(tiny_bench, batch=32) == {}


# ------------------------------------------------------------------------------------------------ table, figure
def test_the_table_has_a_column_per_rule_and_the_rows_the_chapter_asks_for(tiny, tiny_bench):
    table = cmp.comparison_table(tiny, cmp.bench_costs(tiny_bench, batch=8))
    assert table.header[1:] == [e.label for e in cmp.ENTRIES.values()] + ["FLP"]
    assert all(len(row) == len(table.header) for row in table.rows)
    groups = set(table.groups)
    assert {"needs", "update angle to the gradient, °", "sign agreement with the gradient, %",
            "update size, ‖update‖ / ‖gradient‖"} <= groups
    assert any(g.startswith("final error") for g in groups) and any(g.startswith("cost") for g in groups)
    labels = [row[0] for row in table.rows]
    assert labels.count("weight transport") == 1 and "MNIST, ReLU, hidden layer 2" in labels
    q = table.header.index("Q-AGREL")
    sigmoid_error = table.rows[labels.index("MNIST, sigmoid (test error, %)")]
    assert sigmoid_error[q] == "n/a" and "±" in sigmoid_error[1]
    text, page = table.to_text(), table.to_html()
    assert "feedback alignment" in text and text.count("\n") > len(table.rows)
    assert page.startswith("<table") and "Q-AGREL" in page and "&lt;" not in table.header[0]
    assert any("ReLU" in note for note in table.notes)


def test_the_figure_has_four_panels_and_draws_any_evaluated_epoch(tiny, tiny_bench):
    import matplotlib.pyplot as plt

    for epoch in (None, 0.0):
        fig = cmp.plot_comparison(tiny, epoch, cmp.bench_costs(tiny_bench, batch=8))
        assert len(fig.axes) == 4
        plt.close(fig)
    fig = cmp.plot_comparison(tiny)   # without costs the last panel is empty
    assert not fig.axes[3].axison
    plt.close(fig)
