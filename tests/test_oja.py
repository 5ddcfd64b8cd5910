"""Oja's rule against what it claims: the explicit per-synapse formula, and the top principal component."""

import math

import numpy as np
import pytest
import torch

from credit_tutorial import oja, rng

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def explicit_oja(W, x, y, P):
    """ΔW_ij = P_ij Σ_b (y_bi x_bj − y_bi² W_ij), one synapse and one sample at a time."""
    delta = torch.zeros_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            for b in range(x.shape[0]):
                delta[i, j] += P[i, j] * (y[b, i] * x[b, j] - y[b, i] ** 2 * W[i, j])
    return delta


def test_batched_oja_update_equals_the_per_synapse_formula():
    g = rng.make_generator(0)
    W, x, y = (torch.randn(s, generator=g, dtype=F64) for s in ((3, 4), (5, 4), (5, 3)))
    P = torch.rand(3, 4, generator=g, dtype=F64)
    torch.testing.assert_close(oja.oja_update(W, x, y, P), explicit_oja(W, x, y, P))
    # plasticity per neuron (n_post, 1) and a plain number broadcast the same way
    P_row = torch.rand(3, 1, generator=g, dtype=F64)
    torch.testing.assert_close(oja.oja_update(W, x, y, P_row), explicit_oja(W, x, y, P_row.expand(3, 4)))
    torch.testing.assert_close(oja.oja_update(W, x, y, 0.3), explicit_oja(W, x, y, torch.full((3, 4), 0.3, dtype=F64)))
    # mean reduction divides by the batch size; Hebb drops the decay term
    torch.testing.assert_close(oja.oja_update(W, x, y, P, reduction="mean"), explicit_oja(W, x, y, P) / 5)
    torch.testing.assert_close(oja.hebb_update(W, x, y, P), P * (y.T @ x))


def test_oja_update_ensemble_copy_equals_single():
    g = rng.make_generator(1)
    W, x, y = (torch.randn(s, generator=g, dtype=F64) for s in ((2, 3, 4), (2, 6, 4), (2, 6, 3)))
    P = torch.rand(2, 3, 4, generator=g, dtype=F64)
    batched = oja.oja_update(W, x, y, P)
    for k in range(2):
        torch.testing.assert_close(batched[k], explicit_oja(W[k], x[k], y[k], P[k]))


def test_oja_update_is_differentiable():
    g = rng.make_generator(2)
    inputs = [torch.randn(s, generator=g, dtype=F64, requires_grad=True) for s in ((2, 3), (4, 3), (4, 2))]
    P = torch.rand(2, 3, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda W, x, y, p: oja.oja_update(W, x, y, p), (*inputs, P))


def covariance_with_known_spectrum(n=5, seed=0):
    gen = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(gen.standard_normal((n, n)))
    values = np.array([3.0, 1.5, 0.8, 0.4, 0.1])[:n]
    return torch.tensor(Q @ np.diag(values) @ Q.T)


def test_averaged_oja_converges_to_the_top_principal_component_with_unit_norm():
    C = covariance_with_known_spectrum()
    values, vectors = np.linalg.eigh(C.numpy())
    top = torch.tensor(vectors[:, -1])
    w0 = torch.randn(5, generator=rng.make_generator(3), dtype=F64)
    path = oja.averaged_oja(w0, C, alpha=0.1, steps=800)
    w = path[-1]
    assert float(oja.alignment(w, top)) > 1 - 1e-9
    assert abs(float(w.norm()) - 1.0) < 1e-9
    lam, v = oja.top_principal_component(C)
    assert abs(float(lam) - values[-1]) < 1e-12
    torch.testing.assert_close(oja.averaged_oja_field(v, C), torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)


def test_online_oja_finds_the_principal_component_of_samples():
    C = covariance_with_known_spectrum(seed=4)
    L = torch.linalg.cholesky(C)
    x = torch.randn(4000, 5, generator=rng.make_generator(5), dtype=F64) @ L.T
    sample_cov = x.T @ x / x.shape[0]
    _, v = oja.top_principal_component(sample_cov)
    w0 = torch.randn(5, generator=rng.make_generator(6), dtype=F64) * 0.1
    w = oja.oja_neuron_online(w0, x, 0.002)[-1]
    assert math.degrees(math.acos(min(1.0, float(oja.alignment(w, v))))) < 5.0
    assert abs(float(w.norm()) - 1.0) < 0.05
    # a sweep over α is one batched computation equal to separate runs
    sweep = oja.oja_neuron_online(w0.expand(2, 5), x[:200], torch.tensor([0.001, 0.003], dtype=F64))[:, -1]
    torch.testing.assert_close(sweep[1], oja.oja_neuron_online(w0, x[:200], 0.003)[-1])


def test_hebb_diverges_while_oja_stays_bounded():
    C = covariance_with_known_spectrum()
    w0 = torch.randn(5, generator=rng.make_generator(7), dtype=F64)
    hebb = oja.averaged_oja(w0, C, 0.1, 200, hebbian=True)
    assert float(hebb[-1].norm()) > 1e20
    assert float(oja.averaged_oja(w0, C, 0.1, 200)[-1].norm()) < 1.5


def test_stability_threshold_of_the_averaged_map_is_one_over_lambda_one():
    C = covariance_with_known_spectrum()
    lam = np.linalg.eigvalsh(C.numpy())
    critical = oja.critical_learning_rate(C)
    assert abs(critical - 1 / lam[-1]) < 1e-12
    for alpha in (0.5 * critical, 1.2 * critical):
        spectrum = np.sort(np.linalg.eigvals(oja.averaged_oja_jacobian(C, alpha).numpy()).real)
        expected = np.sort(np.r_[1 - 2 * alpha * lam[-1], 1 - alpha * (lam[-1] - lam[:-1])])
        np.testing.assert_allclose(spectrum, expected, atol=1e-10)
    _, v = oja.top_principal_component(C)
    start = v + 1e-3 * torch.ones(5, dtype=F64)
    stable = oja.averaged_oja(start, C, 0.9 * critical, 400)[-1]
    unstable = oja.averaged_oja(start, C, 1.1 * critical, 400)[-1]
    assert float((stable - v).norm()) < 1e-8
    assert float((unstable - v).norm()) > 1e-2 and float((unstable + v).norm()) > 1e-2


@pytest.mark.parametrize("call, message", [
    (lambda W, x, y: oja.oja_update(W, x, y, -0.1), "plasticity must be"),
    (lambda W, x, y: oja.oja_update(W, x, y, -torch.ones(3, 4)), "plasticity must be >= 0"),
    (lambda W, x, y: oja.oja_update(W, x, y, torch.ones(2, 2)), "does not broadcast"),
    (lambda W, x, y: oja.oja_update(W.T, x, y), "weight must have shape"),
    (lambda W, x, y: oja.oja_update(W, x[:2], y), "same batch size"),
    (lambda W, x, y: oja.oja_update(W, x, y, reduction="max"), "reduction must be"),
    (lambda W, x, y: oja.oja_neuron_online(torch.ones(4), x, 0.0), "alpha must be positive"),
    (lambda W, x, y: oja.averaged_oja(torch.ones(2), torch.tensor([[1.0, 2.0], [0.0, 1.0]]), 0.1, 3), "symmetric"),
])
def test_bad_inputs_fail_with_a_clear_message(call, message):
    W, x, y = torch.ones(3, 4), torch.ones(5, 4), torch.ones(5, 3)
    with pytest.raises(ValueError, match=message):
        call(W, x, y)
