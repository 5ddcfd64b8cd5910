"""The recurrent chapter's package: delayed XOR, the RNN, truncated BPTT, FA and learned feedback through time."""

import json
import math

import pytest
import torch

from credit_tutorial import rng
from credit_tutorial.optim import EnsembleSGD
from credit_tutorial.recurrent import (BPTT, RNN, FeedbackAlignmentThroughTime, LearnedFeedbackThroughTime,
                                       ReadoutOnly, StreamConfig, angles_through_time, backward_through_time,
                                       delayed_xor, make_rule, perturb_through_time, regressors, train_stream,
                                       transposed_weights, window_loss)
from credit_tutorial.recurrent.task import BIT, CUE

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest.one_thread


# ---------------------------------------------------------------------------------------------- delayed XOR
def test_delayed_xor_shapes_delays_and_truth_table():
    lags, cue_lag = (4, 2), 1
    stream = delayed_xor(6, 300, rng.make_generator(0), input_lags=lags, cue_lag=cue_lag)
    assert stream.inputs.shape == (300, 6, 2)
    assert stream.targets.shape == (300, 6, 1)
    assert stream.responses.shape == (300, 6)
    assert stream.inputs.dtype == stream.targets.dtype == torch.float32
    times, streams = stream.responses.nonzero(as_tuple=True)
    assert len(times) > 30  # mean gap 20: about 6 · 300 / 20 = 90 trials
    a = stream.inputs[times - lags[0], streams, BIT]
    b = stream.inputs[times - lags[1], streams, BIT]
    assert set(a.tolist()) <= {-1.0, 1.0} and set(b.tolist()) <= {-1.0, 1.0}
    assert torch.equal(stream.inputs[times - cue_lag, streams, CUE], torch.ones_like(a))
    xor = torch.where(a != b, 1.0, -1.0)  # +1 when the bits differ
    assert torch.equal(stream.targets[times, streams, 0], xor)
    # every truth-table row occurs, and nothing else is in the stream: targets only at responses, one cue and
    # two bits per trial
    rows = {(x, y) for x, y in zip(a.tolist(), b.tolist())}
    assert rows == {(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)}
    assert int((stream.targets[..., 0] != 0).sum()) == len(times)
    assert int(stream.inputs[..., CUE].sum()) == len(times)
    assert int((stream.inputs[..., BIT] != 0).sum()) == 2 * len(times)


def test_delayed_xor_trials_never_overlap():
    stream = delayed_xor(50, 2000, rng.make_generator(3), input_lags=(3, 2), cue_lag=1, mean_gap=4.0)
    for k in range(50):
        times = stream.responses[:, k].nonzero().flatten()
        assert bool((times.diff() >= 4).all())
    rate = stream.responses.float().mean().item()
    assert 1 / 4 - 0.01 < rate < 1 / 4 + 0.01  # mean_gap 4 with minimum gap 4: a response every 4 steps


def test_delayed_xor_is_seeded_and_ensembles_match_single_draws():
    one = delayed_xor(4, 100, rng.make_generator(7))
    again = delayed_xor(4, 100, rng.make_generator(7))
    other = delayed_xor(4, 100, rng.make_generator(8))
    assert torch.equal(one.inputs, again.inputs) and torch.equal(one.targets, again.targets)
    assert not torch.equal(one.inputs, other.inputs)
    both = delayed_xor(4, 100, [rng.make_generator(7), rng.make_generator(8)])
    assert both.inputs.shape == (2, 100, 4, 2)
    assert torch.equal(both.inputs[0], one.inputs) and torch.equal(both.inputs[1], other.inputs)
    assert torch.equal(both.targets[1], other.targets)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_lags=(2, 2)), "input_lags must differ"),
    (dict(input_lags=(0, 2)), "input_lags"),
    (dict(input_lags=(3,)), "input_lags"),
    (dict(cue_lag=0), "cue_lag"),
    (dict(mean_gap=3.0), "mean_gap"),
])
def test_delayed_xor_rejects_bad_delays(kwargs, message):
    with pytest.raises(ValueError, match=message):
        delayed_xor(2, 50, rng.make_generator(0), **kwargs)


@pytest.mark.parametrize("n_streams, length, name", [(0, 10, "n_streams"), (2, 0, "length"), (2.5, 10, "n_streams")])
def test_delayed_xor_rejects_bad_sizes(n_streams, length, name):
    with pytest.raises(ValueError, match=name):
        delayed_xor(n_streams, length, rng.make_generator(0))


