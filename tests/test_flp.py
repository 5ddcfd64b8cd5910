"""The FLP lifetime, its baselines, meta-training and task samplers, against explicit formulas and autograd."""

import json
import math

import numpy as np
import pytest
import torch

from credit_tutorial import rng
from credit_tutorial.checkpoint import load_checkpoint
from credit_tutorial.flp import analysis
from credit_tutorial.flp.episode import Episode, stack_episodes
from credit_tutorial.flp.experiment import FewShotConfig, SineConfig, meta_test, meta_train, prepare
from credit_tutorial.flp.few_shot import few_shot_episode, load_omniglot, mnist_pools
from credit_tutorial.flp.learners import FeatureReuseLearner, FLPLearner, GradientLearner, MetaSGDLearner
from credit_tutorial.flp.lifetime import flp_step, sgd_step, task_loss, weight_gradients
from credit_tutorial.flp.meta import MetaTrainingDiverged, meta_fit, meta_optimizer
from credit_tutorial.flp.reproduce import reproduce_flp_sine
from credit_tutorial.flp.sine import sine_episode

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def gen(seed):
    return rng.make_generator(seed)


def random_layers(sizes, seed=0, lead=()):
    g = gen(seed)
    weights = [torch.randn(*lead, m, n, generator=g, dtype=F64) / math.sqrt(n) for n, m in zip(sizes[:-1], sizes[1:])]
    biases = [0.1 * torch.randn(*lead, m, generator=g, dtype=F64) for m in sizes[1:]]
    return weights, biases


# ------------------------------------------------------------------------------------------ one lifetime step
def explicit_flp_step(weights, biases, B, c, P, beta, x, y, kind):
    """Steps 1-5 of REFERENCE.md §B written sample by sample and synapse by synapse."""
    L = len(weights)
    n_plastic = len(P)
    new = [W.clone() for W in weights]
    for layer in range(L - n_plastic, L):
        idx = layer - (L - n_plastic)
        for i in range(weights[layer].shape[0]):
            for j in range(weights[layer].shape[1]):
                total = 0.0
                for b in range(x.shape[0]):
                    h = [x[b]]
                    for k, (W, bias) in enumerate(zip(weights, biases)):
                        a = W @ h[-1] + bias
                        h.append(a if k == L - 1 else torch.clamp(a, min=0))
                    y_hat = h[-1]
                    e = (y[b] - y_hat) if kind == "regression" else torch.nn.functional.one_hot(y[b], y_hat.shape[0]).to(F64)
                    f = torch.clamp(B[idx] @ e + c[idx], min=0)
                    if kind == "classification" and layer == L - 1:
                        z = e
                    else:
                        z = beta[idx] * f + (1 - beta[idx]) * h[layer + 1]
                    total = total + z[i] * h[layer][j] - z[i] ** 2 * weights[layer][i, j]
                new[layer][i, j] = weights[layer][i, j] + P[idx][i, j] * total
    return new


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_flp_step_equals_the_explicit_per_sample_per_synapse_formula(kind):
    sizes = (4, 5, 3, 2)
    weights, biases = random_layers(sizes)
    g = gen(1)
    n_plastic = 2
    B = [torch.randn(m, 2, generator=g, dtype=F64) for m in sizes[-n_plastic:]]
    c = [0.1 * torch.randn(m, generator=g, dtype=F64) for m in sizes[-n_plastic:]]
    P = [0.05 * torch.rand(m, n, generator=g, dtype=F64) for n, m in zip(sizes[-n_plastic - 1:-1], sizes[-n_plastic:])]
    beta = [0.3, 0.7]
    x = torch.randn(6, 4, generator=g, dtype=F64)
    y = torch.randn(6, 2, generator=g, dtype=F64) if kind == "regression" else torch.randint(0, 2, (6,), generator=g)
    step = flp_step(weights, biases, B, c, P, beta, x, y, kind=kind)
    expected = explicit_flp_step(weights, biases, B, c, P, beta, x, y, kind)
    for got, want in zip(step.weights, expected):
        torch.testing.assert_close(got, want)
    assert step.weights[0] is weights[0]  # the non-plastic layer is untouched
    # Hebb: the same targets without Oja's decay term
    hebb = flp_step(weights, biases, B, c, P, beta, x, y, kind=kind, rule="hebb")
    activities = _activities(weights, biases, x)
    for index, layer in enumerate((1, 2)):
        torch.testing.assert_close(hebb.updates[index], P[index] * (hebb.targets[index].T @ activities[layer]))


def _activities(weights, biases, x):
    h = [x]
    for k, (W, b) in enumerate(zip(weights, biases)):
        a = h[-1] @ W.T + b
        h.append(a if k == len(weights) - 1 else torch.relu(a))
    return h


