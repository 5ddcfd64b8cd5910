"""Node perturbation and learned feedback against what they claim to approximate (chapters 2-4).

- the estimate λ̂ = (L̃ − L) ξ / c² is unbiased for ∂L/∂h as c → 0 (autograd; tolerance from the measured variance);
- its bias is (c²/2) ∇ΔL + O(c⁴) (Stein's lemma): slope 2 in c, coefficient from autograd's third derivatives;
- its variance is (n + 1)‖g‖² per sample for n perturbed units; a second layer's noise adds n‖g₂‖² (cross-talk);
- the baseline changes the variance, not the mean;
- ridge = weighted least squares (numpy), SGD reaches it, and B → Wᵀ in a deep linear network (Theorem 2);
- bad inputs give errors that name the argument.
"""

import math

import numpy as np
import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.feedback_learning import RidgeFeedback, SGDFeedback
from credit_tutorial.metrics import relative_error
from credit_tutorial.node_perturbation import estimate, estimate_layerwise
from credit_tutorial.objectives import SquaredError
from credit_tutorial.rules import LearnedFeedback, NodePerturbationLearning

F64 = torch.float64
OBJECTIVE = SquaredError()


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def small_network(sizes=(6, 7, 5, 3), activation="tanh", seed=0):
    return MLP(sizes, activation, generator=rng.make_generator(seed), dtype=F64)


def exact_activity_gradients(net, x, y):
    """∂L/∂h_l for every hidden layer and sample, by autograd through the layers above (the noise slots)."""
    slots = [torch.zeros(x.shape[0], n, dtype=F64, requires_grad=True) for n in net.sizes[1:-1]]
    loss = OBJECTIVE.per_sample(net.trace(x, slots + [None]).output, y).sum()
    return torch.autograd.grad(loss, slots)


def repeat_samples(x, y, n):
    """Each of the B samples repeated n times: rows (B·n, ...) in sample-major order."""
    return x.repeat_interleave(n, dim=0), y.repeat_interleave(n, dim=0)


# ---------------------------------------------------------------- the estimator: mean, bias, variance
def test_estimate_is_unbiased_against_autograd_for_every_hidden_layer():
    net = small_network()
    x = torch.randn(3, 6, generator=rng.make_generator(1), dtype=F64)
    y = torch.tensor([0, 2, 1])
    n = 40_000
    xs, ys = repeat_samples(x, y, n)
    result = estimate(net, OBJECTIVE, net.trace(xs), ys, 1e-3, rng.make_generator(2))
    exact = exact_activity_gradients(net, x, y)
    z_scores = []
    for lam, g in zip(result.lambdas[:2], exact):
        lam = lam.view(3, n, -1)
        mean, standard_error = lam.mean(dim=1), lam.std(dim=1) / math.sqrt(n)
        z_scores.append(((mean - g) / standard_error).flatten())
    z = torch.cat(z_scores)
    # the bias at c = 1e-3 is ~1e-6 of the gradient, far below the standard error: z should look standard normal
    assert z.abs().max() < 5, f"an entry of λ̂ is {z.abs().max():.1f} standard errors from autograd's ∂L/∂h"
    assert 0.5 < z.square().mean() < 1.6, f"mean z² = {z.square().mean():.2f}: the spread does not match the variance"
    assert result.lambdas[2] is None and result.noise[2] is None  # the output layer is not perturbed


def test_noisy_pass_starts_above_the_input_and_equals_a_full_noisy_forward_pass():
    net = small_network()
    x = torch.randn(5, 6, generator=rng.make_generator(3), dtype=F64)
    clean = net.trace(x)
    result = estimate(net, OBJECTIVE, clean, torch.tensor([0, 1, 2, 0, 1]), 0.1, rng.make_generator(4))
    full = net.trace(x, result.noise)
    torch.testing.assert_close(result.noisy_trace.output, full.output, rtol=0, atol=1e-14)
    torch.testing.assert_close(result.noisy_trace.layers[0].activity, full.layers[0].activity, rtol=0, atol=0)
    # the first perturbed layer is not recomputed: its pre-activation is the clean pass's own tensor
    assert result.noisy_trace.layers[0].pre_activation is clean.layers[0].pre_activation


