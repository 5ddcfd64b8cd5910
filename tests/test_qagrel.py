"""Q-AGREL against what it claims: autograd on ½δ² through the selected action (float64), max-Boltzmann
statistics, equal changes to feedforward and feedback synapses, emerging symmetry, and clear errors."""

import math
from pathlib import Path

import pytest
import torch

from credit_tutorial import MLP, rng
from credit_tutorial.experiment import TrainConfig, build, run
from credit_tutorial.metrics import compare_with_backprop
from credit_tutorial.rules import QAGREL, RULES, get_rule
from credit_tutorial.rules.qagrel import (SelectedActionSquaredError, feedback_signals, four_factor_update,
                                          rewards, select_actions)
from credit_tutorial.reward_learning import (class_discovery, epochs_to_criterion, feedback_symmetry,
                                             lr_range_test, training_reward)

from conftest import make_classification

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


def relu_net(sizes=(7, 6, 5, 4), seed=0, ensemble=None, bias=True, init="uniform:0.5", dtype=F64):
    generator = (rng.make_generator(seed) if ensemble is None
                 else [rng.make_generator(seed + k) for k in range(ensemble)])
    return MLP(sizes, "relu", "identity", generator=generator, dtype=dtype, bias=bias, init=init)


def autograd_grads(net, x, y, actions):
    """∂(½δ²)/∂θ, batch mean, by autograd through the selected output only."""
    net.zero_grad()
    SelectedActionSquaredError().per_sample(net(x), y, actions).mean(dim=-1).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    return grads


def rule_grads(rule, x, y):
    rule.network.zero_grad()
    credit = rule.step(x, y)
    grads = [p.grad.clone() for p in rule.network.parameters()]
    rule.network.zero_grad()
    return credit, grads