def test_sgd_step_uses_the_exact_gradient():
    sizes = (4, 6, 5, 3)
    weights, biases = random_layers(sizes, seed=2)
    leaves = [W.clone().requires_grad_() for W in weights]
    g = gen(3)
    x = torch.randn(7, 4, generator=g, dtype=F64)
    for kind, y in (("regression", torch.randn(7, 3, generator=g, dtype=F64)),
                    ("classification", torch.randint(0, 3, (7,), generator=g))):
        output, grads = weight_gradients(leaves, biases, x, y, kind=kind, n_layers=3)
        expected = torch.autograd.grad(task_loss(output, y, kind), leaves)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want)
        rates = [torch.full_like(W, 0.1) for W in weights[1:]]
        step = sgd_step(weights, biases, rates, x, y, kind=kind)
        torch.testing.assert_close(step.weights[2], weights[2] - 0.1 * expected[2])
        assert step.weights[0] is weights[0]


# ------------------------------------------------------------------------------------------- the meta-gradient
def tiny_episode(kind="regression", lead=(), seed=5):
    g = gen(seed)
    T, batch = 3, 4
    if kind == "regression":
        y_train, y_test = torch.randn(*lead, T, batch, 1, generator=g, dtype=F64), torch.randn(*lead, 5, 1, generator=g, dtype=F64)
    else:
        y_train, y_test = torch.randint(0, 2, (*lead, T, batch), generator=g), torch.randint(0, 2, (*lead, 5), generator=g)
    return Episode(torch.randn(*lead, T, batch, 3, generator=g, dtype=F64), y_train,
                   torch.randn(*lead, 5, 3, generator=g, dtype=F64), y_test,
                   torch.zeros(*lead, T, dtype=torch.int64), torch.zeros(*lead, 5, dtype=torch.int64), kind,
                   1 if kind == "regression" else 2)


def _gradcheck_learner(learner, episode):
    """gradcheck of the test loss after the lifetime w.r.t. every meta-parameter at once (float64)."""
    names = [name for name, _ in learner.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in learner.parameters())

    def test_loss(*meta_parameters):
        return torch.func.functional_call(learner, dict(zip(names, meta_parameters)), (episode,))
    assert torch.autograd.gradcheck(test_loss, values, eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_meta_gradient_through_a_tiny_flp_lifetime_passes_gradcheck(kind):
    n_out = 1 if kind == "regression" else 2
    learner = FLPLearner((3, 4, 3, n_out), 2, init_plasticity=0.05, generator=gen(6), dtype=F64)
    with torch.no_grad():  # move off the initial values so every meta-parameter matters
        for p in learner.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen(7), dtype=F64))
    _gradcheck_learner(learner, tiny_episode(kind))


@pytest.mark.parametrize("learner_class", [GradientLearner, MetaSGDLearner])
def test_meta_gradient_through_a_tiny_gradient_based_lifetime_passes_gradcheck(learner_class):
    learner = learner_class((3, 4, 3, 1), 2, init_learning_rate=0.1, generator=gen(8), dtype=F64)
    _gradcheck_learner(learner, tiny_episode())


def test_the_gradient_baseline_keeps_one_fixed_learning_rate():
    """The paper's baseline: inner SGD with one fixed η on the plastic layers; only initial weights are learned."""
    learner = GradientLearner((11, 6, 6, 1), 2, learning_rate=0.02, generator=gen(0), dtype=F64)
    assert set(learner.parameter_groups()) == {"weights"}
    assert [name for name, _ in learner.named_parameters()] == [f"{kind}.{i}" for kind in ("weights", "biases")
                                                                for i in range(3)]
    optimizer = meta_optimizer(learner, lr=1e-2)
    assert [group["name"] for group in optimizer.param_groups] == ["weights"]
    episode = sine_episode(gen(1), batches_per_task=1, batch_size=4, n_test_per_task=2, dtype=F64)
    meta_fit(learner, optimizer, lambda g: episode, episodes=3, generator=gen(2))
    assert float(learner.eta) == 0.02 and all(float(r) == 0.02 for r in learner.learning_rates())
    # one lifetime step is W − η ∂ℓ/∂W on the plastic layers, the first layer untouched
    weights = [W.detach() for W in learner.weights]
    biases = [b.detach() for b in learner.biases]
    x, y = episode.x_train[0], episode.y_train[0]
    _, grads = weight_gradients(weights, biases, x, y, kind="regression", n_layers=2)
    one_step = Episode(x[None], y[None], episode.x_test, episode.y_test, episode.task_train[:1], episode.task_test,
                       "regression", 1)
    final = learner.lifetime(one_step)
    assert torch.equal(final[0], weights[0])
    for got, W, g in zip(final[1:], weights[1:], grads):
        torch.testing.assert_close(got, W - 0.02 * g)
    # the keyword of earlier versions is an alias; the default is the paper's 0.003
    assert GradientLearner((11, 6, 1), 1, init_learning_rate=0.05, generator=gen(0)).learning_rate == 0.05
    assert GradientLearner((11, 6, 1), 1, generator=gen(0)).learning_rate == 3e-3
    # Meta-SGD learns a rate per synapse, starting at η₀
    meta_sgd = MetaSGDLearner((11, 6, 6, 1), 2, init_learning_rate=0.02, generator=gen(0), dtype=F64)
    assert set(meta_sgd.parameter_groups()) == {"weights", "plasticity"}
    assert [tuple(r.shape) for r in meta_sgd.learning_rates()] == [(6, 6), (1, 6)]
    torch.testing.assert_close(meta_sgd.learning_rates()[0], torch.full((6, 6), 0.02, dtype=F64))


