"""The teacher–student task: seeded, standardized, realizable by a student of the teacher's architecture, and
registered as the ``teacher`` task of the experiment runner and the command line."""

import json
import math

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.cli import main
from credit_tutorial.experiment import TASKS, TrainConfig, run, stream
from credit_tutorial.tasks import (TEACHER_NOISE, TEACHER_SEED_OFFSET, fraction_unexplained, make_teacher_student,
                                   random_teacher, teacher_student, teacher_task)

SIZES = (6, 12, 8, 3)


def test_returns_a_regression_dataset_with_float_targets():
    data = teacher_student(200, 100, SIZES, "sigmoid", 0.1, rng.make_generator(0))
    assert data.x_train.shape == (200, 6) and data.x_test.shape == (100, 6)
    assert data.y_train.shape == (200, 3) and data.y_test.shape == (100, 3)
    assert data.y_train.is_floating_point() and data.n_classes is None
    assert "teacher" in data.source and "6-12-8-3" in data.source


def test_same_generator_seed_same_task_and_different_seed_different_task():
    a = teacher_student(50, 20, SIZES, "tanh", 0.1, rng.make_generator(3))
    b = teacher_student(50, 20, SIZES, "tanh", 0.1, rng.make_generator(3))
    c = teacher_student(50, 20, SIZES, "tanh", 0.1, rng.make_generator(4))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))


def test_inputs_are_standard_gaussian():
    data = teacher_student(20_000, 10, SIZES, "sigmoid", 0.0, rng.make_generator(1))
    mean, var = data.x_train.mean(0), data.x_train.var(0)
    # standard errors: 1/sqrt(n) for the mean, sqrt(2/n) for the variance (n = 20,000): 6 of them is 0.04 / 0.06
    assert mean.abs().max() < 0.05 and (var - 1).abs().max() < 0.07


def test_clean_training_targets_are_standardized_per_output():
    data = teacher_student(500, 50, SIZES, "sigmoid", 0.0, rng.make_generator(2), dtype=torch.float64)
    torch.testing.assert_close(data.y_train.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(data.y_train.std(0), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_targets_are_the_teachers_outputs_and_a_student_of_its_architecture_represents_them():
    data, teacher = make_teacher_student(300, 100, SIZES, ["tanh", "sigmoid"], 0.0, rng.make_generator(5),
                                         dtype=torch.float64)
    student = MLP(SIZES, ["tanh", "sigmoid"], generator=rng.make_generator(9), dtype=torch.float64)
    student.load_state_dict(teacher.state_dict())  # same architecture: the teacher's weights fit the student
    with torch.no_grad():
        torch.testing.assert_close(student(data.x_train), data.y_train, rtol=0, atol=1e-12)
        torch.testing.assert_close(student(data.x_test), data.y_test, rtol=0, atol=1e-12)


def test_noise_sets_the_floor_of_the_test_loss():
    noise, n_test = 0.3, 40_000
    data, teacher = make_teacher_student(100, n_test, SIZES, "sigmoid", noise, rng.make_generator(6),
                                         dtype=torch.float64)
    with torch.no_grad():
        loss = 0.5 * (teacher(data.x_test) - data.y_test).square().sum(-1)   # ½‖ε‖² per sample
    floor = 0.5 * 3 * noise ** 2
    standard_error = 0.5 * noise ** 2 * math.sqrt(2 * 3) / math.sqrt(n_test)  # ½σ² χ²_3: sd ½σ²√6 per sample
    assert abs(loss.mean().item() - floor) < 5 * standard_error
    # the same loss as a fraction of the targets' variance is noise²/(1 + noise²)
    assert fraction_unexplained(loss.mean().item(), 3, noise) == pytest.approx(noise ** 2 / (1 + noise ** 2),
                                                                               rel=0.05)


def test_predicting_zero_leaves_about_all_variance_unexplained():
    data = teacher_student(2000, 20_000, SIZES, "sigmoid", TEACHER_NOISE, rng.make_generator(7), dtype=torch.float64)
    loss = 0.5 * data.y_test.square().sum(-1).mean().item()
    assert fraction_unexplained(loss, 3) == pytest.approx(1.0, abs=0.1)


def test_gain_makes_the_teacher_more_nonlinear():
    def linear_fit_residual(gain):
        data = teacher_student(4000, 2000, (10, 40, 1), "sigmoid", 0.0, rng.make_generator(8), gain=gain,
                               dtype=torch.float64)
        X = torch.cat([data.x_train, torch.ones(4000, 1, dtype=torch.float64)], 1)
        w = torch.linalg.lstsq(X, data.y_train).solution
        Xt = torch.cat([data.x_test, torch.ones(2000, 1, dtype=torch.float64)], 1)
        return ((Xt @ w - data.y_test).square().mean() / data.y_test.var()).item()
    assert linear_fit_residual(4.0) > 3 * linear_fit_residual(1.0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_train=0), "n_train"), (dict(n_test=-1), "n_test"), (dict(n_train=2.5), "n_train"),
    (dict(noise=-0.1), "noise"), (dict(noise=float("nan")), "noise"), (dict(generator=None), "generator"),
    (dict(gain=0.0), "gain"), (dict(generator=[rng.make_generator(0)]), "generator"),
])
def test_bad_arguments_name_themselves(kwargs, name):
    arguments = dict(n_train=10, n_test=10, sizes=SIZES, activation="sigmoid", noise=0.1,
                     generator=rng.make_generator(0))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=name):
        teacher_student(**arguments)


def test_random_teacher_is_a_fixed_network():
    teacher = random_teacher(SIZES, "relu", generator=rng.make_generator(0))
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.activations[-1].name == "identity"


def test_registered_as_the_teacher_task_of_the_runner():
    assert TASKS["teacher"] is teacher_task
    config = TrainConfig(task="teacher", sizes=SIZES, hidden_activation="sigmoid", lr=0.1, epochs=2, batch_size=16,
                         n_train=128, n_test=64, device="cpu")
    result = run(config, seeds=[0, 1])
    assert "test_error" not in result.history            # a regression: losses only
    first, last = result.history["test_loss"][0], result.history["test_loss"][-1]
    assert all(b < a for a, b in zip(first, last))        # both students learn
    assert "teacher-student" in result.data_source


def test_the_teacher_does_not_share_a_stream_with_the_student():
    config = TrainConfig(task="teacher", sizes=SIZES, n_train=16, n_test=16, device="cpu", seed=0)
    teacher = random_teacher(SIZES, "sigmoid", generator=rng.make_generator(0 + TEACHER_SEED_OFFSET))
    student = MLP(SIZES, "sigmoid", generator=stream(config.seed, "init"))
    assert not torch.allclose(teacher.weights[0], student.weights[0])
    # and the runner's task is exactly that teacher's
    data = teacher_task(config)
    again = teacher_student(16, 16, SIZES, "sigmoid", TEACHER_NOISE, rng.make_generator(TEACHER_SEED_OFFSET))
    assert torch.equal(data.y_train, again.y_train)


def test_command_line_trains_on_the_teacher_task(tmp_path, capsys):
    out = tmp_path / "teacher.json"
    code = main(["train", "--task", "teacher", "--sizes", "6,12,8,3", "--epochs", "1", "--n-train", "64",
                 "--n-test", "32", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert "test_loss" in summary and "test_error" not in summary
    record = json.loads(out.read_text())
    assert record["config"]["task"] == "teacher"