def _loss_of_noise(net, x, y, widths):
    """L as a function of the joint noise vector u = (u_1, ..., u_{L-1}) added to the hidden activities of x."""
    def loss(u):
        parts = list(torch.split(u, widths))
        return OBJECTIVE.per_sample(net.trace(x, [p.unsqueeze(0) for p in parts] + [None]).output, y).sum()
    return loss


def test_bias_is_half_c_squared_times_the_gradient_of_the_laplacian():
    """Stein's lemma: E[λ̂] = E[∇L(h + ξ)] = ∇L + (c²/2) ∇ΔL + O(c⁴). Control variates remove the first two Taylor
    terms (known means g and 0) so the O(c²) bias is measurable with 4·10⁴ samples; the fitted slope is 2."""
    net = small_network((10, 20, 15, 5))
    x = torch.randn(1, 10, generator=rng.make_generator(5), dtype=F64)
    y = torch.tensor([2])
    widths = [20, 15]
    loss = _loss_of_noise(net, x, y, widths)
    u = torch.zeros(sum(widths), dtype=F64, requires_grad=True)
    g = torch.autograd.grad(loss(u), u)[0]
    H = torch.autograd.functional.hessian(loss, torch.zeros(sum(widths), dtype=F64))
    u = torch.zeros(sum(widths), dtype=F64, requires_grad=True)
    laplacian = torch.autograd.functional.hessian(loss, u, create_graph=True).diagonal().sum()
    grad_laplacian = torch.autograd.grad(laplacian, u)[0]

    n = 40_000
    trace = net.trace(x.expand(n, 10))
    cs = [0.01, 0.02, 0.04, 0.08]
    biases = []
    for c in cs:
        result = estimate(net, OBJECTIVE, trace, y.expand(n), c, rng.make_generator(6))
        lam = torch.cat(result.lambdas[:2], dim=-1)
        z = torch.cat(result.noise[:2], dim=-1) / c
        control = (z @ g).unsqueeze(-1) * z + c / 2 * ((z @ H) * z).sum(-1, keepdim=True) * z  # mean exactly g
        residual = lam - control
        bias, standard_error = residual.mean(0), residual.std(0) / math.sqrt(n)
        predicted = c ** 2 / 2 * grad_laplacian
        assert (bias - predicted).norm() < 0.1 * predicted.norm() + 5 * standard_error.norm(), \
            f"c = {c}: measured bias {bias.norm():.3g}, predicted (c²/2)‖∇ΔL‖ = {predicted.norm():.3g}"
        biases.append(bias.norm().item())
    slope = np.polyfit(np.log(cs), np.log(biases), 1)[0]
    assert 1.85 < slope < 2.15, f"bias ∝ c^{slope:.2f}, expected c²"


def test_variance_grows_with_the_number_of_perturbed_units():
    """First order: λ̂ ≈ (g·z) z with z ~ N(0, I_n), so E‖λ̂ − g‖² = (n + 1)‖g‖² for n perturbed units."""
    for width in (5, 50, 200):
        net = MLP((8, width, 4), "tanh", generator=rng.make_generator(7), dtype=F64)
        x = torch.randn(1, 8, generator=rng.make_generator(8), dtype=F64)
        y = torch.tensor([1])
        n = 20_000
        result = estimate(net, OBJECTIVE, net.trace(x.expand(n, 8)), y.expand(n), 1e-4, rng.make_generator(9))
        (g,) = exact_activity_gradients(net, x, y)
        measured = (result.lambdas[0] - g).square().sum(-1).mean() / g.square().sum()
        assert measured == pytest.approx(width + 1, rel=0.1), f"width {width}: E‖λ̂ − g‖²/‖g‖² = {measured:.1f}"


def test_layerwise_estimate_is_unbiased_and_has_no_cross_talk():
    """Perturbing all hidden layers together adds n₁‖g₂‖² to the variance of λ̂₁; one layer at a time does not."""
    net = small_network((6, 12, 9, 3))
    x = torch.randn(1, 6, generator=rng.make_generator(10), dtype=F64)
    y = torch.tensor([1])
    n = 40_000
    trace = net.trace(x.expand(n, 6))
    g1, g2 = (g[0] for g in exact_activity_gradients(net, x, y))
    layerwise = estimate_layerwise(net, OBJECTIVE, trace, y.expand(n), 1e-4, rng.make_generator(11))
    together = estimate(net, OBJECTIVE, trace, y.expand(n), 1e-4, rng.make_generator(11)).lambdas
    for lam, g in zip(layerwise[:2], (g1, g2)):
        standard_error = lam.std(0) / math.sqrt(n)
        assert torch.all((lam.mean(0) - g).abs() < 5 * standard_error)
    spread = {name: (lam[0] - g1).square().sum(-1).mean().item() for name, lam in (("layerwise", layerwise),
                                                                                  ("together", together))}
    n1 = 12
    assert spread["layerwise"] == pytest.approx((n1 + 1) * g1.square().sum().item(), rel=0.1)
    assert spread["together"] == pytest.approx(((n1 + 1) * g1.square().sum() + n1 * g2.square().sum()).item(),
                                               rel=0.1)
    assert layerwise[2] is None