def test_a_learning_rate_per_copy_equals_single_runs():
    rates = [0.01, 0.05]
    ensemble = GradientLearner((11, 6, 6, 1), 2, learning_rate=rates, generator=[gen(3), gen(3)], dtype=F64)
    episodes = sine_episode([gen(4), gen(4)], batches_per_task=2, batch_size=4, n_test_per_task=3, meta_batch=2,
                            dtype=F64)
    losses = ensemble.evaluate(episodes)["loss"]                              # (K, M)
    for k, rate in enumerate(rates):
        single = GradientLearner((11, 6, 6, 1), 2, learning_rate=rate, generator=gen(3), dtype=F64)
        torch.testing.assert_close(losses[k], single.evaluate(episodes.copy(k))["loss"])
    assert not torch.allclose(losses[0], losses[1])
    with pytest.raises(ValueError, match="one value per ensemble copy"):
        GradientLearner((11, 6, 1), 1, learning_rate=[0.1, 0.2, 0.3], generator=[gen(0), gen(1)])
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        GradientLearner((11, 6, 1), 1, learning_rate=-0.1, generator=gen(0))
    with pytest.raises(ValueError, match="not both"):
        GradientLearner((11, 6, 1), 1, learning_rate=0.1, init_learning_rate=0.1, generator=gen(0))
    with pytest.raises(ValueError, match="init_learning_rate must be a positive finite number"):
        MetaSGDLearner((11, 6, 1), 1, init_learning_rate=0.0, generator=gen(0))


def test_ensemble_copy_and_meta_batch_equal_single_runs():
    gens = [gen(10), gen(11)]
    ensemble = FLPLearner((11, 8, 8, 1), 2, init_plasticity=1e-3, generator=gens, dtype=F64)
    episodes = sine_episode([gen(20), gen(21)], batches_per_task=2, batch_size=4, n_test_per_task=3, dtype=F64)
    losses = ensemble.episode_loss(episodes)
    for k in range(2):
        single = FLPLearner((11, 8, 8, 1), 2, init_plasticity=1e-3, generator=gen(10 + k), dtype=F64)
        single_episode = sine_episode(gen(20 + k), batches_per_task=2, batch_size=4, n_test_per_task=3, dtype=F64)
        torch.testing.assert_close(episodes.copy(k).x_train, single_episode.x_train)
        torch.testing.assert_close(losses[k], single.episode_loss(single_episode))
    # a meta-batch of M episodes per copy: the loss is the mean of the M lifetimes
    batch = sine_episode(gens, batches_per_task=2, batch_size=4, n_test_per_task=3, meta_batch=3, dtype=F64)
    values = ensemble.evaluate(batch)["loss"]
    assert values.shape == (2, 3)
    torch.testing.assert_close(ensemble.episode_loss(batch), values.mean(dim=1))
    one = stack_episodes([batch.copy(0).copy(2), batch.copy(1).copy(2)])
    torch.testing.assert_close(ensemble.evaluate(one)["loss"], values[:, 2])


# -------------------------------------------------------------------------------------------------- samplers
def test_sine_episodes_have_the_specified_ranges_and_encoding():
    ep = sine_episode(gen(0), n_tasks=10, batches_per_task=4, batch_size=8, n_test_per_task=6, order="iid", dtype=F64)
    amp, phase = ep.info["amplitude"], ep.info["phase"]
    assert ep.x_train.shape == (40, 8, 11) and ep.y_train.shape == (40, 8, 1) and ep.x_test.shape == (60, 11)
    assert float(amp.min()) >= 0.1 and float(amp.max()) <= 5.0
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= math.pi
    x = ep.x_train[..., 10]
    assert float(x.min()) >= -5 and float(x.max()) <= 5
    one_hot = ep.x_train[..., :10]
    assert bool((one_hot.sum(-1) == 1).all())
    assert bool((one_hot.argmax(-1) == ep.task_train.unsqueeze(-1)).all())   # one-hot id = the batch's task
    expected = amp[ep.task_train].unsqueeze(-1) * torch.sin(x + phase[ep.task_train].unsqueeze(-1))
    torch.testing.assert_close(ep.y_train[..., 0], expected)
    torch.testing.assert_close(ep.y_test[..., 0], amp[ep.task_test] * torch.sin(ep.x_test[..., 10] + phase[ep.task_test]))
    assert sorted(ep.task_train.tolist()) == sorted(np.repeat(np.arange(10), 4).tolist())
    assert ep.task_train.tolist() != sorted(ep.task_train.tolist())                  # shuffled