# ---------------------------------------------------------------------------------------------- BPTT
def _window(seed=0, n_streams=5, steps=7, warm=9, dtype=F64, ensemble=None):
    """A network, a window from the middle of a stream, and the carried state entering it."""
    net = RNN(generator=rng.make_generator(seed) if ensemble is None
              else [rng.make_generator(seed + k) for k in range(ensemble)], dtype=dtype)
    stream = delayed_xor(n_streams, warm + steps, rng.make_generator(seed + 100), mean_gap=5.0, dtype=dtype)
    with torch.no_grad():
        h0 = net.trace(stream.inputs[:warm]).final_state
    x, y = stream.window(warm, steps)
    return net, x, y, h0


def _autograd(net, x, y, h0):
    net.zero_grad()
    trace = net.trace(x, h0.detach())
    window_loss(trace.outputs, y).mean(dim=-1).sum().backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad()
    return grads


def _rule_grads(rule, x, y, h0):
    rule.network.zero_grad()
    rule.step(x, y, h0)
    grads = {name: p.grad.clone() for name, p in rule.network.named_parameters()}
    rule.network.zero_grad()
    return grads


def test_truncated_bptt_equals_autograd_in_float64():
    net, x, y, h0 = _window()
    expected = _autograd(net, x, y, h0)
    got = _rule_grads(BPTT(net), x, y, h0)
    assert set(got) == set(expected) == {"input_weight", "recurrent_weight", "hidden_bias", "readout_weight",
                                          "readout_bias"}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)
    assert expected["recurrent_weight"].abs().max() > 1e-4  # the test is not comparing zeros


def test_bptt_deltas_are_the_errors_of_the_preactivations():
    """δ_t = ∂L/∂a_t = tanh'(a_t) ⊙ ∂L/∂h_t, with ∂L/∂h_t the total derivative (autograd through a zero noise)."""
    net, x, y, h0 = _window(seed=2)
    trace = net.trace(x, h0)
    _, deltas = BPTT(net).errors(trace, y)
    noise = torch.zeros_like(trace.hidden, requires_grad=True)
    (dh,) = torch.autograd.grad(window_loss(net.trace(x, h0, noise).outputs, y).sum(), noise)
    torch.testing.assert_close(deltas, dh * net.derivatives(trace), rtol=1e-10, atol=1e-12)
    by_hand = backward_through_time(trace.outputs - y, net.derivatives(trace), *transposed_weights(net))
    torch.testing.assert_close(deltas, by_hand)