def test_baseline_lowers_the_variance_without_changing_the_mean():
    """Same noise both ways (same generator seed): the two estimates differ by exactly L ξ / c², whose mean is 0.
    (First hidden layer perturbed alone, so the variance has no cross-talk term.)"""
    net = small_network()
    x = torch.randn(1, 6, generator=rng.make_generator(12), dtype=F64)
    y = torch.tensor([0])
    n, c = 100_000, 1e-2
    trace = net.trace(x.expand(n, 6))
    with_baseline = estimate(net, OBJECTIVE, trace, y.expand(n), c, rng.make_generator(13), layers=[0])
    without = estimate(net, OBJECTIVE, trace, y.expand(n), c, rng.make_generator(13), layers=[0], baseline=False)
    (g, _) = exact_activity_gradients(net, x, y)
    clean_loss = with_baseline.clean_loss[0].item()
    lam, raw = with_baseline.lambdas[0], without.lambdas[0]
    torch.testing.assert_close(raw - lam, clean_loss * with_baseline.noise[0] / c ** 2)
    for estimate_ in (lam, raw):  # both unbiased, each within its own standard error
        assert torch.all((estimate_.mean(0) - g[0]).abs() < 5 * estimate_.std(0) / math.sqrt(n))
    # per-unit variance: ‖g‖² + g_i² with the baseline, plus L²/c² without it
    expected_with = g[0].square().sum() + g[0].square()
    torch.testing.assert_close(lam.var(0), expected_with, rtol=0.1, atol=0)
    torch.testing.assert_close(raw.var(0), expected_with + clean_loss ** 2 / c ** 2, rtol=0.1, atol=0)
    assert raw.var(0).min() > 100 * lam.var(0).max()


def test_a_noise_sweep_on_one_network_equals_separate_estimates():
    net = small_network()
    x = torch.randn(4, 6, generator=rng.make_generator(14), dtype=F64)
    y = torch.tensor([0, 1, 2, 1])
    trace = net.trace(x)
    cs = [1e-3, 1e-2, 1e-1]
    sweep = estimate(net, OBJECTIVE, trace, y, cs, rng.make_generator(15))  # one draw z, scaled by each c
    assert sweep.lambdas[0].shape == (3, 4, 7)
    for k, c in enumerate(cs):
        single = estimate(net, OBJECTIVE, trace, y, c, rng.make_generator(15))
        torch.testing.assert_close(sweep.lambdas[0][k], single.lambdas[0])
    generators = [rng.make_generator(s) for s in (20, 21, 22)]  # one generator per noise level
    separate = estimate(net, OBJECTIVE, trace, y, cs, generators)
    torch.testing.assert_close(separate.lambdas[1][2], estimate(net, OBJECTIVE, trace, y, 1e-1,
                                                                rng.make_generator(22)).lambdas[1])


def test_ensemble_estimate_equals_single_networks():
    nets = [small_network(seed=s) for s in (0, 1)]
    ensemble = MLP((6, 7, 5, 3), "tanh", generator=[rng.make_generator(0), rng.make_generator(1)], dtype=F64)
    x = torch.randn(5, 6, generator=rng.make_generator(16), dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1])
    cs = [1e-2, 5e-2]
    result = estimate(ensemble, OBJECTIVE, ensemble.trace(x), y, cs, [rng.make_generator(30), rng.make_generator(31)])
    for k, net in enumerate(nets):
        single = estimate(net, OBJECTIVE, net.trace(x), y, cs[k], rng.make_generator(30 + k))
        for got, expected in zip(result.lambdas[:2], single.lambdas[:2]):
            torch.testing.assert_close(got[k], expected)