# ---------------------------------------------------------------------------------------------------- equivalence
def test_symmetric_qagrel_equals_autograd_on_many_random_networks_batches_and_actions():
    cases = rng.make_generator(2024)
    for case in range(60):
        depth = int(torch.randint(1, 5, (), generator=cases))  # 1 to 4 hidden layers
        sizes = tuple(int(v) for v in torch.randint(2, 9, (depth + 2,), generator=cases))
        batch = int(torch.randint(1, 17, (), generator=cases))
        bias = bool(case % 2)
        net = relu_net(sizes, seed=case, bias=bias)
        rule = QAGREL(net, generator=rng.make_generator(10_000 + case), epsilon=float(case % 5) / 4)
        x = torch.randn(batch, sizes[0], generator=cases, dtype=F64)
        y = torch.randint(0, sizes[-1], (batch,), generator=cases)
        credit, mine = rule_grads(rule, x, y)
        expected = autograd_grads(net, x, y, credit.extras["actions"])
        for got, want in zip(mine, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_given_actions_match_autograd_and_the_explicit_four_factor_update():
    net = relu_net((8, 7, 6, 5), bias=False)
    rule = QAGREL(net, generator=rng.make_generator(1))
    x, y = torch.randn(11, 8, dtype=F64), torch.randint(0, 5, (11,))
    actions = torch.randint(0, 5, (11,))
    credit = rule.compute_credit(x, y, actions=actions)
    assert torch.equal(credit.extras["actions"], actions) and not credit.extras["explored"].any()
    expected = autograd_grads(net, x, y, actions)
    # the four factors, by hand: pre h_{l-1}, gate ReLU'(a_l), feedback fb_l, δ = r - Q_s
    rpe = rewards(actions, y, F64) - net(x).gather(-1, actions[:, None])[:, 0]
    torch.testing.assert_close(credit.extras["rpe"], rpe)
    for layer, record in enumerate(credit.trace.layers):
        gate, fb = credit.extras["gates"][layer], credit.extras["feedback"][layer]
        change = four_factor_update(record.presynaptic, gate, fb, rpe, lr=0.3)
        torch.testing.assert_close(change, -0.3 * expected[layer], rtol=0, atol=1e-12)
        if gate is None:  # the linear output layer: no gate, and the feedback is z = one_hot(s)
            assert layer == len(credit.trace.layers) - 1
            torch.testing.assert_close(fb, torch.nn.functional.one_hot(actions, 5).to(F64))
            gate = torch.ones_like(fb)
        # one synapse, written out: ΔW[j, i] = α ⟨δ pre_i g_j fb_j⟩
        j, i = 1, 2
        single = 0.3 * (rpe * record.presynaptic[:, i] * gate[:, j] * fb[:, j]).mean()
        torch.testing.assert_close(change[j, i], single, rtol=0, atol=1e-12)
    # the rule's own .grad is the same four-factor update (autograd's sign: −ΔW/α)
    net.zero_grad()
    rule.write_gradients(credit)
    for layer, record in enumerate(credit.trace.layers):
        reference = four_factor_update(record.presynaptic, credit.extras["gates"][layer],
                                       credit.extras["feedback"][layer], credit.extras["rpe"])
        torch.testing.assert_close(net.weights[layer].grad, -reference, rtol=0, atol=1e-12)


def test_feedback_comes_from_the_selected_unit_only_and_is_gated_by_relu():
    net = relu_net((5, 6, 4, 3))
    x = torch.randn(20, 5, dtype=F64)
    trace = net.trace(x)
    gates = [(r.pre_activation > 0).to(F64) for r in trace.layers[:-1]]
    actions = torch.randint(0, 3, (20,))
    W2, W3 = net.weights[1].detach(), net.weights[2].detach()
    fb = feedback_signals(actions, [W2.T, W3.T], gates, 3)
    torch.testing.assert_close(fb[2], torch.nn.functional.one_hot(actions, 3).to(F64))
    torch.testing.assert_close(fb[1], W3[actions])  # column s of W′_3 = W_3ᵀ
    torch.testing.assert_close(fb[0], (gates[1] * W3[actions]) @ W2)
    # a closed gate stops the feedback: a unit whose every input unit is silent receives nothing
    closed = torch.zeros_like(gates[1])
    assert torch.count_nonzero(feedback_signals(actions, [W2.T, W3.T], [gates[0], closed], 3)[0]) == 0


def test_compare_with_backprop_uses_the_selected_action():
    net = relu_net((9, 8, 7, 4))
    x, y = torch.randn(30, 9, dtype=F64), torch.randint(0, 4, (30,))
    rule = QAGREL(net, generator=rng.make_generator(3), epsilon=1.0)
    state = rule.generator.get_state()
    report = compare_with_backprop(rule, x, y)
    assert torch.equal(rule.generator.get_state(), state)  # measuring does not perturb the action stream
    assert max(report["delta_angle"] + report["update_angle"]) < 1e-4
    credit = rule.compute_credit(x, y)
    # the output error is nonzero at the selected unit only, and equals −δ there
    expected = -credit.extras["rpe"][:, None] * torch.nn.functional.one_hot(credit.extras["actions"], 4)
    torch.testing.assert_close(credit.output_delta, expected.to(F64))
    fixed = QAGREL(net, generator=rng.make_generator(3), feedback="fixed")
    assert min(compare_with_backprop(fixed, x, y)["delta_angle"]) > 10  # random feedback is not backprop


def test_ensemble_copy_equals_the_single_run_with_the_same_generator():
    x, y = torch.randn(3, 12, 6, dtype=F64), torch.randint(0, 4, (3, 12))
    ensemble = relu_net((6, 5, 4), seed=0, ensemble=3)
    rule = QAGREL(ensemble, generator=[rng.make_generator(50 + k) for k in range(3)], epsilon=[0.0, 0.5, 1.0],
                  temperature=[1.0, 0.5, 2.0], feedback="learned")
    credit, grads = rule_grads(rule, x, y)
    for k, (eps, temp) in enumerate([(0.0, 1.0), (0.5, 0.5), (1.0, 2.0)]):
        single = relu_net((6, 5, 4), seed=k)
        solo = QAGREL(single, generator=rng.make_generator(50 + k), epsilon=eps, temperature=temp, feedback="learned")
        torch.testing.assert_close(solo.feedback[0].detach(), rule.feedback[0][k].detach())
        solo_credit, solo_grads = rule_grads(solo, x[k], y[k])
        assert torch.equal(solo_credit.extras["actions"], credit.extras["actions"][k])
        for a, b in zip(solo_grads, grads):
            torch.testing.assert_close(a, b[k])


# ---------------------------------------------------------------------------------------------------- actions
def test_action_selection_statistics():
    n = 200_000
    q = torch.tensor([0.3, -0.2, 1.1, 0.6, 0.0], dtype=F64)
    q_batch = q.expand(n, 5)
    generator = rng.make_generator(7)
    for epsilon, temperature in [(0.1, 1.0), (0.3, 0.5)]:
        actions, explored = select_actions(q_batch, epsilon, temperature, generator)
        # explore fraction ≈ ε (binomial sd √(ε(1−ε)/n) ≈ 0.001; 5 sd)
        assert abs(explored.double().mean().item() - epsilon) < 5 * math.sqrt(epsilon * (1 - epsilon) / n)
        assert torch.all(actions[~explored] == 2)  # greedy choices are argmax Q
        # explored choices are distributed as softmax(Q/T)
        sampled = actions[explored]
        frequencies = torch.bincount(sampled, minlength=5).double() / sampled.numel()
        p = torch.softmax(q / temperature, dim=0)
        sd = torch.sqrt(p * (1 - p) / sampled.numel())
        assert torch.all((frequencies - p).abs() < 5 * sd), (frequencies, p)
        # overall: P(s) = (1−ε)[s = argmax] + ε softmax(Q/T)_s
        overall = torch.bincount(actions, minlength=5).double() / n
        expected = epsilon * p + (1 - epsilon) * torch.nn.functional.one_hot(torch.tensor(2), 5)
        assert torch.all((overall - expected).abs() < 5 * torch.sqrt(expected * (1 - expected) / n))


def test_epsilon_zero_is_greedy_and_one_always_samples():
    q = torch.randn(500, 6, generator=rng.make_generator(0))
    greedy, explored = select_actions(q, 0.0, 1.0, rng.make_generator(1))
    assert torch.equal(greedy, q.argmax(dim=-1)) and not explored.any()
    sampled, explored = select_actions(q, 1.0, 1.0, rng.make_generator(1))
    assert explored.all() and (sampled != q.argmax(dim=-1)).any()
    # huge Q differences (no overflow) and a tiny temperature: sampling becomes greedy
    big = torch.tensor([[300.0, -300.0, 0.0]]).expand(100, 3)
    cold, _ = select_actions(big, 1.0, 1e-3, rng.make_generator(2))
    assert torch.all(cold == 0)


def test_reward_and_rpe():
    q = torch.tensor([[0.2, 0.9, -0.1], [0.5, 0.4, 0.3]], dtype=F64)
    labels = torch.tensor([1, 2])
    objective = SelectedActionSquaredError()
    torch.testing.assert_close(objective.rpe(q, labels), torch.tensor([1 - 0.9, 0 - 0.5], dtype=F64))
    actions = torch.tensor([0, 2])
    torch.testing.assert_close(objective.per_sample(q, labels, actions),
                               0.5 * torch.tensor([0.2 ** 2, 0.7 ** 2], dtype=F64))
    torch.testing.assert_close(objective.output_gradient(q, labels, actions),
                               torch.tensor([[0.2, 0, 0], [0, 0, -0.7]], dtype=F64))


# ---------------------------------------------------------------------------------------------------- feedback
def test_feedforward_and_feedback_synapses_receive_equal_changes():
    net = relu_net((10, 8, 6, 4), init="uniform:0.3")
    rule = QAGREL(net, generator=rng.make_generator(4), feedback="learned", epsilon=0.2)
    optimizer = torch.optim.SGD(rule.parameters(), lr=0.5)
    assert {id(p) for p in rule.feedback_parameters()} <= {id(p) for g in optimizer.param_groups for p in g["params"]}
    data = make_classification(n_features=10, n_classes=4, dtype=F64)
    difference = [W.detach() - B.detach().mT for W, B in zip(net.weights[1:], rule.feedback)]
    for step in range(30):
        before_w = [W.detach().clone() for W in net.weights[1:]]
        before_b = [B.detach().clone() for B in rule.feedback]
        optimizer.zero_grad()
        rule.step(data.x_train[step * 8:(step + 1) * 8], data.y_train[step * 8:(step + 1) * 8])
        for W, B in zip(net.weights[1:], rule.feedback):
            assert torch.equal(B.grad, W.grad.mT)  # the same local change, written once for both
        optimizer.step()
        for W, B, w0, b0 in zip(net.weights[1:], rule.feedback, before_w, before_b):
            torch.testing.assert_close(B.detach() - b0, (W.detach() - w0).mT, rtol=0, atol=1e-14)
    for W, B, d0 in zip(net.weights[1:], rule.feedback, difference):
        torch.testing.assert_close(W.detach() - B.detach().mT, d0, rtol=0, atol=1e-13)  # W − W′ᵀ is constant
    assert sum(float((W.detach() - w).abs().sum()) for W, w in zip(net.weights[1:], before_w)) > 0


def test_fixed_feedback_never_changes_and_symmetric_has_no_copy():
    net = relu_net()
    fixed = QAGREL(net, generator=rng.make_generator(0), feedback="fixed")
    assert fixed.feedback_parameters() == [] and len(list(fixed.parameters())) == len(list(net.parameters()))
    assert "feedback.0" in fixed.state_dict()
    before = [B.clone() for B in fixed.feedback]
    optimizer = torch.optim.SGD(fixed.parameters(), lr=0.5)
    x, y = torch.randn(16, 7, dtype=F64), torch.randint(0, 4, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        fixed.step(x, y)
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, fixed.feedback))
    symmetric = QAGREL(net)
    assert symmetric.feedback is None
    for W, B in zip(net.weights[1:], symmetric.feedback_matrices()):
        assert torch.equal(B, W.detach().mT)
    assert symmetric.requirements["weight transport"] and not fixed.requirements["weight transport"]


