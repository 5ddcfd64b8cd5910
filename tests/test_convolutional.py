"""The convolutional network and its three rules (chapter 8), against autograd and least squares."""

import json

import pytest
import torch

from credit_tutorial import node_perturbation as np_
from credit_tutorial import rng
from credit_tutorial.convolutional import (CONV_RULES, ConvBackprop, ConvDirectFeedback, ConvLearnedDirectFeedback,
                                           ConvNet, backprop_deltas, compare_with_backprop,
                                           least_squares_feedback, local_gradients, reachable_fraction)
from credit_tutorial.data import Dataset
from credit_tutorial.objectives import get_objective
from credit_tutorial.training import fit

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def tiny_net(seed=0, activation="tanh", dtype=F64, **options):
    """1×9×9 input; conv 3@5×5 (stride 2, pad 1: odd sizes exercise the transposed convolution's output padding),
    conv 4@3×3 (stride 2, pad 1), fc 6, out 4."""
    settings = dict(input_shape=(1, 9, 9), channels=(3, 4), kernel_size=3, stride=2, padding=1, hidden=(6,),
                    n_out=4, activation=activation)
    settings.update(options)
    return ConvNet(**settings, generator=rng.make_generator(seed), dtype=dtype)


def batch(net, n=5, seed=1):
    g = rng.make_generator(seed)
    x = torch.randn(n, net.sizes[0], generator=g, dtype=net.weights[0].dtype)
    y = torch.randint(0, net.sizes[-1], (n,), generator=g)
    return x, y


def autograd_gradients(net, x, y, objective="cross_entropy"):
    net.zero_grad()
    get_objective(objective)(net(x), y).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    return grads


def rule_gradients(rule, x, y):
    rule.network.zero_grad()
    rule.step(x, y)
    grads = [p.grad.clone() for p in rule.network.parameters()]
    rule.network.zero_grad()
    return grads