def test_continual_order_presents_one_sinusoid_after_another():
    iid = sine_episode(gen(1), batches_per_task=3, batch_size=5, order="iid", dtype=F64)
    cont = sine_episode(gen(1), batches_per_task=3, batch_size=5, order="continual", dtype=F64)
    assert cont.task_train.tolist() == np.repeat(np.arange(10), 3).tolist()
    torch.testing.assert_close(iid.info["amplitude"], cont.info["amplitude"])    # same sinusoids, other order
    assert sorted(map(tuple, iid.x_train.reshape(-1, 11).tolist())) == sorted(map(tuple, cont.x_train.reshape(-1, 11).tolist()))


def test_few_shot_episodes_use_unseen_examples_and_disjoint_classes():
    meta_train, meta_test = mnist_pools()
    assert set(meta_train.classes).isdisjoint(meta_test.classes)
    ep = few_shot_episode(meta_test, [gen(2), gen(3)], n_way=5, k_shot=5, n_query=4, order="continual")
    assert ep.x_train.shape == (2, 25, 1, 784) and ep.x_test.shape == (2, 20, 784)
    assert ep.task_train[0].tolist() == np.repeat(np.arange(5), 5).tolist()
    for k in range(2):
        classes = ep.info["classes"][k].tolist()
        assert sorted(classes) == [5, 6, 7, 8, 9]                 # 5-way from the 5 meta-test classes
        train, test = ep.info["train_indices"][k], ep.info["test_indices"][k]
        assert len(set(train.tolist()) | set(test.tolist())) == 45   # queries are never seen in training
        torch.testing.assert_close(ep.x_train[k, :, 0], meta_test.images[train])
        torch.testing.assert_close(ep.x_test[k], meta_test.images[test])
        # label ℓ stands for pool class classes[ℓ]
        assert meta_test.labels[train].tolist() == [classes[int(label)] for label in ep.y_train[k, :, 0]]
        assert meta_test.labels[test].tolist() == [classes[int(label)] for label in ep.y_test[k]]
    iid = few_shot_episode(meta_train, gen(4), order="iid", meta_batch=3)
    assert iid.x_train.shape == (3, 25, 1, 784)
    assert set(iid.info["classes"].flatten().tolist()) <= {0, 1, 2, 3, 4}


def write_fake_omniglot(root, rng_np):
    from PIL import Image
    for split, alphabets in (("images_background", ("Alpha", "Beta")), ("images_evaluation", ("Gamma",))):
        for alphabet in alphabets:
            for character in ("character01", "character02"):
                folder = root / split / alphabet / character
                folder.mkdir(parents=True)
                for n in range(3):
                    pixels = np.full((105, 105), 255, dtype=np.uint8)
                    pixels[rng_np.integers(0, 90):, rng_np.integers(0, 90):][:10, :10] = 0   # a black stroke
                    Image.fromarray(pixels).convert("1").save(folder / f"{n:02d}.png")


def test_omniglot_loader_reads_a_user_supplied_directory(tmp_path):
    write_fake_omniglot(tmp_path, np.random.default_rng(0))
    pools = load_omniglot(tmp_path, image_size=14)
    assert set(pools) == {"background", "evaluation"}
    background, evaluation = pools["background"], pools["evaluation"]
    assert background.images.shape == (12, 196) and evaluation.images.shape == (6, 196)
    assert len(background.classes) == 4 and len(evaluation.classes) == 2
    assert set(background.classes).isdisjoint(evaluation.classes)
    assert float(background.images.max()) <= 1 and float(background.images.min()) >= 0
    assert 0 < float(background.images.mean()) < 0.5                   # inverted: ink is 1 on a 0 background
    ep = few_shot_episode(background, gen(0), n_way=3, k_shot=2, n_query=1)
    assert ep.x_train.shape == (6, 1, 196)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 4 exceeds the 3 examples"):
        few_shot_episode(background, gen(0), n_way=3, k_shot=2, n_query=2)
    with pytest.raises(FileNotFoundError, match="Omniglot directory not found"):
        load_omniglot(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="images_background"):
        load_omniglot(tmp_path / "images_background")