def test_learned_feedback_aligns_with_the_transposed_weights():
    """Training on a learnable task grows W while W − W′ᵀ stays fixed, so W′ turns towards Wᵀ."""
    data = make_classification(n_train=512, n_features=12, n_classes=4, dtype=torch.float32)
    config = TrainConfig(task="mnist", rule="qagrel", sizes=(12, 32, 16, 4), hidden_activation="relu",
                         init="uniform:0.1", lr=0.5, epochs=30, batch_size=32, device="cpu",
                         rule_options={"feedback": "learned", "epsilon": 0.1})
    rule, _, _ = build(config, seeds=[0, 1])
    start = feedback_symmetry(rule)["feedback_angle"]
    result = run(config, seeds=[0, 1], data=data, metrics={"symmetry": feedback_symmetry})
    angles = result.history["feedback_angle"]  # [evaluation][layer][copy]
    assert angles[0] == start  # the run starts from the same independent draw
    for layer in range(2):
        for k in range(2):
            assert start[layer][k] > 75  # independent random matrices: nearly orthogonal
            middle, end = angles[len(angles) // 2][layer][k], angles[-1][layer][k]
            assert end < middle < start[layer][k] and end < 0.7 * start[layer][k], (start, angles[-1])
    assert result.final("test_error")[0] < 0.3  # and it learned the task


# ---------------------------------------------------------------------------------------------------- training
def test_registered_and_trains_through_the_experiment_runner():
    assert RULES["qagrel"] is QAGREL and get_rule("qagrel") is QAGREL
    data = make_classification(n_train=512, n_features=12, n_classes=4)
    config = TrainConfig(rule="qagrel", sizes=(12, 32, 4), hidden_activation="relu", init="uniform:0.1",
                         lr=0.5, epochs=30, batch_size=32, device="cpu", rule_options={"epsilon": 0.05})
    result = run(config, data=data, metrics={"reward": training_reward, "classes": class_discovery})
    # 128 test samples: 0.2 leaves room for a different random stream (five seeds ended at 0.11-0.16)
    assert result.history["test_error"][0] > 0.4 and result.final("test_error") < 0.2
    assert result.history["train_reward"][-1] > 0.85
    frequencies = result.history["selection_frequency"][-1]
    assert len(frequencies) == 4 and abs(sum(frequencies) - 1) < 1e-5
    assert epochs_to_criterion(result.history, 0.8) is not None
    assert epochs_to_criterion(result.history, 1.0 - 1e-9) is None or result.final("test_error") == 0


def test_checkpoint_resume_is_exact(tmp_path):
    data = make_classification(n_train=128, n_features=12, n_classes=4)
    config = TrainConfig(rule="qagrel", sizes=(12, 16, 4), hidden_activation="relu", init="uniform:0.1",
                         lr=0.5, epochs=4, batch_size=16, device="cpu", rule_options={"feedback": "learned"})
    whole = run(config, data=data, metrics={"reward": training_reward})
    path = tmp_path / "ck.pt"
    run(TrainConfig(**{**config.__dict__, "epochs": 2}), data=data, metrics={"reward": training_reward},
        checkpoint=path)
    resumed = run(config, data=data, metrics={"reward": training_reward}, checkpoint=path, resume=True)
    assert resumed.history["test_error"] == whole.history["test_error"]
    first = whole.history["train_reward"][0]
    assert first is None or math.isnan(first)  # no trials before the first step (the history stores NaN as None)
    assert resumed.history["train_reward"][1:] == whole.history["train_reward"][1:]


def test_epochs_to_criterion_and_range_test():
    history = {"epoch": [0, 1, 2, 3], "test_error": [[0.9, 0.8], [0.5, 0.3], [0.1, 0.2], [0.05, None]]}
    assert epochs_to_criterion(history, 0.7) == [2, 1]
    assert epochs_to_criterion(history, 0.9) == [2, None]
    with pytest.raises(ValueError, match="accuracy"):
        epochs_to_criterion(history, 1.5)
    data = make_classification(n_train=256, n_features=12, n_classes=4)
    config = TrainConfig(rule="qagrel", sizes=(12, 16, 4), hidden_activation="relu", init="uniform:0.1",
                         batch_size=32, device="cpu")
    result = lr_range_test(config, [0.01, 0.1, 1.0], steps_per_lr=8, seeds=[0, 1], data=data)
    assert result["lr"] == [0.01, 0.1, 1.0] and len(result["reward"]) == 3 and len(result["reward"][0]) == 2
    with pytest.raises(ValueError, match="increase"):
        lr_range_test(config, [0.1, 0.01], steps_per_lr=1, data=data)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("epsilon", [-0.1, 1.5, float("nan"), [0.1, 2.0]])
def test_bad_epsilon(epsilon):
    net = relu_net(ensemble=2 if isinstance(epsilon, list) else None)
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]"):
        QAGREL(net, epsilon=epsilon)
    with pytest.raises(ValueError, match="epsilon"):
        select_actions(torch.zeros(3, 4), epsilon, 1.0, rng.make_generator(0))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        QAGREL(relu_net(), temperature=temperature)


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "identity"])
def test_non_relu_hidden_activation_is_refused(hidden):
    net = MLP((5, 4, 3), hidden, generator=rng.make_generator(0))
    with pytest.raises(ValueError, match="hidden activation must be 'relu'"):
        QAGREL(net)