# ---------------------------------------------------------------------------------------------------- shapes
def test_geometry_and_trace_shapes():
    net = ConvNet(generator=rng.make_generator(0))  # the chapter's network
    assert net.sizes == (784, 8 * 14 * 14, 16 * 7 * 7, 16 * 4 * 4, 64, 10)
    assert [tuple(W.shape) for W in net.weights] == [(8, 1, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (64, 256), (10, 64)]
    assert net.layer_names() == ["conv1 (8×14×14)", "conv2 (16×7×7)", "conv3 (16×4×4)", "fc1 (64)", "out (10)"]
    x = torch.rand(3, 784, generator=rng.make_generator(1))
    trace = net.trace(x)
    assert [tuple(r.activity.shape) for r in trace.layers] == [(3, n) for n in net.sizes[1:]]
    assert [tuple(r.presynaptic.shape) for r in trace.layers] == [(3, n) for n in net.sizes[:-1]]
    # images and flat rows give the same output, equal to the traced one
    torch.testing.assert_close(net(x.reshape(3, 1, 28, 28)), trace.output)
    torch.testing.assert_close(net(x), trace.output)


def test_he_initialisation_uses_the_kernel_fan_in():
    net = ConvNet((4, 16, 16), channels=(64,), kernel_size=5, padding=2, hidden=(), n_out=3,
                  generator=rng.make_generator(0))
    std = net.weights[0].std().item()  # 64·4·25 = 6400 draws of N(0, 2/(4·25))
    assert std == pytest.approx((2 / 100) ** 0.5, rel=0.03)
    assert torch.all(net.biases[0] == 0)


# ---------------------------------------------------------------------------------------------------- exact cases
@pytest.mark.parametrize("objective", ["cross_entropy", "mse"])
def test_backprop_rule_equals_autograd(objective):
    net = tiny_net()
    x, y = batch(net)
    rule = ConvBackprop(net, objective)
    for got, expected in zip(rule_gradients(rule, x, y), autograd_gradients(net, x, y, objective)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_local_gradient_is_autograd_of_the_inner_product_with_delta():
    """For ANY error δ_l, the update is ∂/∂θ_l of ⟨δ_l, a_l⟩ (batch mean): local, exact, whatever rule gave δ_l."""
    net = tiny_net()
    x, _ = batch(net, n=4)
    trace = net.trace(x)
    g = rng.make_generator(5)
    deltas = [torch.randn(4, n, generator=g, dtype=F64) for n in net.sizes[1:]]
    for index, (grad_w, grad_b) in enumerate(local_gradients(net, trace, deltas)):
        h = trace.layers[index].presynaptic.detach()
        inner = (net.pre_activation(index, h) * deltas[index]).sum() / 4
        expected_w, expected_b = torch.autograd.grad(inner, [net.weights[index], net.biases[index]])
        torch.testing.assert_close(grad_w, expected_w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_b, expected_b, rtol=1e-10, atol=1e-12)


def jacobian_feedback(net, x):
    """B_l = (∂a_L/∂h_l)ᵀ at the first sample of x, for every hidden layer l, by autograd: (n_l, n_L)."""
    trace = net.trace(x[:1])
    matrices = []
    for index in range(net.n_layers - 1):
        h = trace.layers[index].activity.detach()
        J = torch.autograd.functional.jacobian(lambda v: net.trace_from(index + 1, v).layers[-1].pre_activation, h)
        matrices.append(J.reshape(net.sizes[-1], net.sizes[index + 1]).mT)
    return matrices


def test_direct_feedback_is_exact_when_B_is_the_jacobian_of_a_linear_upper_network():
    """With identity activations above conv1, ∂a_L/∂h_l is the same matrix for every input; DFA with B_l equal to
    it transposed is backprop, so the rule's gradients equal autograd's for every layer."""
    net = tiny_net(activation=["tanh", "identity", "identity"])
    x, y = batch(net, n=6)
    rule = ConvDirectFeedback(net, feedback=jacobian_feedback(net, x))
    for got, expected in zip(rule_gradients(rule, x, y), autograd_gradients(net, x, y)):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    angles = compare_with_backprop(rule, x, y)
    assert max(angles["delta_angle"]) < 1e-3 and max(angles["update_angle"]) < 1e-3


def test_top_hidden_layer_feedback_W_transposed_is_exact_in_a_nonlinear_network():
    net = tiny_net()
    x, y = batch(net)
    feedback = [torch.zeros(n, 4, dtype=F64) for n in net.sizes[1:-2]] + [net.weights[-1].detach().mT]
    rule = ConvDirectFeedback(net, feedback=feedback)
    trace = net.trace(x)
    output_delta = rule.compute_credit(x, y).output_delta
    exact = backprop_deltas(net, trace, output_delta)
    torch.testing.assert_close(rule.compute_credit(x, y).deltas[-2], exact[-2], rtol=1e-12, atol=1e-14)
    # the lower layers are nonlinear functions of the input above them: the input-independent B is not exact
    jacobian_rule = ConvDirectFeedback(net, feedback=jacobian_feedback(net, x))
    assert compare_with_backprop(jacobian_rule, x[1:], y[1:])["delta_angle"][0] > 1.0


def test_random_direct_feedback_is_a_buffer_and_far_from_backprop():
    net = tiny_net(seed=3)
    rule = ConvDirectFeedback(net, generator=rng.make_generator(4))
    assert [tuple(B.shape) for B in rule.feedback_matrices()] == [(75, 4), (36, 4), (6, 4)]
    assert {"feedback.0", "feedback.1", "feedback.2"} <= set(rule.state_dict())
    x, y = batch(net, n=64)
    angles = compare_with_backprop(rule, x, y)["delta_angle"]
    assert all(a > 45 for a in angles)  # random feedback, before any alignment
    rule32 = rule.to(torch.float32)
    assert rule32.feedback[0].dtype == torch.float32 and rule32.network.weights[0].dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- node perturbation
def test_node_perturbation_estimate_is_unbiased_for_small_noise():
    """E[λ̂_l] = ∂L/∂h_l for every hidden layer (conv layers included), within 5 standard errors, at c = 1e-3."""
    net = tiny_net()
    objective = get_objective("cross_entropy")
    x, y = batch(net, n=1)
    n = 40_000
    trace = net.trace(x.expand(n, -1))
    result = np_.estimate(net, objective, trace, y.expand(n), 1e-3, rng.make_generator(7))
    clean = net.trace(x)
    for index in range(net.n_layers - 1):
        h = clean.layers[index].activity.detach().requires_grad_()
        (exact,) = torch.autograd.grad(objective(net.trace_from(index + 1, h).output, y), h)
        lam = result.lambdas[index]
        error = lam.mean(dim=0) - exact[0]
        assert torch.all(error.abs() < 5 * lam.std(dim=0) / n ** 0.5), f"layer {index + 1}"
        cosine = torch.nn.functional.cosine_similarity(lam.mean(dim=0), exact[0], dim=0)
        assert cosine > 0.99, f"layer {index + 1}: cosine {cosine:.3f}"


def feedback_data(net, n_batches, size, seed):
    g = rng.make_generator(seed)
    for _ in range(n_batches):
        yield (torch.randn(size, net.sizes[0], generator=g, dtype=F64),
               torch.randint(0, net.sizes[-1], (size,), generator=g))


def exact_pairs(net, x, y, objective):
    """(∂L/∂h_l per sample for every hidden layer, by one autograd pass; the output error e)."""
    with torch.enable_grad():
        h, activities = x, []
        for index in range(net.n_layers):
            h = net.activations[index](net.pre_activation(index, h))
            activities.append(h)
        grads = torch.autograd.grad(objective.per_sample(h, y).sum(), activities[:-1])
    return grads, objective.output_gradient(h, y).detach()


def feedback_distances(checkpoints, **options):
    """Train B only (W fixed) on fresh batches; at each checkpoint step, ‖B_l P − B*_l P‖/‖B*_l P‖ per hidden layer,
    B*_l = argmin Σ‖∂L/∂h_l − B e‖² over the same samples (autograd's exact ∂L/∂h_l). The softmax error e sums
    to zero, so only B's action on that subspace, B P with P = I − 11ᵀ/n, is determined (and all that B e uses)."""
    net = tiny_net(seed=2)
    rule = ConvLearnedDirectFeedback(net, c=1e-2, perturb="layerwise", generator=rng.make_generator(3),
                                     warmup_steps=10 ** 9, **options)
    P = torch.eye(4, dtype=F64) - 1 / 4
    grads, errors, distances = [[] for _ in range(net.n_layers - 1)], [], []
    for step, (x, y) in enumerate(feedback_data(net, max(checkpoints) + 1, 400, seed=4)):
        rule.step(x, y)
        exact, e = exact_pairs(net, x, y, rule.objective)
        errors.append(e)
        for i, g in enumerate(exact):
            grads[i].append(g)
        if step in checkpoints:
            targets = [least_squares_feedback(torch.cat(g), torch.cat(errors)) @ P for g in grads]
            distances.append([((B @ P - T).norm() / T.norm()).item()
                              for B, T in zip(rule.feedback_matrices(), targets)])
    assert all(p.grad is None for p in net.parameters())  # warm-up: W untouched
    torch.testing.assert_close(targets[-1], net.weights[-1].detach().mT @ P)  # top layer: B* is exactly W_Lᵀ
    return distances


def test_ridge_feedback_converges_to_the_least_squares_solution():
    early, late = feedback_distances((4, 29), feedback="ridge", gamma=1e-6)
    assert all(d < 0.25 for d in late), late
    assert all(b < a for a, b in zip(early, late)), (early, late)  # the error shrinks as samples accumulate


def test_sgd_feedback_reaches_the_least_squares_solution_up_to_a_floor_set_by_its_learning_rate():
    (slow,) = feedback_distances((29,), feedback="sgd", feedback_lr=1e-3)
    (fast,) = feedback_distances((29,), feedback="sgd", feedback_lr=3e-3)
    assert all(d < 0.3 for d in slow), slow
    assert all(a < b for a, b in zip(slow, fast)), (slow, fast)  # constant-step SGD: floor grows with η_B


# ---------------------------------------------------------------------------------------------------- training
def image_task(n_train=96, n_test=32, seed=0):
    g = rng.make_generator(seed)
    x = torch.rand(n_train + n_test, 81, generator=g)
    y = (x[:, :40].sum(dim=1) > x[:, 41:].sum(dim=1)).long() + 2 * (x[:, 40] > 0.5).long()
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], source="random images", n_classes=4)