def test_ensemble_copies_equal_single_networks():
    net, x, y, h0 = _window(ensemble=3)
    grads = _rule_grads(BPTT(net), x, y, h0)
    for k in range(3):
        single = RNN(generator=rng.make_generator(k), dtype=F64)
        for name, p in single.named_parameters():
            assert torch.equal(p, getattr(net, name)[k]), name  # copy k is initialised as the single network
        expected = _rule_grads(BPTT(single), x, y, h0[k])
        for name in expected:
            torch.testing.assert_close(grads[name][k], expected[name], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------- FA through time
def test_feedback_alignment_with_transposed_weights_is_bptt():
    net, x, y, h0 = _window(seed=4)
    fa = FeedbackAlignmentThroughTime(net, generator=rng.make_generator(9))
    fa_random = _rule_grads(fa, x, y, h0)
    V_T, W_T = transposed_weights(net)
    fa.readout_feedback.copy_(V_T)
    fa.recurrent_feedback.copy_(W_T)
    fa_transport = _rule_grads(fa, x, y, h0)
    bptt = _rule_grads(BPTT(net), x, y, h0)
    for name in bptt:
        torch.testing.assert_close(fa_transport[name], bptt[name], rtol=1e-10, atol=1e-12)
    # with random feedback the readout update is still exact, the recurrent one is not
    torch.testing.assert_close(fa_random["readout_weight"], bptt["readout_weight"])
    assert not torch.allclose(fa_random["recurrent_weight"], bptt["recurrent_weight"])
    angles = angles_through_time(fa, x, y, h0)
    assert angles["delta_angle"].shape == (7,)
    assert float(angles["delta_angle"].min()) < 1e-4  # the transported copy: 0° at every step


def test_feedback_alignment_draws_feedback_with_the_weights_variance():
    net = RNN(n_hidden=200, generator=rng.make_generator(0))
    fa = FeedbackAlignmentThroughTime(net, generator=rng.make_generator(1))
    assert fa.recurrent_feedback.shape == (200, 200) and fa.readout_feedback.shape == (200, 1)
    assert abs(fa.recurrent_feedback.std().item() / net.recurrent_weight.std().item() - 1) < 0.05
    exact_readout = FeedbackAlignmentThroughTime(net, generator=rng.make_generator(1), transport_readout=True)
    assert torch.equal(exact_readout.feedback()[0], net.readout_weight.detach().T)


def test_readout_only_trains_the_readout_alone():
    net, x, y, h0 = _window(seed=5)
    grads = _rule_grads(ReadoutOnly(net), x, y, h0)
    assert grads["recurrent_weight"].abs().max() == 0 and grads["input_weight"].abs().max() == 0
    torch.testing.assert_close(grads["readout_weight"], _autograd(net, x, y, h0)["readout_weight"])


# ---------------------------------------------------------------------------------------------- node perturbation
def _true_hidden_gradient(net, x, y, h0):
    noise = torch.zeros(x.shape[0], x.shape[1], net.n_hidden, dtype=x.dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(window_loss(net.trace(x, h0, noise).outputs, y).sum(), noise)
    return grad  # per sample: the loss is a sum of per-sample terms


@pytest.mark.parametrize("fraction, causal", [(1.0, True), (1.0, False), (0.25, True)])
def test_node_perturbation_through_time_is_unbiased(fraction, causal):
    """E[λ̂_t] = ∂L/∂h_t (autograd, through the readout and every later step) for small c, within 5 standard
    errors measured from the samples themselves; with p < 1 only when divided by the actual variance p c²."""
    net = RNN(n_hidden=6, generator=rng.make_generator(0), dtype=F64)
    stream = delayed_xor(3, 12, rng.make_generator(1), mean_gap=5.0, dtype=F64)
    with torch.no_grad():
        h0 = net.trace(stream.inputs[:5]).final_state
    x, y = stream.window(5, 7)
    expected = _true_hidden_gradient(net, x, y, h0)            # (T, 3, 6)
    draws = 6000                                                # replicate the 3 streams: one noisy pass
    xs, ys, hs = x.repeat(1, draws, 1), y.repeat(1, draws, 1), h0.repeat(draws, 1)
    trace = net.trace(xs, hs)
    estimate = perturb_through_time(net, trace, ys, 1e-4, rng.make_generator(2), perturbed_fraction=fraction,
                                    causal=causal)
    samples = estimate.lambdas.reshape(7, draws, 3, 6)
    mean, se = samples.mean(dim=1), samples.std(dim=1) / math.sqrt(draws)
    assert bool(((mean - expected).abs() <= 5 * se + 1e-6).all())
    relative = ((mean - expected).norm() / expected.norm()).item()
    assert relative < 0.15
    if fraction < 1:  # dividing by c² (the nominal variance) instead shrinks the estimate by the factor p
        nominal = perturb_through_time(net, trace, ys, 1e-4, rng.make_generator(2), perturbed_fraction=fraction,
                                       causal=causal, noise_scale="nominal")
        torch.testing.assert_close(nominal.lambdas, fraction * estimate.lambdas)


def test_causal_estimate_has_lower_variance_and_ignores_earlier_losses():
    net = RNN(n_hidden=8, generator=rng.make_generator(0), dtype=F64)
    stream = delayed_xor(200, 7, rng.make_generator(1), mean_gap=4.0, dtype=F64)
    x, y = stream.inputs, stream.targets
    trace = net.trace(x)
    plain = perturb_through_time(net, trace, y, 1e-3, rng.make_generator(5), causal=False)
    causal = perturb_through_time(net, trace, y, 1e-3, rng.make_generator(5), causal=True)
    torch.testing.assert_close(plain.noise, causal.noise)
    # the last step's estimate keeps only ℓ_(T−1): its spread is far smaller
    assert causal.lambdas[-1].var() < 0.5 * plain.lambdas[-1].var()
    torch.testing.assert_close(causal.lambdas[0], plain.lambdas[0])  # nothing to drop at t = 0


def test_regressors_pair_each_step_with_the_error_it_affects():
    e = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 1)           # e_t = t
    d = 10 + torch.arange(3.0).view(3, 1, 1).expand(3, 2, 4)      # δ_t = 10 + t
    z = regressors(e, d)
    assert z.shape == (3, 2, 5)
    assert torch.equal(z[..., 0], e[..., 0])
    assert torch.equal(z[0, :, 1:], d[1]) and torch.equal(z[1, :, 1:], d[2])
    assert torch.equal(z[2, :, 1:], torch.zeros(2, 4))            # δ_T = 0: truncated window
    assert torch.equal(regressors(e, d, "same")[..., 1:], d)
    with pytest.raises(ValueError, match="pairing"):
        regressors(e, d, "previous")


def test_learned_feedback_at_the_transport_is_bptt():
    net, x, y, h0 = _window(seed=6)
    rule = LearnedFeedbackThroughTime(net, generator=rng.make_generator(3), c=1e-4, feedback="sgd",
                                      feedback_lr=1e-3, feedback_init="zeros")
    rule.learner.B.copy_(torch.cat(transposed_weights(net), dim=-1))
    got = _rule_grads(rule, x, y, h0)
    bptt = _rule_grads(BPTT(net), x, y, h0)
    for name in bptt:
        torch.testing.assert_close(got[name], bptt[name], rtol=1e-10, atol=1e-12)


def test_transport_is_the_regression_fixed_point_only_with_the_right_pairing():
    """At B = [Vᵀ Wᵀ] the mean regression residual B z_t − λ̂_t vanishes (within 5 standard errors) when λ̂_t is
    paired with (e_t, δ_(t+1)); pairing it with (e_t, δ_t), as the original script did, leaves a residual."""
    net = RNN(n_hidden=6, generator=rng.make_generator(0), dtype=F64)
    stream = delayed_xor(3, 12, rng.make_generator(1), mean_gap=5.0, dtype=F64)
    with torch.no_grad():
        h0 = net.trace(stream.inputs[:5]).final_state
    x, y = stream.window(5, 7)
    draws = 4000
    xs, ys, hs = x.repeat(1, draws, 1), y.repeat(1, draws, 1), h0.repeat(draws, 1)
    rule = LearnedFeedbackThroughTime(net, generator=rng.make_generator(2), c=1e-4, feedback="sgd",
                                      feedback_lr=1e-3, feedback_init="zeros")
    B = torch.cat(transposed_weights(net), dim=-1)
    rule.learner.B.copy_(B)
    credit = rule.compute_credit(xs, ys, hs)
    lambdas = credit.extras["perturbation"].lambdas
    for pairing, vanishes in (("next", True), ("same", False)):
        residual = (regressors(credit.output_errors, credit.deltas, pairing) @ B.mT - lambdas).reshape(7, draws, 3, 6)
        mean, se = residual.mean(dim=1), residual.std(dim=1) / math.sqrt(draws)
        if vanishes:
            assert bool((mean.abs() <= 5 * se + 1e-9).all())
        else:
            assert bool((mean.abs() > 10 * se).any())


def test_learned_feedback_aligns_on_a_fixed_network():
    """Learning B alone (W fixed): after 80 windows of ridge regression the errors through time point far closer
    to BPTT's than random feedback's do, at every unrolled step (measured numbers: 14° to 53° vs 86° to 93°)."""
    net = RNN(generator=rng.make_generator(0))
    rule = LearnedFeedbackThroughTime(net, generator=rng.make_generator(1), c=0.1, feedback="ridge",
                                      feedback_init="zeros", gamma=10.0)
    fa = FeedbackAlignmentThroughTime(net, generator=rng.make_generator(1))
    stream = delayed_xor(50, 7 * 81, rng.make_generator(2))
    h = None
    for w in range(80):
        x, y = stream.window(7 * w, 7)
        credit = rule.step(x, y, h)
        h = credit.trace.final_state
    net.zero_grad()
    x, y = stream.window(7 * 80, 7)
    learned = angles_through_time(rule, x, y, h)["delta_angle"]
    random = angles_through_time(fa, x, y, h)["delta_angle"]
    assert bool((learned < random - 20).all()) and learned.mean() < 40, (learned, random)
    assert bool((random > 70).all()), random


def test_warmup_learns_feedback_without_writing_gradients():
    net, x, y, h0 = _window(seed=7, dtype=torch.float32)
    rule = make_rule("np", net, generator=rng.make_generator(0), c=0.1, feedback_lr=1e-3, warmup_steps=1)
    before = rule.learner.B.clone()
    rule.step(x, y, h0)
    assert all(p.grad is None for p in net.parameters())
    assert not torch.equal(rule.learner.B, before)
    rule.step(x, y, h0)
    assert all(p.grad is not None for p in net.parameters())


# ---------------------------------------------------------------------------------------------- bad inputs
def test_bad_rule_options_and_windows_are_rejected():
    net, x, y, h0 = _window(dtype=torch.float32)
    with pytest.raises(ValueError, match="c .*noise standard deviation"):
        make_rule("np", net, c=0.0, feedback_lr=1e-3)
    with pytest.raises(ValueError, match="c .*noise standard deviation"):
        make_rule("np", net, c=-0.5, feedback_lr=1e-3)
    with pytest.raises(ValueError, match="perturbed_fraction"):
        make_rule("np", net, c=0.1, feedback_lr=1e-3, perturbed_fraction=0.0)
    with pytest.raises(ValueError, match="feedback_lr"):
        make_rule("np", net, c=0.1)
    with pytest.raises(ValueError, match="rule must be one of"):
        make_rule("bp", net)
    with pytest.raises(ValueError, match="bptt takes no options"):
        make_rule("bptt", net, c=0.1)
    rule = BPTT(net)
    with pytest.raises(ValueError, match=r"x must have shape \(T, batch, 2\)"):
        rule.step(x[..., :1], y, h0)
    with pytest.raises(ValueError, match="target must have shape"):
        rule.step(x, y[:-1], h0)
    with pytest.raises(ValueError, match="h0 must have shape"):
        rule.step(x, y, h0[:, :3])
    with pytest.raises(ValueError, match="dtype"):
        rule.step(x.double(), y.double(), h0)
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        rule.step(bad, y, h0)
    with pytest.raises(ValueError, match="n_hidden"):
        RNN(n_hidden=0)


@pytest.mark.parametrize("kwargs, message", [(dict(window=0), "window"), (dict(window=-3), "window"),
                                             (dict(window=10, epoch_length=5), "epoch_length"),
                                             (dict(n_streams=0), "n_streams")])
def test_stream_config_rejects_bad_windows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- training
def _short_run(tmp_path=None, *, epochs=2.0, resume=False, stop_after=None, ensemble=2, checkpoint_every=6):
    seeds = range(ensemble)
    net = RNN(generator=[rng.make_generator(s) for s in seeds])
    rule = make_rule("np", net, generator=[rng.make_generator(50 + s) for s in seeds], c=0.1,
                     perturbed_fraction=0.5, feedback_lr=1e-3, warmup_steps=3)
    optimizer = EnsembleSGD(net.parameters(), lr=[0.01, 0.02][:ensemble])
    config = StreamConfig(n_streams=8, epoch_length=70, window=7)
    evaluation = config.stream(rng.make_generator(99), length=60, n_streams=10)
    if stop_after is not None:  # simulate a kill: the step after `stop_after` windows raises
        original, calls = rule.step, {"n": 0}

        def step(*args, **kwargs):
            if calls["n"] == stop_after:
                raise KeyboardInterrupt("killed")
            calls["n"] += 1
            return original(*args, **kwargs)
        rule.step = step
    history = train_stream(rule, optimizer, config, epochs=epochs,
                           data_generator=[rng.make_generator(200 + s) for s in seeds], evaluation=evaluation,
                           eval_every=5, checkpoint=None if tmp_path is None else tmp_path / "run.ckpt",
                           checkpoint_every=checkpoint_every, resume=resume)
    return history, rule


def test_train_stream_records_history_and_learns_nothing_strange():
    history, rule = _short_run()
    assert history["step"] == [0, 5, 10, 15, 20]
    assert len(history["test_accuracy"][-1]) == 2 and len(history["delta_angle"][-1][0]) == 7
    assert all(math.isfinite(v) for point in history["test_loss"] for v in point)
    json.dumps(history)  # plain floats


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path):
    uninterrupted, rule = _short_run()
    with pytest.raises(KeyboardInterrupt):
        _short_run(tmp_path, stop_after=13)   # last checkpoint at window 12 (mid-epoch 2, after the warm-up)
    resumed, resumed_rule = _short_run(tmp_path, resume=True)
    for key in uninterrupted:
        if key != "seconds":
            assert resumed[key] == uninterrupted[key], key
    for (name, a), (_, b) in zip(rule.state_dict().items(), resumed_rule.state_dict().items()):
        assert torch.equal(a, b), name