# ------------------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_give_clear_errors():
    weights, biases = random_layers((3, 4, 1))
    B, c, P = [torch.ones(1, 1, dtype=F64)], [torch.zeros(1, dtype=F64)], [torch.full((1, 4), 0.1, dtype=F64)]
    x, y = torch.ones(2, 3, dtype=F64), torch.ones(2, 1, dtype=F64)
    with pytest.raises(ValueError, match="beta of plastic layer 2 must lie in \\[0, 1\\]"):
        flp_step(weights, biases, B, c, P, [1.5], x, y)
    with pytest.raises(ValueError, match="plasticity P of plastic layer 2 must be >= 0"):
        flp_step(weights, biases, B, c, [-P[0]], [0.5], x, y)
    with pytest.raises(ValueError, match="feedback B of plastic layer 2 must have shape"):
        flp_step(weights, biases, [torch.ones(4, 1, dtype=F64)], c, P, [0.5], x, y)
    with pytest.raises(ValueError, match="x has 2 features"):
        flp_step(weights, biases, B, c, P, [0.5], x[:, :2], y)
    with pytest.raises(ValueError, match="one entry per plastic layer"):
        flp_step(weights, biases, B * 2, c, P, [0.5], x, y)
    learner = FLPLearner((11, 6, 1), 1, generator=gen(0))
    with pytest.raises(ValueError, match="plasticity_scale must be a finite number >= 0"):
        learner.lifetime(sine_episode(gen(0), batches_per_task=1, batch_size=2), plasticity_scale=-1.0)
    with pytest.raises(ValueError, match="beta must lie in \\[0, 1\\]"):
        learner.lifetime(sine_episode(gen(0), batches_per_task=1, batch_size=2), beta=1.2)
    with pytest.raises(ValueError, match="plastic_layers must be an integer in \\[1, 2\\]"):
        FLPLearner((11, 6, 1), 3, generator=gen(0))
    with pytest.raises(ValueError, match="init_beta must lie in \\(0, 1\\)"):
        FLPLearner((11, 6, 1), 1, init_beta=1.0, generator=gen(0))
    with pytest.raises(ValueError, match="feature reuse has exactly one plastic layer"):
        FeatureReuseLearner((11, 6, 1), 2, generator=gen(0))
    with pytest.raises(ValueError, match="episode has 11 input features but the network expects 5"):
        FLPLearner((5, 6, 1), 1, generator=gen(0)).episode_loss(sine_episode(gen(0), batches_per_task=1, batch_size=2))
    with pytest.raises(ValueError, match="order must be one of"):
        sine_episode(gen(0), order="sorted")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sine_episode(gen(0), batch_size=0)
    with pytest.raises(ValueError, match="n_way = 6 exceeds the 5 classes"):
        few_shot_episode(mnist_pools()[0], gen(0), n_way=6)
    with pytest.raises(ValueError, match="method must be one of"):
        SineConfig(method="backprop")


# ------------------------------------------------------------------------------- meta-training and resuming
TINY = dict(sizes=(11, 6, 6, 1), plastic_layers=2, batches_per_task=1, batch_size=4, n_test_per_task=2,
            episodes=6, log_every=2, init_plasticity=1e-3, eval_episodes=4)


def test_meta_training_reduces_the_loss_of_a_fixed_episode():
    learner = FLPLearner((11, 8, 8, 1), 2, init_plasticity=1e-3, generator=gen(0), dtype=F64)
    ep = sine_episode(gen(1), batches_per_task=1, batch_size=4, n_test_per_task=4, dtype=F64)
    optimizer = meta_optimizer(learner, lr=1e-2)
    before = float(learner.evaluate(ep)["loss"])
    history = meta_fit(learner, optimizer, lambda g: ep, episodes=40, log_every=40, generator=gen(2))
    after = float(learner.evaluate(ep)["loss"])
    assert after < 0.5 * before, (before, after)
    assert history["episode"] == [40] and len(history["meta_loss"]) == 1


class Killed(Exception):
    pass


def killed_after(sample, calls):
    """A sampler that dies on its ``calls + 1``-th episode, like a run killed mid-way."""
    count = {"n": 0}

    def wrapped(generator):
        count["n"] += 1
        if count["n"] > calls:
            raise Killed
        return sample(generator)
    return wrapped


@pytest.mark.parametrize("method", ["flp", "gradient", "meta_sgd"])
def test_a_killed_meta_training_resumes_to_the_uninterrupted_result(tmp_path, method):
    config = SineConfig(method=method, **TINY)
    straight = meta_train(config, seeds=[0, 1], orders=["iid", "continual"])
    checkpoint = tmp_path / "run.ckpt"
    run, optimizer, sample, data = prepare(config, seeds=[0, 1], orders=["iid", "continual"])
    with pytest.raises(Killed):
        meta_fit(run.learner, optimizer, killed_after(sample, 4), episodes=6, generator=data, log_every=2,
                 checkpoint=checkpoint, checkpoint_every=3, max_grad_norm=config.max_grad_norm)
    assert load_checkpoint(checkpoint)["state"]["episode"] == 3      # the last checkpoint before the kill
    resumed = meta_train(config, seeds=[0, 1], orders=["iid", "continual"], checkpoint=checkpoint, resume=True)
    for (name, a), (_, b) in zip(straight.learner.named_parameters(), resumed.learner.named_parameters()):
        assert torch.equal(a, b), name
    assert straight.history["meta_loss"] == resumed.history["meta_loss"]
    assert straight.history["first_meta_losses"] == resumed.history["first_meta_losses"]
    assert len(straight.history["first_meta_losses"]) == 5 and len(straight.history["first_meta_losses"][0]) == 4
    assert straight.history["episode"] == resumed.history["episode"] == [2, 4, 6]
    assert meta_test(straight) == meta_test(resumed)