@pytest.mark.parametrize("name", sorted(CONV_RULES))
def test_fit_trains_every_rule_and_resumes_exactly(name, tmp_path):
    data = image_task()
    options = {"np": dict(c=0.05, feedback="sgd", feedback_lr=1e-3)}.get(name, {})

    def make():
        net = tiny_net(dtype=torch.float32)
        rule = CONV_RULES[name](net, generator=rng.make_generator(1), **options)
        return rule, torch.optim.Adam(net.parameters(), lr=1e-2)

    rule, optimizer = make()
    straight = fit(rule, optimizer, data, steps=8, batch_size=16, generator=rng.make_generator(2), eval_every=4)
    assert straight["train_loss"][-1] < straight["train_loss"][0]
    ckpt = tmp_path / "run.ckpt"
    rule, optimizer = make()
    fit(rule, optimizer, data, steps=4, batch_size=16, generator=rng.make_generator(2), eval_every=4,
        checkpoint=ckpt)
    rule, optimizer = make()
    resumed = fit(rule, optimizer, data, steps=8, batch_size=16, generator=rng.make_generator(9), eval_every=4,
                  checkpoint=ckpt, resume=True)
    assert resumed["test_loss"] == straight["test_loss"]


def test_learned_rule_warmup_and_state():
    net = tiny_net()
    rule = ConvLearnedDirectFeedback(net, c=0.05, generator=rng.make_generator(1), warmup_steps=1)
    x, y = batch(net, n=8)
    rule.step(x, y)
    assert all(p.grad is None for p in net.parameters())
    assert all(B.abs().sum() > 0 for B in rule.feedback_matrices())  # ridge learned from the first batch
    rule.step(x, y)
    assert all(p.grad is not None for p in net.parameters())
    assert {"c", "steps", "learners.0.B", "learners.0.D", "learners.0.S"} <= set(rule.state_dict())