def test_other_bad_configurations():
    with pytest.raises(ValueError, match="output activation must be 'identity'"):
        QAGREL(MLP((5, 4, 3), "relu", "sigmoid", generator=rng.make_generator(0)))
    with pytest.raises(ValueError, match="feedback must be one of"):
        QAGREL(relu_net(), feedback="transposed")
    with pytest.raises(ValueError, match="objective"):
        QAGREL(relu_net(), "cross_entropy")
    with pytest.raises(ValueError, match="copies"):
        QAGREL(relu_net(ensemble=3), epsilon=[0.1, 0.2])
    rule = QAGREL(relu_net(), generator=rng.make_generator(0))
    x = torch.randn(4, 7, dtype=F64)
    with pytest.raises(ValueError, match="integer class labels"):
        rule.step(x, torch.randn(4, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        rule.step(x, torch.tensor([0, 1, 2, 7]))
    with pytest.raises(ValueError, match=r"actions labels must lie in \[0, 3\]"):
        rule.compute_credit(x, torch.tensor([0, 1, 2, 3]), actions=torch.tensor([0, 4, 1, 1]))
    with pytest.raises(ValueError, match="generator lists 2"):
        select_actions(torch.zeros(3, 5, 4), 0.1, 1.0, [rng.make_generator(0), rng.make_generator(1)])


def test_table1_reproduction_quick_writes_and_resumes(tmp_path, monkeypatch):
    from credit_tutorial import reward_learning
    from credit_tutorial.reproduce import EXPERIMENTS

    assert EXPERIMENTS["qagrel-table1"] is reward_learning.reproduce_table1
    out = tmp_path / "table1.json"
    record = reward_learning.reproduce_table1(out, quick=True, device="cpu", command="test")
    assert out.exists() and not (tmp_path / "table1.ckpt").exists()
    assert [r["block"] for r in record["runs"]] == [b[0] for b in reward_learning.TABLE1_BLOCKS]
    assert all(len(r["final_accuracy"]) == 2 for r in record["runs"]) and set(record["final"]) == {
        f"{b[0]}, 784-30-10" for b in reward_learning.TABLE1_BLOCKS}
    # resume: finished runs are kept, nothing is trained again
    monkeypatch.setattr("credit_tutorial.experiment.run", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = reward_learning.reproduce_table1(out, quick=True, device="cpu", resume=True, command="test")
    assert again["runs"] == record["runs"]


def test_stored_table1_runs_restart_as_recorded():
    """book/ch09_qagrel_table1.json (the 50-epoch runs chapter 9 reads) came from this code: its first epoch of the
    784-300-10 backprop and symmetric Q-AGREL blocks is trained again and must give the stored test errors
    (backprop to rounding; Q-AGREL within a point, since a last-bit difference can flip a near-tied choice)."""
    import json
    from dataclasses import replace

    stored = json.loads((Path(__file__).resolve().parents[1] / "book" / "ch09_qagrel_table1.json").read_text())
    settings = stored["settings"]
    assert settings["epochs"] == 50 and settings["seeds"] == [0, 1, 2] and settings["n_train"] is None
    runs = {(r["block"], len(r["sizes"])): r for r in stored["runs"]}
    base = TrainConfig(task="mnist", rule="bp", sizes=(784, 300, 10), hidden_activation="relu",
                       init=settings["init"], bias=settings["bias"], lr=0.1, epochs=1,
                       batch_size=settings["batch_size"], device="cpu")
    for block, config, tolerance in (
            ("error-backprop", base, 1e-4),
            ("Q-AGREL, symmetric feedback", replace(base, rule="qagrel", lr=0.5,
                                                    rule_options={"feedback": "symmetric",
                                                                  "epsilon": settings["epsilon"]}), 0.01)):
        record = runs[(block, 3)]
        assert record["lr"] == config.lr and record["history"]["epoch"][1] == 1.0
        again = run(config, seeds=settings["seeds"])
        assert again.history["epoch"][1] == 1.0
        for stored_error, error in zip(record["history"]["test_error"][1], again.history["test_error"][1]):
            assert abs(stored_error - error) <= tolerance, (block, stored_error, error)