def test_reproduce_writes_a_result_that_records_command_and_config(tmp_path):
    out = tmp_path / "flp_sine.json"
    small = dict(sizes=(11, 5, 5, 5, 1), plastic_layers=2, batches_per_task=1, batch_size=2, n_test_per_task=2)
    record = reproduce_flp_sine(out, episodes=2, device="cpu", progress=False, eval_episodes=2,
                                command="python -m credit_tutorial reproduce flp-sine --episodes 2", **small)
    saved = json.loads(out.read_text())
    assert saved["command"].endswith("--episodes 2") and saved["config"]["sizes"] == [11, 5, 5, 5, 1]
    assert saved["config"]["episodes"] == 2 and math.isfinite(saved["test_mse"]["mean"])
    assert record["test_mse"] == saved["test_mse"]
    with pytest.raises(FileExistsError, match="resume"):
        reproduce_flp_sine(out, episodes=2, device="cpu", progress=False, **small)
    again = reproduce_flp_sine(out, episodes=3, device="cpu", progress=False, resume=True, eval_episodes=2, **small)
    assert again["history"]["episode"][-1] == 3
    paper = SineConfig.paper()
    assert paper.sizes == (11, 300, 300, 300, 300, 300, 900, 300, 300, 1)
    assert paper.batches_per_task * paper.n_tasks == 400 and paper.episodes == 20_000


# ---------------------------------------------------------------------------------------------------- analyses
def test_update_statistics_and_interference():
    run, _, _, _ = prepare(SineConfig(method="gradient", **TINY), seeds=[0], orders="continual")
    ep = run.sampler()(rng.make_generator(9))
    stats = analysis.update_statistics(run.learner, ep)
    assert stats["cosine"].shape == (10, 2)
    # a uniform learning rate: the update is exactly along the negative gradient
    torch.testing.assert_close(stats["cosine"], torch.ones(10, 2), atol=1e-5, rtol=0)
    change = analysis.interference(run.learner, ep)
    assert change.shape == (9,) and bool((change > 0).all())
    assert bool((analysis.interference(run.learner, ep, plasticity_scale=0.0) == 0).all())   # nothing learned
    flp = prepare(SineConfig(method="flp", **TINY), seeds=[0, 1], orders="continual")[0]
    ep2 = flp.sampler()([rng.make_generator(1), rng.make_generator(2)])
    stats = analysis.update_statistics(flp.learner, ep2)
    assert stats["update_norm"].shape == (10, 2, 2) and bool((stats["cosine"].abs() <= 1 + 1e-6).all())
    with pytest.raises(ValueError, match="continual"):
        analysis.interference(flp.learner, flp.sampler("iid")([rng.make_generator(1), rng.make_generator(2)]))


def test_a_comparison_is_saved_and_reloaded(tmp_path):
    from credit_tutorial.flp.reproduce import load_comparison, run_comparison
    config = SineConfig(**{**TINY, "episodes": 2})
    summary = run_comparison(tmp_path, config, methods=("flp", "gradient"), seeds=(0,), orders=("continual",),
                             progress=False, command="test")
    assert set(summary["methods"]) == {"flp", "gradient"} and summary["command"] == "test"
    saved = json.loads((tmp_path / "summary.json").read_text())
    for method in ("flp", "gradient"):
        run = load_comparison(tmp_path, method)
        assert meta_test(run)["loss"] == saved["methods"][method]["meta_test"]["loss"]
    with pytest.raises(FileExistsError):
        run_comparison(tmp_path, config, methods=("flp",), seeds=(0,), orders=("continual",), progress=False)


def test_few_shot_meta_training_runs_on_mnist_digits():
    config = FewShotConfig(sizes=(784, 8, 5), plastic_layers=2, episodes=2, eval_episodes=2, init_plasticity=(1e-3, 0.1))
    run = meta_train(config, seeds=[0], orders=["continual"])
    result = meta_test(run, episodes=2, meta_batch=2)
    assert 0 <= result["error"][0] <= 1 and result["episodes"] == 2
    with pytest.raises(ValueError, match="end with n_way = 5 outputs"):
        FewShotConfig(sizes=(784, 8, 4))