def test_train_stream_reports_divergence():
    from credit_tutorial.training import TrainingDiverged

    net = RNN(generator=rng.make_generator(0))
    rule = make_rule("bptt", net)
    config = StreamConfig(n_streams=8, epoch_length=140)
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        train_stream(rule, EnsembleSGD(net.parameters(), lr=50.0), config, epochs=1.0,
                     data_generator=rng.make_generator(0))


# ---------------------------------------------------------------------------------------------- reproduce fig4
def test_reproduce_fig4_quick_writes_its_command_and_resumes(tmp_path):
    from credit_tutorial.experiments.recurrent import fig4

    out = tmp_path / "fig4.json"
    result = fig4(out, device="cpu", seed=3, quick=True, progress=False, command="reproduce fig4 --quick")
    saved = json.loads(out.read_text())
    assert saved["command"] == "reproduce fig4 --quick" and saved["seeds"] == [3, 4, 5]
    assert set(saved["histories"]) == {"bptt", "fa", "np", "readout"}
    assert saved["histories"]["np"]["step"][-1] == 6  # 2 epochs of 3 windows
    assert saved["final"]["bptt"]["delta_angle_per_step"][0] < 0.1 and saved["final"]["readout"]["test_loss"]
    for name in ("bptt", "fa", "np", "readout"):
        assert (tmp_path / f"fig4.{name}.ckpt").is_file()
    # resuming a finished run trains nothing more and gives the same result
    again = fig4(out, device="cpu", seed=3, quick=True, progress=False, resume=True, command="again")
    assert again["histories"]["np"]["test_loss"] == result["histories"]["np"]["test_loss"]
    assert again["histories"]["fa"]["delta_angle"] == result["histories"]["fa"]["delta_angle"]


