"""The Lansdell et al. experiments: autoencoder helpers (chapter 6) and ``reproduce fig2`` / ``fig3`` (quick runs)."""

import json

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.cli import main
from credit_tutorial.data import Dataset
from credit_tutorial.experiments import lansdell
from credit_tutorial.rules import LearnedFeedback

AE_SIZES = (784, 16, 2, 16, 784)
AE_HIDDEN = ["tanh", "identity", "tanh"]


def test_bottleneck_index_finds_the_narrowest_hidden_layer():
    net = MLP(AE_SIZES, AE_HIDDEN, "sigmoid", generator=rng.make_generator(0))
    assert lansdell.bottleneck_index(net) == 1
    assert lansdell.bottleneck_index(MLP((5, 4, 3, 3, 2), generator=rng.make_generator(0))) == 1  # first of ties
    with pytest.raises(ValueError, match="no hidden layer"):
        lansdell.bottleneck_index(MLP((5, 2), generator=rng.make_generator(0)))


def test_latent_codes_are_the_linear_bottleneck_activity():
    net = MLP(AE_SIZES, AE_HIDDEN, "sigmoid", generator=rng.make_generator(0), dtype=torch.float64)
    x = torch.rand(7, 784, generator=rng.make_generator(1), dtype=torch.float64)
    codes = lansdell.latent_codes(net, x)
    assert codes.shape == (7, 2)
    W1, W2 = net.weights[0].detach(), net.weights[1].detach()
    b1, b2 = net.biases[0].detach(), net.biases[1].detach()
    expected = torch.tanh(x @ W1.T + b1) @ W2.T + b2  # h_2 = W_2 tanh(W_1 x + b_1) + b_2 (identity bottleneck)
    torch.testing.assert_close(codes, expected)
    assert net(x).shape == (7, 784)
    assert lansdell.latent_codes(net, x, layer=0).shape == (7, 16)
    with pytest.raises(ValueError, match="hidden layer index"):
        lansdell.latent_codes(net, x, layer=3)


def test_latent_codes_of_an_ensemble_match_single_networks():
    generators = [rng.make_generator(s) for s in (3, 4, 5)]
    ensemble = MLP(AE_SIZES, AE_HIDDEN, "sigmoid", generator=generators)
    x = torch.rand(6, 784, generator=rng.make_generator(9))
    codes = lansdell.latent_codes(ensemble, x)
    assert codes.shape == (3, 6, 2)
    single = MLP(AE_SIZES, AE_HIDDEN, "sigmoid", generator=rng.make_generator(4))
    torch.testing.assert_close(codes[1], lansdell.latent_codes(single, x))


def test_autoencoding_uses_the_images_as_float_targets():
    x_train, x_test = torch.rand(10, 784), torch.rand(4, 784)
    images = Dataset(x_train, torch.zeros(10, dtype=torch.int64), x_test, torch.zeros(4, dtype=torch.int64),
                     source="toy", n_classes=2)
    data = lansdell.autoencoding(images)
    assert torch.equal(data.y_train, x_train) and torch.equal(data.y_test, x_test)
    assert data.n_classes is None and data.y_train.is_floating_point() and "autoencoding" in data.source


def test_knn_accuracy_separated_random_and_scaled_codes():
    g = rng.make_generator(0)
    labels = torch.arange(300) % 3
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    codes = centres[labels] + 0.5 * torch.randn(300, 2, generator=g)
    test_labels = torch.arange(90) % 3
    test_codes = centres[test_labels] + 0.5 * torch.randn(90, 2, generator=g)
    assert lansdell.knn_accuracy(codes, labels, test_codes, test_labels, k=5).item() == 1.0
    # codes that carry no information about the labels score near chance (1/3), far below 1
    noise = torch.randn(300, 2, generator=g)
    chance = lansdell.knn_accuracy(noise, labels, torch.randn(90, 2, generator=g), test_labels, k=15).item()
    assert chance < 0.6
    # standardisation: stretching one latent dimension does not change the score
    stretch = torch.tensor([1000.0, 1.0])
    torch.testing.assert_close(lansdell.knn_accuracy(noise * stretch, labels, test_codes * stretch, test_labels),
                               lansdell.knn_accuracy(noise, labels, test_codes, test_labels))
    # an ensemble of codes gives one score per copy
    both = lansdell.knn_accuracy(torch.stack([codes, noise]), labels, torch.stack([test_codes, test_codes]),
                                 test_labels, k=5)
    assert both.shape == (2,) and both[0].item() == 1.0