def test_reproduce_flp_sine_is_offered_to_the_command_line(tmp_path):
    from credit_tutorial import reproduce as registry
    import credit_tutorial.flp.reproduce  # noqa: F401  (registers "flp-sine")
    out = tmp_path / "table1.json"
    result = registry.EXPERIMENTS["flp-sine"](out, device="cpu", seed=0, resume=False, progress=False, quick=True,
                                              data_root=None, checkpoint_every=None, command="reproduce flp-sine --quick")
    saved = json.loads(out.read_text())
    assert saved["command"] == "reproduce flp-sine --quick" and set(saved["final"]) == {"flp", "feature_reuse", "gradient"}
    assert saved["seeds"] == [0, 1] and result["final"] == saved["final"]
    assert (tmp_path / "table1" / "flp.ckpt").exists()


# ------------------------------------------------------------------- validation stream, sweeps, shipped results
def test_validation_episodes_come_from_their_own_stream():
    config = SineConfig(**TINY)
    run = meta_train(replace_config(config, episodes=1), seeds=[0], orders="iid")
    validation = meta_test(run, stream="validation", episodes=2, meta_batch=1)
    test = meta_test(run, stream="test", episodes=2, meta_batch=1)
    assert validation["loss"] != test["loss"]
    assert meta_test(run, stream="validation", episodes=2, meta_batch=1) == validation      # reproducible
    v_episode = run.sampler(split="train")(run.validation_generators())
    t_episode = run.sampler()(run.meta_test_generators())
    train_episode = run.sampler(split="train")(rng.make_generator(0))
    assert not torch.equal(v_episode.x_train, t_episode.x_train)
    assert not torch.equal(v_episode.x_train, train_episode.x_train)
    with pytest.raises(ValueError, match="stream must be one of"):
        meta_test(run, stream="train")


def replace_config(config, **changes):
    from dataclasses import replace
    return replace(config, **changes)


def test_a_sweep_scores_settings_on_validation_episodes_and_selects_the_best():
    from credit_tutorial.flp.reproduce import rerun_first_steps
    from credit_tutorial.flp.sweeps import select, sweep

    config = SineConfig(**{**TINY, "episodes": 3})
    settings = {"small P": {"init_plasticity": 1e-4}, "gradient": {"method": "gradient", "init_learning_rate": 0.01},
                "blows up": {"init_plasticity": 50.0}}
    record = sweep(config, settings, seeds=(0,), orders=("iid", "continual"), validation_episodes=4)
    rows = record["settings"]
    assert "diverged" in rows["blows up"] and "validation" not in rows["blows up"]
    for label in ("small P", "gradient"):
        validation = rows[label]["validation"]
        assert len(validation["on"]) == len(validation["off"]) == 2
        assert set(validation["on_by_order"]) == {"iid", "continual"}
        assert rows[label]["first_meta_losses"] == rerun_first_steps(rows[label]["config"], (0,), ("iid", "continual"))
    assert rows["small P"]["p_ratio"] and "p_ratio" not in rows["gradient"]
    best = min(("small P", "gradient"), key=lambda label: rows[label]["validation"]["on_mean"])
    assert select(record) == best
    with pytest.raises(ValueError, match="every setting of the sweep diverged"):
        select({"settings": {"x": rows["blows up"]}})


def test_comparison_variants_give_the_flp_family_its_settings_and_one_gradient_run_per_rate():
    from credit_tutorial.flp.experiment import CHAPTER_FLP
    from credit_tutorial.flp.reproduce import comparison_variants

    from credit_tutorial.flp.experiment import preset_flp_settings

    variants = comparison_variants(("flp", "feature_reuse", "gradient", "meta_sgd"), gradient_lrs=(0.003, 0.03),
                                   flp_settings=CHAPTER_FLP)
    assert list(variants) == ["flp", "feature_reuse", "gradient_lr0.003", "gradient_lr0.03", "meta_sgd"]
    assert variants["flp"] == {"method": "flp", **CHAPTER_FLP} and variants["feature_reuse"]["lr"] == CHAPTER_FLP["lr"]
    assert variants["gradient_lr0.03"] == {"method": "gradient", "init_learning_rate": 0.03}
    assert variants["meta_sgd"] == {"method": "meta_sgd"}
    # without settings (the paper's preset), every method keeps the preset's own values
    assert comparison_variants() == {m: {"method": m} for m in ("flp", "feature_reuse", "gradient")}
    assert preset_flp_settings("sine-medium") == CHAPTER_FLP and preset_flp_settings("sine-paper") is None


def _shipped_runs():
    """Every run a result file shipped with the package records: (config, seeds, orders, first meta-losses)."""
    from credit_tutorial.flp.reproduce import RESULTS

    cases = []
    for path in sorted(RESULTS.glob("sweep-*.json")):
        record = json.loads(path.read_text())
        for label, row in record["settings"].items():
            if "first_meta_losses" in row:
                cases.append(pytest.param(path, row["config"], record["seeds"], record["orders"],
                                          row["first_meta_losses"], id=f"{path.stem}:{label}"))
    for path in sorted(RESULTS.glob("*/summary.json")):
        record = json.loads(path.read_text())
        for label, entry in record["methods"].items():
            cases.append(pytest.param(path, entry["config"], record["seeds"], record["orders"],
                                      entry["history"]["first_meta_losses"], id=f"{path.parent.name}:{label}"))
    return cases