def test_learned_feedback_credit_matches_its_definition():
    """The rule's clean pass, output error, loss and hidden errors are the base class's, with B in place of Wᵀ;
    its λ̂ is `estimate` on the same trace with the rule's generator; labels and one-hot targets give the same."""
    net = small_network()
    rule = LearnedFeedback(net, c=1e-2, generator=rng.make_generator(60))
    rule.learners[0].B.copy_(torch.randn(7, 5, generator=rng.make_generator(61), dtype=F64))
    rule.learners[1].B.copy_(torch.randn(5, 3, generator=rng.make_generator(62), dtype=F64))
    x = torch.randn(9, 6, generator=rng.make_generator(63), dtype=F64)
    labels = torch.randint(0, 3, (9,), generator=rng.make_generator(64))
    credit = rule.compute_credit(x, labels)
    trace = net.trace(x)
    derivatives = net.derivatives(trace)
    output_delta = derivatives[-1] * OBJECTIVE.output_gradient(trace.output, labels)
    torch.testing.assert_close(credit.output_delta, output_delta)
    torch.testing.assert_close(credit.loss, OBJECTIVE(trace.output, labels).detach())
    delta_2 = derivatives[1] * (output_delta @ rule.learners[1].B.mT)
    torch.testing.assert_close(credit.deltas[1], delta_2)
    torch.testing.assert_close(credit.deltas[0], derivatives[0] * (delta_2 @ rule.learners[0].B.mT))
    expected = estimate(net, OBJECTIVE, trace, labels, 1e-2, rng.make_generator(60)).lambdas
    for got, want in zip(credit.extras["lambda_hat"][:2], expected[:2]):
        torch.testing.assert_close(got, want)
    one_hot = torch.nn.functional.one_hot(labels, 3).to(F64)
    rule.generator = rng.make_generator(60)
    again = rule.compute_credit(x, one_hot)
    torch.testing.assert_close(again.extras["lambda_hat"][0], credit.extras["lambda_hat"][0])
    torch.testing.assert_close(again.loss, credit.loss)


# ---------------------------------------------------------------- learning B
def test_ridge_with_forgetting_equals_weighted_least_squares():
    """With ρ, batch t of T is weighted ρ^(T−t): B minimises Σ_t ρ^(T−t) Σ_b ‖λ̂_b − Bδ_b‖² + γ‖B‖²."""
    g = rng.make_generator(40)
    batches = [(torch.randn(16, 6, generator=g, dtype=F64), torch.randn(16, 4, generator=g, dtype=F64))
               for _ in range(7)]
    gamma, rho = 0.3, 0.8
    ridge = RidgeFeedback(6, 4, gamma=gamma, rho=rho, dtype=F64)
    for lambdas, deltas in batches:
        ridge.update(lambdas, deltas)
    T = len(batches)
    weights = np.concatenate([np.full(16, math.sqrt(rho ** (T - 1 - t))) for t in range(T)])
    D = np.concatenate([d.numpy() for _, d in batches]) * weights[:, None]
    L = np.concatenate([lam.numpy() for lam, _ in batches]) * weights[:, None]
    A = np.vstack([D, math.sqrt(gamma) * np.eye(4)])
    rhs = np.vstack([L, np.zeros((4, 6))])
    expected = np.linalg.lstsq(A, rhs, rcond=None)[0].T
    np.testing.assert_allclose(ridge.B.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ridge_ensemble_equals_separate_ridges_and_sums_stay_float64():
    g = rng.make_generator(41)
    lambdas, deltas = torch.randn(3, 20, 5, generator=g), torch.randn(3, 20, 2, generator=g)
    ensemble = RidgeFeedback(5, 2, lead=(3,))
    ensemble.update(lambdas, deltas)
    for k in range(3):
        single = RidgeFeedback(5, 2)
        single.update(lambdas[k], deltas[k])
        torch.testing.assert_close(ensemble.B[k], single.B)
    assert ensemble.B.dtype == torch.float32 and ensemble.D.dtype == F64  # float32 B, float64 running sums
    ensemble.to(torch.float32)
    assert ensemble.D.dtype == F64 and ensemble.S.dtype == F64


def test_float32_running_sums_do_not_drift_over_many_batches():
    """10⁴ batches whose sum is known exactly: the float64 sums keep B exact where float32 sums would drift."""
    B_true = torch.tensor([[1.0, -2.0], [0.5, 0.25], [3.0, 1.0]])
    deltas = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]]) * 0.1
    ridge = RidgeFeedback(3, 2, gamma=0.0, solve_every=10_000)
    stacked_d, stacked_l = deltas.repeat(4, 1), (deltas @ B_true.mT).repeat(4, 1)
    for _ in range(10_000):
        ridge.update(stacked_l, stacked_d)
    torch.testing.assert_close(ridge.B, B_true, rtol=1e-6, atol=1e-6)


