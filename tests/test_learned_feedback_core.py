"""Core checks of the node-perturbation machinery (the chapters' own tests live in test_node_perturbation.py)."""

import numpy as np
import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.experiment import TrainConfig, run
from credit_tutorial.feedback_learning import RidgeFeedback, SGDFeedback
from credit_tutorial.node_perturbation import estimate, noise_std
from credit_tutorial.objectives import SquaredError
from credit_tutorial.rules import LearnedFeedback, NodePerturbationLearning

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def test_ridge_equals_numpy_least_squares_with_penalty():
    g = rng.make_generator(0)
    deltas, lambdas = torch.randn(300, 4, generator=g, dtype=F64), torch.randn(300, 6, generator=g, dtype=F64)
    ridge = RidgeFeedback(6, 4, gamma=0.5, dtype=F64)
    for start in range(0, 300, 32):  # fed batch by batch
        ridge.update(lambdas[start:start + 32], deltas[start:start + 32])
    D, L = deltas.numpy(), lambdas.numpy()
    # min ‖L − D Bᵀ‖² + γ‖B‖²  ⇔  augmented least squares [D; √γ I] Bᵀ = [L; 0]
    A = np.vstack([D, np.sqrt(0.5) * np.eye(4)])
    rhs = np.vstack([L, np.zeros((4, 6))])
    expected = np.linalg.lstsq(A, rhs, rcond=None)[0].T
    np.testing.assert_allclose(ridge.B.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ridge_with_zero_penalty_and_solve_every():
    g = rng.make_generator(1)
    deltas, lambdas = torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 5, generator=g, dtype=F64)
    ridge = RidgeFeedback(5, 3, gamma=0.0, solve_every=2, dtype=F64)
    ridge.update(lambdas[:32], deltas[:32])
    assert torch.all(ridge.B == 0)  # not solved yet
    ridge.update(lambdas[32:], deltas[32:])
    expected = np.linalg.lstsq(deltas.numpy(), lambdas.numpy(), rcond=None)[0].T
    np.testing.assert_allclose(ridge.B.numpy(), expected, rtol=1e-9)


def test_sgd_reaches_the_least_squares_solution():
    g = rng.make_generator(2)
    B_true = torch.randn(5, 3, generator=g, dtype=F64)
    sgd = SGDFeedback(5, 3, lr=0.01, dtype=F64)
    for _ in range(3000):
        deltas = torch.randn(16, 3, generator=g, dtype=F64)
        sgd.update(deltas @ B_true.mT, deltas)
    torch.testing.assert_close(sgd.B, B_true)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gamma=-0.1), "gamma"), (dict(rho=0.0), "rho"), (dict(rho=1.5), "rho"), (dict(solve_every=0), "solve_every"),
])
def test_ridge_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RidgeFeedback(3, 2, **kwargs)


def test_feedback_learners_check_shapes():
    with pytest.raises(ValueError, match="shape"):
        RidgeFeedback(3, 2).update(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="same samples"):
        SGDFeedback(3, 2, lr=0.1).update(torch.zeros(4, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="feedback_lr"):
        SGDFeedback(3, 2, lr=0.0)


@pytest.mark.parametrize("c", [0.0, -1e-3, float("nan"), [1e-3, 0.0], "small"])
def test_bad_noise_levels(c):
    with pytest.raises(ValueError, match="noise standard deviation"):
        noise_std(c)
    with pytest.raises(ValueError, match="noise standard deviation"):
        LearnedFeedback(MLP((4, 3, 2), generator=rng.make_generator(0)), c=c, generator=rng.make_generator(1))


def test_estimate_with_baseline_matches_the_gradient_on_average():
    net = MLP((6, 5, 4, 3), "tanh", generator=rng.make_generator(0), dtype=F64)
    x = torch.randn(1, 6, generator=rng.make_generator(3), dtype=F64)
    y = torch.tensor([1])
    n = 100_000
    trace = net.trace(x.expand(n, 6))
    result = estimate(net, SquaredError(), trace, y.expand(n), 1e-3, rng.make_generator(4))
    h = [r.activity.detach()[:1].clone().requires_grad_() for r in net.trace(x).layers]
    # exact ∂L/∂h_1 by autograd through the layers above
    h1 = h[0]
    out = net.trace_from(1, h1).output
    (exact,) = torch.autograd.grad(SquaredError()(out, y), h1)
    lam = result.lambdas[0]
    standard_error = lam.std(dim=0) / n ** 0.5
    assert torch.all((lam.mean(dim=0) - exact[0]).abs() < 5 * standard_error)
    assert result.lambdas[2] is None  # the output layer is not perturbed by default


def test_learned_feedback_state_moves_and_saves():
    net = MLP((6, 5, 4, 3), "tanh", generator=rng.make_generator(0))
    rule = LearnedFeedback(net, c=1e-2, generator=rng.make_generator(1), warmup_steps=2)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    w_before = net.weights[0].detach().clone()
    for _ in range(2):
        net.zero_grad()
        rule.step(x, y)
        assert net.weights[0].grad is None  # warm-up: W gets no gradient
    rule.step(x, y)
    assert net.weights[0].grad is not None and torch.equal(net.weights[0].detach(), w_before)
    keys = rule.state_dict().keys()
    assert {"learners.0.B", "learners.0.D", "learners.0.S", "c", "steps"} <= set(keys)
    rule64 = rule.to(F64)
    assert rule64.learners[0].B.dtype == F64 and rule64.c.dtype == F64


def test_learned_feedback_noise_sweep_as_an_ensemble_equals_single_runs(small_task):
    base = dict(sizes=(12, 10, 8, 4), hidden_activation="tanh", lr=0.05, epochs=2, batch_size=16, device="cpu",
                dtype="float64", rule="np")
    cs = [1e-3, 1e-2, 1e-1]
    ensemble = run(TrainConfig(**base, rule_options={"c": cs}), lrs=[0.05] * 3, data=small_task)
    for k, c in enumerate(cs):
        single = run(TrainConfig(**base, rule_options={"c": c}), data=small_task)
        got = [point[k] for point in ensemble.history["test_loss"]]
        assert got == pytest.approx(single.history["test_loss"], rel=1e-8)


def test_node_perturbation_learning_reduces_the_loss(small_task):
    net = MLP((12, 8, 4), "tanh", generator=rng.make_generator(0))
    rule = NodePerturbationLearning(net, c=1e-2, generator=rng.make_generator(1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = small_task.x_train, small_task.y_train
    before = rule.objective(net(x), y).item()
    for _ in range(400):
        optimizer.zero_grad()
        rule.step(x, y)
        optimizer.step()
    assert rule.objective(net(x), y).item() < 0.8 * before