@pytest.mark.parametrize("path, config, seeds, orders, first_losses", _shipped_runs())
def test_shipped_results_record_their_command_and_reproduce_their_first_meta_steps(path, config, seeds, orders,
                                                                                  first_losses):
    from credit_tutorial.flp.reproduce import rerun_first_steps

    from credit_tutorial.flp.reproduce import RESULTS

    command = json.loads(path.read_text())["command"]
    written = path.parent if path.name == "summary.json" else path          # compare writes a directory
    assert command.startswith("python -m credit_tutorial.flp.reproduce ")
    assert f"--out src/credit_tutorial/flp/results/{written.relative_to(RESULTS)}" in command
    steps = 2
    assert len(first_losses) >= steps
    again = rerun_first_steps(config, seeds, orders, steps=steps)
    np.testing.assert_allclose(np.asarray(again), np.asarray(first_losses[:steps]), rtol=1e-4)


def test_the_shipped_full_scale_measurement_reproduces_its_first_meta_loss():
    """The one-episode run of the paper's setting: its only meta-step's loss is the test loss of the first lifetime
    (before any update), which a forward pass re-computes."""
    from credit_tutorial.flp.reproduce import RESULTS, config_from_record

    record = json.loads((RESULTS / "flp_sine_cpu_1_episode.json").read_text())
    assert record["command"].startswith("python -m credit_tutorial.flp.reproduce flp-sine --episodes 1")
    assert record["config"]["episodes"] == 1 and record["history"]["episode"] == [1]
    config = config_from_record({"task": "sine", **record["config"]})
    run, _, sample, data = prepare(config, seeds=[record["seed"]], orders=record["order"])
    with torch.no_grad():
        loss = run.learner.episode_loss(sample(data))
    np.testing.assert_allclose(float(loss), record["history"]["meta_loss"][0], rtol=1e-4)


def test_skip_diverged_drops_only_the_lifetimes_that_blow_up():
    """A copy whose lifetime blows up gets a zero meta-gradient for that step; the other copies train exactly as
    they would alone."""
    config = SineConfig(**{**TINY, "episodes": 4, "log_every": 2, "init_plasticity": 1e-3})

    def make():
        run, optimizer, sample, data = prepare(config, seeds=[0, 1], orders="iid")
        with torch.no_grad():
            run.learner.plasticity_raw[0][0].fill_(400.0)    # P ≈ 0.6 on copy 0's hidden layer: it blows up
        return run, optimizer, sample, data

    run, optimizer, sample, data = make()
    with pytest.raises(MetaTrainingDiverged, match="skip such lifetimes"):
        meta_fit(run.learner, optimizer, sample, episodes=4, generator=data, log_every=2)
    # meta-testing counts the lifetimes that blow up and averages the others
    tested = meta_test(run, episodes=4, meta_batch=2)
    assert tested["diverged"][0] >= 1 and tested["diverged"][1] == 0
    assert tested["loss"][1] is not None and math.isfinite(tested["loss"][1])
    json.dumps(tested, allow_nan=False)                                   # a result file can hold it
    run, optimizer, sample, data = make()
    history = meta_fit(run.learner, optimizer, sample, episodes=4, generator=data, log_every=2, skip_diverged=True,
                       max_grad_norm=1.0)
    assert history["skipped"][-1][0] >= 1 and history["skipped"][-1][1] == 0
    assert all(math.isfinite(v) for v in np.asarray(history["meta_loss"], dtype=float)[:, 1])
    assert all(torch.isfinite(p).all() for p in run.learner.parameters())
    # copy 1 is exactly the single run with seed 1
    single, single_optimizer, single_sample, single_data = prepare(config, seeds=[1], orders="iid")
    single_history = meta_fit(single.learner, single_optimizer, single_sample, episodes=4, generator=single_data,
                              log_every=2, max_grad_norm=1.0)
    np.testing.assert_allclose(np.asarray(history["meta_loss"], dtype=float)[:, 1], single_history["meta_loss"], rtol=1e-6)
    for (name, p), q in zip(run.learner.named_parameters(), single.learner.parameters()):
        torch.testing.assert_close(p[1], q, msg=name)


def test_result_files_are_compact_atomic_and_read_back_equal(tmp_path):
    from credit_tutorial.flp.reproduce import save_result

    record = {"command": "x", "β": [0.5, 0.25], "nested": {"losses": [[1.0, 2.0], [3.0, None]], "rows": [{"a": 1}]}}
    path = save_result(record, tmp_path / "r.json")
    text = path.read_text()
    assert json.loads(text) == record and '"losses": [[1.0, 2.0], [3.0, null]]' in text
    with pytest.raises(ValueError):
        save_result({"loss": float("nan")}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
