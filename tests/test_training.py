import json
import math

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.checkpoint import load_checkpoint, save_json
from credit_tutorial.experiment import TrainConfig, build, run
from credit_tutorial.optim import EnsembleSGD
from credit_tutorial.rules import Backprop
from credit_tutorial.training import TrainingDiverged, evaluate, fit

from conftest import make_classification


def small_config(**overrides):
    values = dict(sizes=(12, 10, 8, 4), hidden_activation="tanh", lr=0.05, epochs=3, batch_size=16,
                  device="cpu", dtype="float64")
    values.update(overrides)
    return TrainConfig(**values)


def test_fit_records_a_plain_history(small_task):
    result = run(small_config(eval_every=8), data=small_task)
    h = result.history
    assert h["step"][0] == 0 and h["step"][-1] == 3 * 16  # 256 samples / 16 = 16 steps per epoch
    assert all(isinstance(v, float) for v in h["test_error"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    json.dumps(h)  # plain floats and ints only


def test_ensemble_of_seeds_equals_single_runs(small_task):
    seeds = [0, 1, 2, 3]
    for rule in ("bp", "fa", "dfa"):
        ensemble = run(small_config(rule=rule), seeds=seeds, data=small_task)
        for k, seed in enumerate(seeds):
            single = run(small_config(rule=rule, seed=seed), data=small_task)
            for key in ("test_loss", "train_loss", "test_error"):
                got = [point[k] for point in ensemble.history[key]]
                assert got == pytest.approx(single.history[key], rel=1e-9, abs=1e-12), (rule, seed, key)


def test_ensemble_of_learning_rates_equals_single_runs(small_task):
    lrs = [0.01, 0.05, 0.2]
    ensemble = run(small_config(rule="fa"), lrs=lrs, data=small_task)
    for k, lr in enumerate(lrs):
        single = run(small_config(rule="fa", lr=lr), data=small_task)
        got = [point[k] for point in ensemble.history["test_loss"]]
        assert got == pytest.approx(single.history["test_loss"], rel=1e-9)


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(tmp_path, small_task):
    config = small_config(rule="fa", epochs=2)
    reference = run(config, data=small_task).history

    rule, optimizer, data_gen = build(config, device=torch.device("cpu"))
    data = small_task.to(dtype=torch.float64)

    class Killed(Exception):
        pass

    def kill_at_step_21(rule_, data_):
        if len(history.get("step", [])) and history["step"][-1] >= 21:
            raise Killed
        return {}

    history = {}
    path = tmp_path / "run.ckpt"
    with pytest.raises(Killed):  # a run killed mid-epoch, after its checkpoint at step 20
        fit(rule, optimizer, data, epochs=2, batch_size=16, generator=data_gen, eval_every=7,
            metrics={"kill": kill_at_step_21}, checkpoint=path, checkpoint_every=10, history=history)
    assert load_checkpoint(path)["position"]["step"] == 20
    # a fresh process: rebuild everything from the configuration, then resume
    rule, optimizer, data_gen = build(config, device=torch.device("cpu"))
    resumed = fit(rule, optimizer, data, epochs=2, batch_size=16, generator=data_gen, eval_every=7,
                  checkpoint=path, checkpoint_every=10, resume=True)
    default_eval = run(small_config(rule="fa", epochs=2, eval_every=7), data=small_task).history
    assert resumed["step"] == default_eval["step"]
    assert resumed["test_loss"] == pytest.approx(default_eval["test_loss"], rel=1e-12)
    assert resumed["test_loss"][-1] == pytest.approx(reference["test_loss"][-1], rel=1e-12)
    assert not list(tmp_path.glob("*.tmp"))


def test_divergence_stops_with_a_clear_message(small_task):
    big = small_task.to(dtype=torch.float64)
    big = type(big)(big.x_train * 50, big.y_train, big.x_test, big.y_test, source="scaled", n_classes=4)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+ .*Lower the learning rate \(now 50"):
        run(small_config(lr=50.0, hidden_activation="relu", epochs=20), data=big)


def test_divergence_names_the_ensemble_copy(small_task):
    big = small_task.to(dtype=torch.float64)
    big = type(big)(big.x_train * 50, big.y_train, big.x_test, big.y_test, source="scaled", n_classes=4)
    with pytest.raises(TrainingDiverged, match="ensemble copy 1"):
        run(small_config(hidden_activation="relu", epochs=20), lrs=[1e-4, 50.0], data=big)


@pytest.mark.parametrize("overrides, message", [
    (dict(lr=0.0), "lr must be a positive"),
    (dict(lr=-1.0), "lr must be a positive"),
    (dict(rule="backprop"), "rule must be one of"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(task="cifar"), "task must be one of"),
    (dict(epochs=0), "epochs must be a positive"),
])
def test_bad_configuration(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_bad_fit_arguments(small_task):
    rule = Backprop(MLP((12, 4), generator=rng.make_generator(0)))
    opt = torch.optim.SGD(rule.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fit(rule, opt, small_task, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        fit(rule, opt, small_task, batch_size=8)
    with pytest.raises(ValueError, match="input features"):
        fit(Backprop(MLP((5, 4), generator=rng.make_generator(0))), opt, small_task, epochs=1)
    with pytest.raises(ValueError, match="only 3 outputs"):
        fit(Backprop(MLP((12, 3), generator=rng.make_generator(0))), opt, small_task, epochs=1)
    nan_data = type(small_task)(small_task.x_train * float("nan"), small_task.y_train, small_task.x_test,
                                small_task.y_test, source="nan", n_classes=4)
    with pytest.raises(ValueError, match="x_train contains NaN"):
        fit(rule, opt, nan_data, epochs=1)
    with pytest.raises(ValueError, match="seeds and lrs must pair up"):
        run(small_config(), seeds=[0, 1], lrs=[0.1], data=small_task)
    with pytest.raises(ValueError, match="lrs must be a positive"):
        run(small_config(), lrs=[0.1, -0.1], data=small_task)


def test_ensemble_sgd_uses_one_rate_per_copy():
    p = torch.nn.Parameter(torch.ones(3, 2, 2))
    p.grad = torch.ones(3, 2, 2)
    EnsembleSGD([p], lr=[0.1, 0.2, 0.3]).step()
    torch.testing.assert_close(p.detach()[:, 0, 0], torch.tensor([0.9, 0.8, 0.7]))
    with pytest.raises(ValueError, match="lr must be a positive"):
        EnsembleSGD([p], lr=[0.1, 0.0, 0.3])


def test_evaluate_in_chunks_equals_one_pass():
    data = make_classification(n_train=50, n_test=300)
    net = MLP((12, 6, 4), generator=rng.make_generator(0))
    one = evaluate(net, data.x_test, data.y_test, Backprop(net).objective)
    chunked = evaluate(net, data.x_test, data.y_test, Backprop(net).objective, chunk_size=64)
    assert one["error"] == pytest.approx(chunked["error"]) and one["loss"] == pytest.approx(chunked["loss"])


def test_save_json_is_atomic_and_refuses_nan(tmp_path):
    path = tmp_path / "out.json"
    save_json({"a": 1}, path)
    with pytest.raises(ValueError):
        save_json({"a": math.nan}, path)
    assert json.loads(path.read_text()) == {"a": 1}  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_sweep_masks_diverged_copies_and_trains_the_rest(small_task):
    big = small_task.to(dtype=torch.float64)
    big = type(big)(big.x_train * 50, big.y_train, big.x_test, big.y_test, source="scaled", n_classes=4)
    config = small_config(hidden_activation="relu", epochs=3)
    sweep = run(config, lrs=[1e-4, 50.0, 1e-3], data=big, on_divergence="mask")
    last = sweep.history["test_loss"][-1]
    assert last[1] is None and last[0] is not None and last[2] is not None
    json.dumps(sweep.history, allow_nan=False)  # None, not NaN: still valid JSON
    for k, lr in ((0, 1e-4), (2, 1e-3)):  # the survivors trained exactly as they would have alone
        single = run(small_config(hidden_activation="relu", epochs=3, lr=lr), data=big)
        assert [p[k] for p in sweep.history["test_loss"]] == pytest.approx(single.history["test_loss"], rel=1e-9)
    with pytest.raises(ValueError, match="needs an ensemble"):
        run(config, data=big, on_divergence="mask")
    with pytest.raises(ValueError, match="on_divergence must be"):
        run(config, lrs=[1e-4], data=big, on_divergence="ignore")
