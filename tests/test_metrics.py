import math

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.metrics import (angle, compare_with_backprop, error_rate, feedback_report, matrix_angle,
                                     mean_angle, relative_error, sign_congruence, summarize)
from credit_tutorial.rules import Backprop, DirectFeedbackAlignment, FeedbackAlignment


def test_angle_known_cases():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, -1.0], [5.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(angle(a, b), torch.tensor([0.0, 180.0, 90.0, 45.0]), atol=1e-3, rtol=0)


def test_mean_angle_averages_over_the_batch_and_skips_zero_rows():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert math.isnan(angle(a, b)[2].item())
    torch.testing.assert_close(mean_angle(a, b), torch.tensor(45.0))


def test_angle_per_ensemble_copy_and_shape_errors():
    a = torch.randn(3, 5, 4, generator=rng.make_generator(0), dtype=torch.float64)
    out = mean_angle(a, a)
    assert out.shape == (3,) and torch.all(out < 1e-2)
    torch.testing.assert_close(mean_angle(a, -a), torch.full((3,), 180.0, dtype=torch.float64), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="equal shape"):
        angle(torch.zeros(2, 3), torch.zeros(3, 2))


def test_matrix_angle_relative_error_sign_congruence():
    W = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]])
    assert matrix_angle(W, 2 * W).item() < 1e-2
    assert relative_error(W, W.T).item() == 0
    assert relative_error(W, torch.zeros(3, 2)).item() == pytest.approx(1.0)
    assert relative_error(W, -W.T).item() == pytest.approx(2.0)
    assert sign_congruence(W, W.T).item() == 1.0
    assert sign_congruence(W, -W.T).item() == 0.0
    flipped = W.T.clone()
    flipped[0, 0] *= -1
    assert sign_congruence(W, flipped).item() == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="shape of Wᵀ"):
        relative_error(W, W)


def test_random_feedback_has_chance_sign_congruence():
    W, B = torch.randn(200, 300, generator=rng.make_generator(0)), torch.randn(300, 200, generator=rng.make_generator(1))
    assert abs(sign_congruence(W, B).item() - 0.5) < 0.01


def test_compare_with_backprop():
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randint(0, 3, (32,))
    net = MLP((6, 8, 5, 3), "tanh", generator=rng.make_generator(0), dtype=torch.float64)
    exact = compare_with_backprop(Backprop(net), x, y)
    assert all(a < 1e-5 for a in exact["delta_angle"] + exact["update_angle"])
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    report = compare_with_backprop(fa, x, y)
    assert len(report["delta_angle"]) == 2 and all(20 < a < 160 for a in report["delta_angle"])
    assert feedback_report(Backprop(net))["relative_error"] == [0.0, 0.0]
    fa_report = feedback_report(fa)
    assert all(e > 0.5 for e in fa_report["relative_error"])
    assert all(60 < a < 120 for a in fa_report["feedback_angle"])  # random feedback: near-orthogonal to Wᵀ
    assert feedback_report(Backprop(net))["feedback_angle"] == [0.0, 0.0]
    assert feedback_report(DirectFeedbackAlignment(net, generator=rng.make_generator(1))) == \
        {"relative_error": [], "sign_congruence": [], "feedback_angle": []}


def test_compare_with_backprop_leaves_the_rule_generator_untouched():
    net = MLP((6, 8, 3), generator=rng.make_generator(0))
    g = rng.make_generator(7)
    rule = FeedbackAlignment(net, generator=g)
    before = g.get_state().clone()
    compare_with_backprop(rule, torch.randn(4, 6), torch.randint(0, 3, (4,)))
    assert torch.equal(g.get_state(), before)


def test_error_rate_and_summarize():
    out = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert error_rate(out, torch.tensor([1, 1, 1])).item() == pytest.approx(1 / 3)
    assert summarize([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert summarize([4.0]) == (4.0, 0.0)