def test_reproduce_cnn_quick_writes_its_command_and_resumes(tmp_path):
    from credit_tutorial import reproduce
    from credit_tutorial.experiments import convolutional as experiment

    assert reproduce.EXPERIMENTS["cnn"] is experiment.reproduce_cnn
    out = tmp_path / "cnn.json"
    kwargs = dict(device="cpu", seed=0, progress=False, quick=True, data_root=None, checkpoint_every=2,
                  command="credit-tutorial reproduce cnn --quick")
    first = experiment.reproduce_cnn(out, resume=False, **kwargs)
    saved = json.loads(out.read_text())
    assert saved["command"] == kwargs["command"] and set(saved["final"]) == {"bp", "dfa", "np"}
    again = experiment.reproduce_cnn(out, resume=True, **kwargs)  # finished checkpoints: same result
    assert again["final"] == first["final"]


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(28, 28)), "input_shape"),
    (dict(channels=()), "channels"),
    (dict(channels=(4, 0)), "channels"),
    (dict(kernel_size=[3]), "kernel_size"),
    (dict(kernel_size=11, padding=0), "does not fit"),
    (dict(stride=0), "stride"),
    (dict(activation=["tanh"]), "activation"),
    (dict(activation="softplus"), "activation"),
    (dict(n_out=0), "n_out"),
])
def test_convnet_bad_arguments(kwargs, message):
    settings = dict(input_shape=(1, 9, 9), channels=(3, 4), hidden=(6,), n_out=4)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ConvNet(**settings)


def test_convnet_refuses_ensembles_and_bad_inputs():
    with pytest.raises(ValueError, match="ensembles"):
        ConvNet(generator=[rng.make_generator(0), rng.make_generator(1)])
    net = tiny_net()
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 81\)"):
        net(torch.zeros(2, 80, dtype=F64))
    with pytest.raises(ValueError, match="empty batch"):
        net(torch.zeros(0, 81, dtype=F64))


