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
from credit_tutorial.flp.learners import FeatureReuseLearner, FLPLearner, GradientLearner
from credit_tutorial.flp.lifetime import flp_step, sgd_step, task_loss, weight_gradients
from credit_tutorial.flp.meta import meta_fit, meta_optimizer
from credit_tutorial.flp.reproduce import reproduce_flp_sine
from credit_tutorial.flp.sine import sine_episode

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Lifetimes are long chains of tiny operations: extra threads only add synchronisation (and on a shared CPU
    they spin), so these tests run on one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def test_meta_gradient_through_a_tiny_gradient_based_lifetime_passes_gradcheck():
    learner = GradientLearner((3, 4, 3, 1), 2, init_learning_rate=0.1, generator=gen(8), dtype=F64)
    _gradcheck_learner(learner, tiny_episode())


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


@pytest.mark.parametrize("method", ["flp", "gradient"])
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