def test_sgd_reaches_the_ridge_solution_on_the_same_data():
    """Node-perturbation pairs (λ̂, δ) from a real network: full-batch gradient descent with SGDFeedback converges to
    the least-squares B; minibatch SGD with a decaying rate η_t = η₀/(1 + t/τ) (Robbins-Monro) closes in on it;
    per-copy rates of an ensemble equal single runs."""
    net = small_network((6, 8, 4))
    g = rng.make_generator(42)
    x = torch.randn(512, 6, generator=g, dtype=F64)
    y = torch.randint(0, 4, (512,), generator=g)
    trace = net.trace(x)
    lambdas = estimate(net, OBJECTIVE, trace, y, 1e-2, rng.make_generator(43)).lambdas[0]
    deltas = net.derivatives(trace)[-1] * OBJECTIVE.output_gradient(trace.output, y)
    ridge = RidgeFeedback(8, 4, gamma=0.0, dtype=F64)
    ridge.update(lambdas, deltas)
    step = 1.0 / torch.linalg.eigvalsh(deltas.mT @ deltas).max().item()  # stable full-batch rate
    full_batch = SGDFeedback(8, 4, lr=step, dtype=F64)
    for _ in range(3000):
        full_batch.update(lambdas, deltas)
    torch.testing.assert_close(full_batch.B, ridge.B, rtol=1e-8, atol=1e-8)

    def minibatch_sgd(epochs, eta0=0.01, tau=20):
        sgd, t = SGDFeedback(8, 4, lr=eta0, dtype=F64), 0
        for _ in range(epochs):
            for start in range(0, 512, 32):
                sgd.lr = eta0 / (1 + t / tau)
                sgd.update(lambdas[start:start + 32], deltas[start:start + 32])
                t += 1
        return ((sgd.B - ridge.B).norm() / ridge.B.norm()).item()
    short, long = minibatch_sgd(50), minibatch_sgd(200)
    assert long < 0.01 and long < short / 2, f"minibatch SGD ends {short:.4f} (50 epochs), {long:.4f} (200) from ridge"

    rates = [2e-3, 5e-4]
    ensemble = SGDFeedback(8, 4, lr=rates, lead=(2,), dtype=F64)
    singles = [SGDFeedback(8, 4, lr=r, dtype=F64) for r in rates]
    for start in range(0, 512, 32):
        lam, d = lambdas[start:start + 32], deltas[start:start + 32]
        ensemble.update(lam.expand(2, -1, -1), d.expand(2, -1, -1))
        for single in singles:
            single.update(lam, d)
    for k, single in enumerate(singles):
        torch.testing.assert_close(ensemble.B[k], single.B)
    assert "_rates" not in ensemble.state_dict()  # configuration, not state


def orthonormal_weights_(network):
    """Replace every W by a (semi-)orthogonal matrix: all singular values 1, so every δ_l is isotropic (A3 holds with
    a well-conditioned margin)."""
    with torch.no_grad():
        for W in network.weights:
            tall = W.shape[-2] >= W.shape[-1]
            q, _ = torch.linalg.qr(W if tall else W.mT)
            W.copy_(q if tall else q.mT)