def test_rules_bad_arguments_and_batches():
    net = tiny_net()
    with pytest.raises(TypeError, match="ConvNet"):
        ConvBackprop(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="noise standard deviation"):
        ConvLearnedDirectFeedback(net, c=0.0)
    with pytest.raises(ValueError, match="one positive number"):
        ConvLearnedDirectFeedback(net, c=[1e-3, 1e-2])
    with pytest.raises(ValueError, match="perturb"):
        ConvLearnedDirectFeedback(net, perturb="each")
    with pytest.raises(ValueError, match="feedback_lr"):
        ConvLearnedDirectFeedback(net, feedback="sgd")
    with pytest.raises(ValueError, match="feedback must be"):
        ConvLearnedDirectFeedback(net, feedback="adam")
    with pytest.raises(ValueError, match="feedback_init"):
        ConvLearnedDirectFeedback(net, feedback="ridge", feedback_init="random")
    with pytest.raises(ValueError, match="warmup_steps"):
        ConvLearnedDirectFeedback(net, warmup_steps=-1)
    with pytest.raises(ValueError, match="one matrix per hidden layer"):
        ConvDirectFeedback(net, feedback=[torch.zeros(75, 4, dtype=F64)])
    rule = ConvBackprop(net)
    x, y = batch(net, n=4)
    with pytest.raises(ValueError, match="NaN"):
        rule.step(torch.full_like(x, float("nan")), y)
    with pytest.raises(ValueError, match="one entry"):
        rule.step(x, y[:3])
    with pytest.raises(ValueError, match="labels must lie"):
        rule.step(x, torch.tensor([0, 1, 2, 7]))


def test_reachable_fraction_is_one_for_transported_feedback_and_rank_over_width_for_random():
    net = tiny_net()
    x, y = batch(net, n=200)
    objective = get_objective("cross_entropy")
    g = rng.make_generator(6)
    random = [torch.randn(n, 4, generator=g, dtype=F64) for n in net.sizes[1:-1]]
    transported = random[:-1] + [net.weights[-1].detach().mT]  # top hidden layer: B e = W_Lᵀ e is in the range
    assert reachable_fraction(transported, net, objective, x, y)[-1] == pytest.approx(1.0, abs=1e-9)
    draws = [reachable_fraction([torch.randn(n, 4, generator=g, dtype=F64) for n in net.sizes[1:-1]],
                                net, objective, x, y) for _ in range(30)]
    fractions = torch.tensor(draws, dtype=F64).mean(dim=0)
    # conv1: 75 units, conv2 has 36 outputs (full rank); conv2: 36 units, fc1 has 6; fc1: 6 units, out has 4
    torch.testing.assert_close(fractions, torch.tensor([36 / 75, 6 / 36, 4 / 6], dtype=F64), atol=0.06, rtol=0)


def write_fake_cifar(directory, n=6, seed=0):
    """CIFAR-10 python-version files (pickled dicts of bytes keys, as the originals), with n images each."""
    import pickle

    import numpy as np

    generator = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        content = {b"data": generator.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"labels": generator.integers(0, 10, n).tolist(), b"batch_label": name.encode()}
        with open(directory / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)


def test_cifar10_loader_reads_the_python_version_and_refuses_foreign_pickles(tmp_path):
    import os
    import pickle

    from credit_tutorial.experiments.convolutional import load_cifar10, load_data

    write_fake_cifar(tmp_path)
    data, shape = load_data(str(tmp_path))
    assert shape == (3, 32, 32) and data.n_train == 30 and data.n_test == 6 and data.n_classes == 10
    assert data.x_train.shape == (30, 3072)
    from credit_tutorial.experiments.convolutional import reproduce_cnn
    result = reproduce_cnn(tmp_path / "cifar.json", device="cpu", seed=0, resume=False, progress=False, quick=True,
                           data_root=str(tmp_path), checkpoint_every=None, command="test")
    assert result["image_shape"] == [3, 32, 32] and result["layers"][2] == "conv3 (8×4×4)"
    # per-image standardisation: zero mean and unit standard deviation per image
    torch.testing.assert_close(data.x_train.mean(dim=1), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_train.std(dim=1, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)
    with open(tmp_path / "test_batch", "wb") as handle:  # a pickle that would run a command when loaded
        pickle.dump(os.getcwd, handle)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10"):
        load_cifar10(tmp_path / "missing")
