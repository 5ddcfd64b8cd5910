import math

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.activations import ACTIVATIONS, get_activation
from credit_tutorial.init import as_init


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_matches_autograd(name):
    f = get_activation(name)
    a = torch.linspace(-3, 3, 601, dtype=torch.float64).requires_grad_()
    a_nonzero = a[a.detach().abs() > 1e-9]  # ReLU has no derivative at 0
    h = f(a_nonzero)
    (grad,) = torch.autograd.grad(h.sum(), a_nonzero)
    torch.testing.assert_close(f.derivative(a_nonzero.detach(), h.detach()), grad)


def test_relu_derivative_is_a_step_at_zero_not_at_one():
    relu = get_activation("relu")
    a = torch.tensor([-1.0, 0.5, 1.5])
    assert relu.derivative(a, relu(a)).tolist() == [0.0, 1.0, 1.0]  # the Neuromatch bug used activity > 1


def test_unknown_activation_is_an_error():
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("softplus")
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP((3, 2), hidden_activation="swish")


def test_trace_records_every_layer(gen):
    net = MLP((5, 4, 3, 2), "tanh", "identity", generator=gen, dtype=torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    trace = net.trace(x)
    assert len(trace.layers) == 3
    h = x
    for W, b, f, record in zip(net.weights, net.biases, net.activations, trace.layers):
        torch.testing.assert_close(record.presynaptic, h)
        torch.testing.assert_close(record.pre_activation, h @ W.T + b)
        torch.testing.assert_close(record.activity, f(h @ W.T + b))
        h = record.activity
    torch.testing.assert_close(trace.output, net(x))


def test_trace_from_a_middle_layer_with_noise(gen):
    net = MLP((5, 4, 3, 2), "sigmoid", generator=gen, dtype=torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    clean = net.trace(x)
    noise = [None, torch.randn(7, 3, dtype=torch.float64), None]
    partial = net.trace_from(1, clean.layers[0].activity, noise)
    full = net.trace(x, noise=noise)
    torch.testing.assert_close(partial.output, full.output)
    assert full.perturbed and not clean.perturbed
    # derivatives of a perturbed trace come from the pre-activations, not from the noisy activity
    a = full.layers[1].pre_activation
    torch.testing.assert_close(net.derivatives(full)[1], torch.sigmoid(a) * (1 - torch.sigmoid(a)))


def test_no_bias_network(gen):
    net = MLP((3, 2, 1), bias=False, generator=gen)
    assert net.biases is None and len(list(net.parameters())) == 2


def test_he_init_statistics():
    net = MLP((400, 300, 10), generator=rng.make_generator(0))
    std = net.weights[0].std().item()
    assert abs(std - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400) * 3
    assert torch.all(net.biases[0] == 0)


def test_uniform_and_normal_init():
    net = MLP((300, 200, 10), init="uniform", generator=rng.make_generator(0))
    w = net.weights[0]
    assert w.abs().max() <= 0.05 and w.abs().max() > 0.049
    assert abs(w.std().item() - 0.05 / math.sqrt(3)) < 1e-3
    net = MLP((300, 200, 10), init="normal:0.01", generator=rng.make_generator(0))
    assert abs(net.weights[0].std().item() - 0.01) < 2e-4


@pytest.mark.parametrize("spec", ["glorot", "uniform:-1", "normal:abc", "he:0.1", 3])
def test_bad_init_is_an_error(spec):
    with pytest.raises(ValueError, match="init"):
        as_init(spec)


def test_init_is_reproducible_and_generator_driven():
    a = MLP((4, 3, 2), generator=rng.make_generator(5))
    b = MLP((4, 3, 2), generator=rng.make_generator(5))
    c = MLP((4, 3, 2), generator=rng.make_generator(6))
    assert torch.equal(a.weights[0], b.weights[0]) and not torch.equal(a.weights[0], c.weights[0])


def test_ensemble_copies_equal_single_networks():
    seeds = [3, 4, 5]
    ens = MLP((6, 5, 4), "tanh", generator=[rng.make_generator(s) for s in seeds], dtype=torch.float64)
    x = torch.randn(8, 6, dtype=torch.float64)
    out = ens(x)  # the same batch broadcast to every copy
    assert out.shape == (3, 8, 4)
    for k, s in enumerate(seeds):
        single = MLP((6, 5, 4), "tanh", generator=rng.make_generator(s), dtype=torch.float64)
        torch.testing.assert_close(out[k], single(x))


@pytest.mark.parametrize("sizes", [(), (3,), (3, 0, 2), (3, -1), (3.0, 2)])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        MLP(sizes)


def test_wrong_input_shape_and_empty_batch(gen):
    net = MLP((5, 3, 2), generator=gen)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 5\)"):
        net(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.zeros(5))
    with pytest.raises(ValueError, match="empty batch"):
        net(torch.zeros(0, 5))


def test_one_activation_per_hidden_layer(gen):
    net = MLP((8, 6, 2, 6, 8), ["tanh", "identity", "tanh"], "relu", generator=gen, dtype=torch.float64)
    assert [f.name for f in net.activations] == ["tanh", "identity", "tanh", "relu"]
    x = torch.randn(3, 8, dtype=torch.float64)
    trace = net.trace(x)
    torch.testing.assert_close(trace.layers[1].activity, trace.layers[1].pre_activation)  # linear bottleneck
    with pytest.raises(ValueError, match="has 3 hidden layers"):
        MLP((8, 6, 2, 6, 8), ["tanh", "tanh"])