@pytest.mark.parametrize("k", [0, 301, 2.5])
def test_knn_accuracy_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be an integer"):
        lansdell.knn_accuracy(torch.zeros(300, 2), torch.zeros(300, dtype=torch.int64), torch.zeros(5, 2),
                              torch.zeros(5, dtype=torch.int64), k=k)


def test_knn_accuracy_needs_one_label_per_code():
    with pytest.raises(ValueError, match="one label per code"):
        lansdell.knn_accuracy(torch.zeros(10, 2), torch.zeros(9, dtype=torch.int64), torch.zeros(5, 2),
                              torch.zeros(5, dtype=torch.int64), k=3)


def test_select_copies_keeps_the_chosen_copies_in_every_layout():
    history = {"step": [0, 10], "test_error": [[0.9, 0.8, 0.7], [0.5, 0.4, 0.3]],
               "delta_angle": [[[90.0, 80.0, 70.0], [60.0, 50.0, 40.0]], [[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]]]}
    picked = lansdell.select_copies(history, [2, 0])
    assert picked["step"] == [0, 10]
    assert picked["test_error"] == [[0.7, 0.9], [0.3, 0.5]]
    assert picked["delta_angle"] == [[[70.0, 90.0], [40.0, 60.0]], [[7.0, 9.0], [4.0, 6.0]]]
    assert lansdell.select_copies(history, 1)["test_error"] == [[0.8], [0.4]]
    with pytest.raises(ValueError, match="out of range"):
        lansdell.select_copies(history, [3])


def test_single_copy_equals_the_ensemble_copy():
    ensemble = MLP((6, 5, 4, 3), "sigmoid", generator=[rng.make_generator(s) for s in (0, 1, 2)],
                   dtype=torch.float64)
    x = torch.randn(8, 6, generator=rng.make_generator(7), dtype=torch.float64)
    single = lansdell.single_copy(ensemble, 2)
    assert single.ensemble_size is None and single.weights[0].dtype == torch.float64
    torch.testing.assert_close(single(x), ensemble(x)[2])
    with torch.no_grad():
        single.weights[0].add_(1.0)  # an independent copy: the ensemble is untouched
    assert not torch.allclose(single(x), ensemble(x)[2])
    with pytest.raises(ValueError, match="copy must be an integer"):
        lansdell.single_copy(ensemble, 3)
    with pytest.raises(ValueError, match="not an ensemble"):
        lansdell.single_copy(single, 0)


def test_feedback_learnability_matches_the_first_order_noise_formula():
    net = MLP((8, 6, 5, 3), "tanh", generator=rng.make_generator(0), dtype=torch.float64)
    x = torch.randn(64, 8, generator=rng.make_generator(1), dtype=torch.float64)
    y = torch.randn(64, 3, generator=rng.make_generator(2), dtype=torch.float64)
    report = lansdell.feedback_learnability(net, "mse", x, y, c=1e-3, generator=rng.make_generator(3), draws=400)
    assert report["dimension"] == [5, 3]
    # first order: λ̂_l − g_l = (gᵀz)z_l − g_l, whose power is n_l Σ_k ‖g_k‖² + ‖g_l‖² (Gaussian z, all layers at once)
    power = report["gradient_power"]
    for l, n in enumerate((6, 5)):
        predicted = (n * sum(power) + power[l]) / power[l]
        assert report["noise_to_signal"][l] == pytest.approx(predicted, rel=0.1)
    layerwise = lansdell.feedback_learnability(net, "mse", x, y, c=1e-3, generator=rng.make_generator(3), draws=400,
                                               perturb="layerwise")
    for l, n in enumerate((6, 5)):  # only the layer's own units add noise
        assert layerwise["noise_to_signal"][l] == pytest.approx(n + 1, rel=0.1)
        assert layerwise["noise_to_signal"][l] < report["noise_to_signal"][l]
    # the regressor statistics come from backprop's δ_{l+1}
    trace = net.trace(x)
    top_delta = trace.output - y                                          # δ_3 of a linear output
    mu = torch.linalg.eigvalsh(top_delta.T @ top_delta / 64)
    assert report["sgd_bound"][1] == pytest.approx(2 / (32 * mu.max().item()))
    assert report["effective_rank"][1] == pytest.approx((mu.sum() ** 2 / (mu ** 2).sum()).item())
    assert 1 <= report["rank99"][1] <= 3 and report["slowest_steps"][1] >= 1.0