def test_per_copy_defects_equal_separate_runs():
    """pairing / noise_scale may differ per ensemble copy; each copy then equals a run with that choice alone."""
    from credit_tutorial.recurrent import train_rule

    config = StreamConfig(n_streams=6, epoch_length=35)
    common = dict(c=0.5, perturbed_fraction=0.5, feedback="ridge", feedback_init="zeros", gamma=1.0, warmup_steps=2)

    def run(**options):
        return train_rule("np", [0, 1], config, epochs=1.0, lr=0.01, **common, **options)[1]

    mixed = run(pairing=["next", "same"], noise_scale=["actual", "nominal"])
    right, wrong = run(), run(pairing="same", noise_scale="nominal")
    for name, p in mixed.network.named_parameters():
        torch.testing.assert_close(p[0], getattr(right.network, name)[0])
        torch.testing.assert_close(p[1], getattr(wrong.network, name)[1])
    torch.testing.assert_close(mixed.learner.B[1], wrong.learner.B[1])
    with pytest.raises(ValueError, match="one per ensemble copy"):
        make_rule("np", RNN(generator=rng.make_generator(0)), c=0.1, feedback_lr=1e-3, pairing=["next", "same"])
    with pytest.raises(ValueError, match="pairing"):
        regressors(torch.zeros(3, 2, 1), torch.zeros(3, 2, 4), ["next", "later"])


def test_fixed_feedback_sweep_copies_equal_single_rules():
    """BPTT, FA and readout-only as one ensemble: each copy equals its own rule trained alone."""
    from credit_tutorial.recurrent import train_rule

    config = StreamConfig(n_streams=6, epoch_length=35)
    sweep = train_rule("sweep", [0, 1, 2], config, epochs=1.0, lr=0.02, kinds=["bptt", "fa", "readout"])[1]
    for k, name in enumerate(("bptt", "fa", "readout")):
        alone = train_rule(name, [k], config, epochs=1.0, lr=0.02)[1]
        for parameter, p in sweep.network.named_parameters():
            torch.testing.assert_close(p[k], getattr(alone.network, parameter)[0])
    with pytest.raises(ValueError, match="kinds must list one of"):
        make_rule("sweep", RNN(generator=[rng.make_generator(0)] * 2), kinds=["bptt", "np"])