def test_feedback_converges_to_the_transpose_in_a_deep_linear_network():
    """Theorem 2: W fixed, identity nonlinearities, hidden widths no larger than the layers above them up to the output
    (assumption A3): every B_{l+1} of the learned-feedback rule converges to W_{l+1}ᵀ, the error falling as N^(−1/2)."""
    sizes = (10, 16, 6, 8, 10)
    net = MLP(sizes, "identity", generator=rng.make_generator(50), dtype=F64)
    orthonormal_weights_(net)
    rule = LearnedFeedback(net, c=1e-2, generator=rng.make_generator(51), warmup_steps=10 ** 9)
    g = rng.make_generator(53)
    checkpoints, errors = (8, 32, 128), []
    for step in range(1, checkpoints[-1] + 1):
        x = torch.randn(1024, 10, generator=g, dtype=F64)
        y = torch.randn(1024, 10, generator=g, dtype=F64)
        rule.step(x, y)
        if step in checkpoints:
            errors.append([relative_error(W.detach(), B).item() for W, B in zip(net.weights[1:],
                                                                                 rule.feedback_matrices())])
    assert net.weights[0].grad is None  # W stayed fixed
    errors = np.array(errors)  # (checkpoint, layer)
    assert errors[-1].max() < 0.1, f"relative errors after 1.3·10⁵ samples: {errors[-1]}"
    samples = 1024 * np.array(checkpoints)
    for layer in range(3):
        slope = np.polyfit(np.log(samples), np.log(errors[:, layer]), 1)[0]
        assert -0.65 < slope < -0.35, f"B_{layer + 2}: error ∝ N^{slope:.2f}, expected N^(−1/2)"


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("c", [0.0, -1e-3, float("inf"), [1e-2, -1.0]])
def test_bad_noise_levels_name_c(c):
    net = small_network()
    x, y = torch.randn(2, 6, dtype=F64), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="noise standard deviation"):
        estimate(net, OBJECTIVE, net.trace(x), y, c, rng.make_generator(0))
    with pytest.raises(ValueError, match="noise standard deviation"):
        NodePerturbationLearning(net, c=c, generator=rng.make_generator(0))


@pytest.mark.parametrize("options, message", [
    (dict(gamma=-1.0), "gamma"), (dict(gamma=float("nan")), "gamma"), (dict(rho=0.0), "rho"),
    (dict(rho=1.01), "rho"), (dict(solve_every=0), "solve_every"), (dict(feedback="sgd"), "feedback_lr"),
    (dict(feedback="sgd", feedback_lr=-1e-3), "feedback_lr"), (dict(feedback="exact"), "feedback"),
    (dict(perturb="one"), "perturb"), (dict(warmup_steps=-1), "warmup_steps"),
])
def test_bad_rule_options_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        LearnedFeedback(small_network(), generator=rng.make_generator(0), **options)


def test_per_copy_options_must_match_the_ensemble():
    ensemble = MLP((6, 7, 5, 3), "tanh", generator=[rng.make_generator(0), rng.make_generator(1)], dtype=F64)
    generators = [rng.make_generator(2), rng.make_generator(3)]
    with pytest.raises(ValueError, match="c lists 3 noise levels .* ensemble of 2"):
        LearnedFeedback(ensemble, c=[1e-3, 1e-2, 1e-1], generator=generators)
    with pytest.raises(ValueError, match="c lists 2 noise levels .* single network"):
        LearnedFeedback(small_network(), c=[1e-3, 1e-2], generator=rng.make_generator(0))
    with pytest.raises(ValueError, match="feedback_lr lists 3 learning rates"):
        LearnedFeedback(ensemble, feedback="sgd", feedback_lr=[1e-3, 1e-2, 1e-1], generator=generators)
    x, y = torch.randn(2, 6, dtype=F64), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="generator lists 3 generators"):
        estimate(ensemble, OBJECTIVE, ensemble.trace(x), y, 1e-2, generators + [rng.make_generator(4)])
    single = small_network()
    with pytest.raises(ValueError, match="c lists 2 noise levels but generator lists 3"):
        estimate(single, OBJECTIVE, single.trace(x), y, [1e-3, 1e-2], generators + [rng.make_generator(4)])


def test_mismatched_shapes_are_reported():
    ridge, sgd = RidgeFeedback(5, 3), SGDFeedback(5, 3, lr=1e-3)
    for learner in (ridge, sgd):
        with pytest.raises(ValueError, match="same samples"):
            learner.update(torch.zeros(8, 5), torch.zeros(7, 3))
        with pytest.raises(ValueError, match=r"\(n_l, n_\(l\+1\)\)"):
            learner.update(torch.zeros(8, 4), torch.zeros(8, 3))
        with pytest.raises(ValueError, match="columns"):
            learner.update(torch.zeros(8, 5), torch.zeros(8, 2))
    with pytest.raises(ValueError, match="layers"):
        net = small_network()
        estimate(net, OBJECTIVE, net.trace(torch.zeros(1, 6, dtype=F64)), torch.tensor([0]), 1e-2,
                 rng.make_generator(0), layers=[5])