def test_feedback_learnability_rejects_bad_arguments():
    net = MLP((4, 3, 2), generator=rng.make_generator(0))
    x, y = torch.zeros(5, 4), torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="perturb"):
        lansdell.feedback_learnability(net, "mse", x, y, c=0.1, generator=rng.make_generator(0), perturb="some")
    with pytest.raises(ValueError, match="draws"):
        lansdell.feedback_learnability(net, "mse", x, y, c=0.1, generator=rng.make_generator(0), draws=1)
    ensemble = MLP((4, 3, 2), generator=[rng.make_generator(0), rng.make_generator(1)])
    with pytest.raises(ValueError, match="single network"):
        lansdell.feedback_learnability(ensemble, "mse", x, y, c=0.1, generator=rng.make_generator(0))


def _reproduce(name, out, *extra):
    return main(["reproduce", name, "--quick", "--device", "cpu", "--no-progress", "--out", str(out), *extra])


def test_reproduce_fig2_quick_writes_a_valid_result(tmp_path, capsys):
    out = tmp_path / "fig2.json"
    assert _reproduce("fig2", out) == 0
    record = json.loads(out.read_text())
    assert record["command"] == f"python -m credit_tutorial reproduce fig2 --quick --device cpu --no-progress " \
                                f"--out {out}"
    assert record["experiment"] == "fig2" and record["quick"] is True and record["n_train"] == 256
    assert set(record["final"]) == {"bp", "fa", "np c=0.0001", "np c=0.001", "np c=0.01", "np c=0.1"}
    for entry in record["final"].values():
        assert 0.0 <= entry["test_error"] <= 1.0
        assert len(entry["relative_error"]) == 2 and len(entry["delta_angle"]) == 2
    assert max(record["final"]["bp"]["delta_angle"]) < 0.1  # backprop against itself: 0° up to float32 rounding
    np_run = record["runs"]["np"]
    assert np_run["rule_options"]["c"] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert np_run["history"]["step"] == [0, 3, 6] and len(np_run["history"]["test_error"][-1]) == 4
    assert record["settings"]["lr"] == pytest.approx(0.0128) and record["deviations"]
    assert record["paper"]["test_error"]["np c=0.1"] == 0.159
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"] == str(out)


def test_reproduce_fig3_quick_writes_a_valid_result(tmp_path):
    out = tmp_path / "fig3.json"
    assert _reproduce("fig3", out) == 0
    record = json.loads(out.read_text())
    assert record["command"].startswith("python -m credit_tutorial reproduce fig3 --quick")
    assert set(record["final"]) == {"bp", "fa", "np", "adam"}
    assert record["settings"]["sizes"] == [784, 16, 2, 16, 784]
    assert record["runs"]["adam"]["optimizer"] == "adam" and record["runs"]["bp"]["optimizer"] == "sgd"
    for name, entry in record["final"].items():
        assert entry["min_test_loss"] <= entry["test_loss"]
        assert entry["min_test_loss_per_batch_of_32"] == pytest.approx(32 * entry["min_test_loss"])
        assert len(entry["delta_angle"]) == 3
    assert record["runs"]["np"]["rule_options"]["feedback"] == "sgd"
    assert "train_error" not in record["runs"]["bp"]["history"]  # a regression task has no error rate


def _without_timing(record):
    """The result minus wall-clock entries, which differ between any two runs."""
    record = json.loads(json.dumps(record))
    for run in record["runs"].values():
        run.pop("wall_seconds_this_session")
        run["history"].pop("seconds")
    record.pop("command")
    return record


def test_reproduce_fig2_resumes_after_a_kill(tmp_path, monkeypatch):
    options = dict(device="cpu", seed=0, progress=False, quick=True, data_root=None, checkpoint_every=2,
                   command="test")
    uninterrupted = lansdell.reproduce_fig2(tmp_path / "a.json", resume=False, **options)

    original_step, calls = LearnedFeedback.step, {"n": 0}

    def killed_at_step_5(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(LearnedFeedback, "step", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        lansdell.reproduce_fig2(tmp_path / "b.json", resume=False, **options)
    assert not (tmp_path / "b.json").exists()  # nothing half-written
    assert (tmp_path / "b.np.ckpt").exists()   # the learned-feedback run left its step-4 checkpoint
    monkeypatch.setattr(LearnedFeedback, "step", original_step)
    resumed = lansdell.reproduce_fig2(tmp_path / "b.json", resume=True, **options)
    assert _without_timing(resumed) == _without_timing(uninterrupted)
    assert json.loads((tmp_path / "b.json").read_text())["final"] == resumed["final"]
