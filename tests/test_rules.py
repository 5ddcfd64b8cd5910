"""Every rule against what it claims to compute, in float64 (autograd for backprop, closed forms otherwise)."""

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.objectives import SoftmaxCrossEntropy, SquaredError, get_objective
from credit_tutorial.propagation import backprop_deltas, propagate_down
from credit_tutorial.rules import (RULES, Backprop, DirectFeedbackAlignment, FeedbackAlignment, get_rule)

F64 = torch.float64


def network(sizes=(6, 5, 4, 3), hidden="tanh", output="identity", seed=0, ensemble=None, bias=True):
    generator = rng.make_generator(seed) if ensemble is None else [rng.make_generator(seed + k) for k in range(ensemble)]
    return MLP(sizes, hidden, output, generator=generator, dtype=F64, bias=bias)


def autograd_grads(net, objective, x, y):
    net.zero_grad()
    objective(net(x), y).sum().backward()  # the sum over ensemble copies keeps each copy's gradient its own
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    return grads


def rule_grads(rule, x, y):
    rule.network.zero_grad()
    credit = rule.step(x, y)
    return credit, [p.grad.clone() for p in rule.network.parameters()]


def top_layer(net, grads):
    """The output layer's (∂L/∂W_L, ∂L/∂b_L) out of a list ordered like ``net.parameters()``."""
    names = [name for name, _ in net.named_parameters()]
    last = net.n_layers - 1
    return [grads[names.index(f"weights.{last}")], grads[names.index(f"biases.{last}")]]


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("output", ["identity", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_backprop_equals_autograd(hidden, output, bias):
    net = network(hidden=hidden, output=output, bias=bias)
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    _, mine = rule_grads(Backprop(net), x, y)
    for got, expected in zip(mine, autograd_grads(net, SquaredError(), x, y)):
        torch.testing.assert_close(got, expected)


def test_backprop_equals_autograd_cross_entropy_and_regression_targets():
    net = network()
    x = torch.randn(9, 6, dtype=F64)
    labels = torch.randint(0, 3, (9,))
    _, mine = rule_grads(Backprop(net, "cross_entropy"), x, labels)
    for got, expected in zip(mine, autograd_grads(net, SoftmaxCrossEntropy(), x, labels)):
        torch.testing.assert_close(got, expected)
    targets = torch.randn(9, 3, dtype=F64)
    _, mine = rule_grads(Backprop(net), x, targets)
    for got, expected in zip(mine, autograd_grads(net, SquaredError(), x, targets)):
        torch.testing.assert_close(got, expected)


def test_backprop_on_an_ensemble_equals_autograd_per_copy():
    net = network(ensemble=3)
    x, y = torch.randn(3, 9, 6, dtype=F64), torch.randint(0, 3, (3, 9))
    _, mine = rule_grads(Backprop(net), x, y)
    for got, expected in zip(mine, autograd_grads(net, SquaredError(), x, y)):
        torch.testing.assert_close(got, expected)


def test_gradients_accumulate_like_autograd():
    net = network()
    x, y = torch.randn(4, 6, dtype=F64), torch.randint(0, 3, (4,))
    rule = Backprop(net)
    net.zero_grad()
    rule.step(x, y)
    rule.step(x, y)
    for got, expected in zip([p.grad for p in net.parameters()], autograd_grads(net, SquaredError(), x, y)):
        torch.testing.assert_close(got, 2 * expected)


def test_feedback_alignment_with_transported_weights_is_backprop():
    net = network()
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    for i, W in enumerate(list(net.weights)[1:]):
        fa.feedback[i] = W.detach().mT.clone()
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    _, mine = rule_grads(fa, x, y)
    for got, expected in zip(mine, autograd_grads(net, SquaredError(), x, y)):
        torch.testing.assert_close(got, expected)


def test_feedback_alignment_output_layer_is_exact_and_hidden_uses_B():
    net = network()
    fa, bp = FeedbackAlignment(net, generator=rng.make_generator(1)), Backprop(net)
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    credit_fa, grads_fa = rule_grads(fa, x, y)
    credit_bp, grads_bp = rule_grads(bp, x, y)
    torch.testing.assert_close(top_layer(net, grads_fa), top_layer(net, grads_bp))  # W_L and b_L exact
    assert not torch.allclose(grads_fa[0], grads_bp[0])
    derivs = net.derivatives(credit_fa.trace)
    expected = derivs[1] * (credit_fa.output_delta @ fa.feedback[1].mT)  # δ_2 = f'(a_2) ⊙ B_3 δ_3
    torch.testing.assert_close(credit_fa.deltas[1], expected)
    expected = derivs[0] * (expected @ fa.feedback[0].mT)
    torch.testing.assert_close(credit_fa.deltas[0], expected)


def test_feedback_alignment_matrices_have_transposed_shapes_and_weight_scale():
    net = MLP((100, 400, 300, 10), generator=rng.make_generator(0))
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    assert [tuple(B.shape) for B in fa.feedback] == [(400, 300), (300, 10)]
    # "same init scale as W": B_{l+1} ~ W_{l+1}ᵀ's distribution, std sqrt(2 / fan_in of W_{l+1})
    assert abs(fa.feedback[0].std().item() - (2 / 400) ** 0.5) < 0.003
    assert not any(B.requires_grad for B in fa.feedback)
    assert set(k for k in fa.state_dict() if k.startswith("feedback")) == {"feedback.0", "feedback.1"}


def test_direct_feedback_alignment_signals():
    net = network(sizes=(6, 5, 4, 3))
    dfa = DirectFeedbackAlignment(net, generator=rng.make_generator(2))
    assert [tuple(B.shape) for B in dfa.feedback] == [(5, 3), (4, 3)]
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    credit, grads = rule_grads(dfa, x, y)
    derivs = net.derivatives(credit.trace)
    e = credit.output_delta
    for l in range(2):
        torch.testing.assert_close(credit.deltas[l], derivs[l] * (e @ dfa.feedback[l].mT))  # f'(a_l) ⊙ B_l e
    torch.testing.assert_close(top_layer(net, grads), top_layer(net, autograd_grads(net, SquaredError(), x, y)))


def test_direct_feedback_with_one_hidden_layer_and_transport_is_backprop():
    net = network(sizes=(6, 5, 3))
    dfa = DirectFeedbackAlignment(net, generator=rng.make_generator(2))
    dfa.feedback[0] = net.weights[1].detach().mT.clone()
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    _, mine = rule_grads(dfa, x, y)
    for got, expected in zip(mine, autograd_grads(net, SquaredError(), x, y)):
        torch.testing.assert_close(got, expected)


def test_propagate_down_with_transposed_weights_is_backprop_deltas():
    net = network()
    x = torch.randn(9, 6, dtype=F64)
    trace = net.trace(x)
    derivs = net.derivatives(trace)
    top = torch.randn(9, 3, dtype=F64)
    torch.testing.assert_close(propagate_down(top, [W.mT for W in list(net.weights)[1:]], derivs),
                               backprop_deltas(list(net.weights), derivs, top))
    with pytest.raises(ValueError, match="feedback"):
        propagate_down(top, [], derivs)


@pytest.mark.parametrize("name", ["bp", "fa", "dfa"])
def test_rules_reduce_the_loss_on_a_small_task(name, small_task):
    torch.manual_seed(0)
    net = MLP((12, 16, 16, 4), "tanh", generator=rng.make_generator(0))
    rule = get_rule(name)(net, "mse", generator=rng.make_generator(1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = small_task.x_train, small_task.y_train
    before = rule.objective(net(x), y).item()
    for _ in range(200):
        optimizer.zero_grad()
        rule.step(x, y)
        optimizer.step()
    after = rule.objective(net(x), y).item()
    assert after < 0.6 * before, (before, after)


def test_rule_registry_rejects_typos():
    assert set(RULES) >= {"bp", "fa", "dfa"}
    with pytest.raises(ValueError, match="rule must be one of"):
        get_rule("backprop")
    with pytest.raises(ValueError, match="objective must be one of"):
        get_objective("hinge")
    with pytest.raises(TypeError, match="network must be"):
        Backprop(torch.nn.Linear(3, 2))


@pytest.mark.parametrize("bad_x, bad_y, message", [
    (torch.full((4, 6), float("nan")), torch.zeros(4, dtype=torch.long), "NaN"),
    (torch.zeros(4, 7), torch.zeros(4, dtype=torch.long), r"shape \(batch, 6\)"),
    (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long), "empty batch"),
    (torch.zeros(4, 6), torch.zeros(5, dtype=torch.long), "one entry"),
    (torch.zeros(4, 6), torch.full((4,), 7), r"labels must lie in \[0, 2\]"),
    (torch.zeros(4, 6), torch.full((4, 3), float("inf")), "target contains NaN"),
])
@pytest.mark.parametrize("objective", ["mse", "cross_entropy"])
def test_bad_batches_give_clear_errors(bad_x, bad_y, message, objective):
    if objective == "cross_entropy" and bad_y.is_floating_point():
        pytest.skip("regression targets: a case for the squared error only")
    rule = Backprop(MLP((6, 5, 3), generator=rng.make_generator(0)), objective)
    with pytest.raises(ValueError, match=message):
        rule.step(bad_x, bad_y)


def test_rules_move_with_to_and_round_trip_state_dict():
    net = network()
    fa = FeedbackAlignment(net, generator=rng.make_generator(1))
    fa32 = fa.to(torch.float32)
    assert all(B.dtype == torch.float32 for B in fa32.feedback)
    other = FeedbackAlignment(network(seed=9).to(torch.float32), generator=rng.make_generator(9))
    other.load_state_dict(fa32.state_dict())
    assert torch.equal(other.feedback[0], fa32.feedback[0])
    assert torch.equal(other.network.weights[0], fa32.network.weights[0])
