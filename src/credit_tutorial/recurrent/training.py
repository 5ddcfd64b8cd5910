"""Training a recurrent rule on the delayed-XOR stream, with evaluation, angles through time and exact resume.

One *epoch* is a fresh stream of ``epoch_length`` steps in each of ``n_streams`` parallel streams (the hidden
state starts at zero); it is cut into consecutive windows of ``window`` steps, the hidden state carried from
one window to the next (truncated BPTT), and every window is one update. The checkpoint holds the rule, the
optimizer, the generators (the data generator as it was at the start of the epoch, so the epoch's stream is
drawn again on resume), the carried hidden state and the history: a resumed run ends exactly like an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .. import rng
from ..checkpoint import load_checkpoint, save_checkpoint
from ..loop import checkpointed_loop
from ..metrics import matrix_angle, mean_angle
from ..training import TrainingDiverged
from ..optim import EnsembleSGD
from .network import RNN
from .rules import ThroughTimeRule, make_rule, backward_through_time, transposed_weights, weight_gradients
from .task import XORStream, delayed_xor, xor_accuracy


@dataclass(frozen=True)
class StreamConfig:
    """The delayed-XOR stream a run trains on (defaults: the authors' batch of 200 and fixed lags)."""

    n_streams: int = 200
    epoch_length: int = 5000
    window: int = 7
    input_lags: tuple[int, int] = (3, 2)
    cue_lag: int = 1
    mean_gap: float = 20.0

    def __post_init__(self):
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise ValueError(f"window (the truncated-BPTT length) must be a positive integer, got {self.window!r}")
        if not isinstance(self.epoch_length, int) or self.epoch_length < self.window:
            raise ValueError(f"epoch_length must be an integer ≥ window ({self.window}), got {self.epoch_length!r}")
        if not isinstance(self.n_streams, int) or isinstance(self.n_streams, bool) or self.n_streams < 1:
            raise ValueError(f"n_streams must be a positive integer, got {self.n_streams!r}")
        object.__setattr__(self, "input_lags", tuple(self.input_lags))

    @property
    def windows_per_epoch(self) -> int:
        return self.epoch_length // self.window  # a remainder shorter than a window is dropped

    def stream(self, generator: rng.Generators, *, length: int | None = None, n_streams: int | None = None,
               dtype=torch.float32, device=None) -> XORStream:
        return delayed_xor(n_streams or self.n_streams, length or self.epoch_length, generator,
                           input_lags=self.input_lags, cue_lag=self.cue_lag, mean_gap=self.mean_gap, dtype=dtype,
                           device=device)


def _python(value):
    """Floats (or nested lists of floats) for the history; NaN (an undefined angle) becomes None (JSON null)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, list):
        return [_python(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


@torch.no_grad()
def evaluate_stream(network: RNN, stream: XORStream, *, window: int = 7) -> dict:
    """Run ``network`` over a whole evaluation stream from a zero state.

    Returns ``loss`` (mean per-step ``½(ŷ − y)²``), ``accuracy`` (XOR accuracy at the response steps), and the
    state and window needed for :func:`angles_through_time` (the last ``window`` steps and the state before them).
    """
    trace = network.trace(stream.inputs)
    loss = 0.5 * (trace.outputs - stream.targets).square().sum(dim=-1).mean(dim=(-2, -1))
    start = stream.length - window
    h0 = trace.hidden[..., start - 1, :, :] if start > 0 else network.initial_state(stream.n_streams)
    x, y = stream.window(start, window)
    return {"loss": loss, "accuracy": xor_accuracy(trace.outputs, stream), "window": (x, y, h0)}


@torch.no_grad()
def angles_through_time(rule: ThroughTimeRule, x: Tensor, target: Tensor, h0: Tensor | None = None) -> dict:
    """Compare a rule's errors with truncated BPTT's on one window, from the same forward pass and output errors.

    Returns ``delta_angle`` (``(..., T)``: per unrolled step, the batch-mean angle in degrees between the rule's
    ``δ_t`` and BPTT's), ``delta_scale`` (``(..., T)``: ``‖δ_t‖ / ‖δ_t^BPTT‖``, norms over the whole batch) and the
    angles between the rule's and BPTT's updates of ``W`` (``recurrent_update_angle``) and ``U``.
    No random numbers are drawn (the rule's noisy pass is not needed), so measuring does not change training.
    """
    trace = rule.network.trace(x, h0)
    output_errors, deltas = rule.errors(trace, target)
    exact = backward_through_time(output_errors, rule.network.derivatives(trace), *transposed_weights(rule.network))
    ours, theirs = weight_gradients(trace, output_errors, deltas), weight_gradients(trace, output_errors, exact)
    return {"delta_angle": mean_angle(deltas, exact),  # (..., T, batch, n_h) → (..., T)
            "delta_scale": deltas.flatten(start_dim=-2).norm(dim=-1) / exact.flatten(start_dim=-2).norm(dim=-1),
            "recurrent_update_angle": matrix_angle(ours["recurrent_weight"], theirs["recurrent_weight"]),
            "input_update_angle": matrix_angle(ours["input_weight"], theirs["input_weight"])}


@torch.no_grad()
def clip_gradients(network: RNN, max_norm: float) -> Tensor:
    """Scale each copy's gradient so that its norm over all parameters is at most ``max_norm`` (Pascanu et al.,
    2013); returns the norms before clipping, ``()`` or ``(K,)``. Copies never mix: each is clipped on its own."""
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    lead = 0 if network.ensemble_size is None else 1
    norm = torch.cat([g.flatten(start_dim=lead) for g in grads], dim=-1).norm(dim=-1)  # () or (K,)
    if bool((norm > max_norm).any()):
        scale = (max_norm / norm).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(*scale.shape, *([1] * (g.dim() - lead))))
    return norm


def _diverged(loss: Tensor, threshold: float) -> int | None:
    bad = ~(loss.abs() <= threshold)  # NaN compares False: caught too
    return int(bad.flatten().nonzero()[0, 0]) if bool(bad.any()) else None


def train_stream(rule: ThroughTimeRule, optimizer: torch.optim.Optimizer, config: StreamConfig, *,
                 epochs: float, data_generator: rng.Generators, evaluation: XORStream | None = None,
                 eval_every: int | None = None, progress: bool = False, checkpoint: str | Path | None = None,
                 checkpoint_every: int | None = None, resume: bool = False, divergence_threshold: float = 1e6,
                 max_grad_norm: float | None = None, progress_desc: str | None = None) -> dict:
    """Train ``rule.network`` on delayed-XOR streams; return the history (dict of lists of floats, or K floats).

    epochs: number of epochs (may be fractional: a fraction of an epoch's windows).
    data_generator: draws each epoch's stream (a list of K generators for an ensemble).
    evaluation: a fixed stream for ``test_loss``, ``test_accuracy`` and the angles through time, recorded at
        window 0, every ``eval_every`` windows (default: once per epoch) and at the end.
    history keys: step (windows), epoch, seconds, train_loss (mean per-step loss of the windows since the last
    record), and with ``evaluation``: test_loss, test_accuracy, delta_angle and delta_scale (lists over the
    unrolled steps), recurrent_update_angle, input_update_angle (see :func:`angles_through_time`).
    checkpoint, checkpoint_every, resume: as :func:`credit_tutorial.training.fit` (atomic, exact resume).
    max_grad_norm: clip each copy's gradient norm to this value before the step (None: no clipping).
    """
    if not isinstance(config, StreamConfig):
        raise TypeError(f"config must be a StreamConfig, got {type(config).__name__}")
    if not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and math.isfinite(epochs)
            and epochs > 0):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float)) and math.isfinite(max_grad_norm)
                                          and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a positive number or None, got {max_grad_norm!r}")
    network = rule.network
    per_epoch = config.windows_per_epoch
    total = max(1, round(epochs * per_epoch))
    eval_every = per_epoch if eval_every is None else eval_every
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    weight = network.recurrent_weight
    options = dict(dtype=weight.dtype, device=weight.device)

    history: dict = {}
    state = {"step": 0, "seconds": 0.0, "loss_sum": None, "loss_count": 0}
    epoch_start_generator = rng.generator_states(data_generator)
    hidden = None
    if resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, map_location=weight.device)
        rule.load_state_dict(saved["rule"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.set_generator_states(rule.generator, saved["rule_generator"])
        epoch_start_generator = saved["epoch_start_generator"]
        history, state, hidden = saved["history"], saved["position"], saved["hidden"]
        if state["loss_sum"] is not None:
            state["loss_sum"] = torch.tensor(state["loss_sum"], **options)
    rng.set_generator_states(data_generator, epoch_start_generator)
    stream = config.stream(data_generator, **options) if state["step"] < total else None

    def record(step: int) -> None:
        entry = {"step": step, "epoch": step / per_epoch, "seconds": state["seconds"]}
        if state["loss_count"]:
            entry["train_loss"] = _python(state["loss_sum"] / (state["loss_count"] * config.window))
        else:
            entry["train_loss"] = None
        state["loss_sum"], state["loss_count"] = None, 0
        if evaluation is not None:
            result = evaluate_stream(network, evaluation, window=config.window)
            entry["test_loss"], entry["test_accuracy"] = _python(result["loss"]), _python(result["accuracy"])
            angles = angles_through_time(rule, *result["window"])
            entry.update({key: _python(value) for key, value in angles.items()})
        for key, value in entry.items():
            history.setdefault(key, []).append(value)

    def save() -> None:
        save_checkpoint({"rule": rule.state_dict(), "optimizer": optimizer.state_dict(),
                         "rule_generator": rng.generator_states(rule.generator),
                         "epoch_start_generator": epoch_start_generator, "hidden": hidden,
                         "history": history,
                         "position": {**state, "loss_sum": _python(state["loss_sum"])}}, checkpoint)

    if state["step"] == 0 and not history:
        record(0)
    samples = config.window * config.n_streams  # per window
    with checkpointed_loop(save if checkpoint is not None else None, checkpoint_every, progress=progress,
                           total=total * samples, initial=state["step"] * samples, unit="samples", unit_scale=True,
                           desc=progress_desc or rule.short_name) as loop:
        while state["step"] < total:
            started = time.perf_counter()
            position = state["step"] % per_epoch
            if hidden is None:
                hidden = network.initial_state(config.n_streams)
            x, y = stream.window(position * config.window, config.window)
            optimizer.zero_grad(set_to_none=True)
            credit = rule.step(x, y, hidden, validate=False)
            bad = _diverged(credit.loss, divergence_threshold)
            if bad is not None:
                copy = "" if network.ensemble_size is None else f" in ensemble copy {bad}"
                rates = ", ".join(str(_python(group["lr"])) for group in optimizer.param_groups)
                raise TrainingDiverged(
                    f"training diverged at window {state['step'] + 1} (epoch {state['step'] // per_epoch + 1})"
                    f"{copy}: window loss = {credit.loss.flatten()[bad].item():.4g}. Lower the learning rate "
                    f"(now {rates}){rule.divergence_hint()}.")
            if max_grad_norm is not None:
                clip_gradients(network, max_grad_norm)
            optimizer.step()
            hidden = credit.trace.final_state.detach()
            loss = credit.loss.detach()
            state["loss_sum"] = loss.clone() if state["loss_sum"] is None else state["loss_sum"] + loss
            state["loss_count"] += 1
            state["step"] += 1
            if state["step"] % per_epoch == 0:  # a new epoch: fresh stream, state back to zero
                hidden = None
                epoch_start_generator = rng.generator_states(data_generator)
                if state["step"] < total:
                    stream = config.stream(data_generator, **options)
            state["seconds"] += time.perf_counter() - started
            loop.advance(samples)
            if state["step"] % eval_every == 0 or state["step"] == total:
                record(state["step"])
                if loop.showing and evaluation is not None:
                    accuracy = history["test_accuracy"][-1]
                    accuracy = sum(accuracy) / len(accuracy) if isinstance(accuracy, list) else accuracy
                    loop.show({"test_acc": f"{accuracy:.3f}"})
            loop.step_done(state["step"])
    return history


def train_rule(name: str, seeds, config: StreamConfig, *, epochs: float, lr, n_hidden: int = 50, device=None,
               dtype=torch.float32, **options) -> tuple[dict, ThroughTimeRule]:
    """Build and train rule ``name`` (``bptt``, ``fa``, ``np``, ``readout``) with plain SGD on delayed XOR.

    seeds: one seed (a single network) or a list of K seeds (K copies trained as one ensemble). Copy k draws its
    initial weights, its streams and its rule's random numbers from ``experiment.stream(seeds[k], "init" | "data"
    | "rule")``, so every rule run with the same seeds starts from the same weights and sees the same streams.
    lr: SGD step on the batch-mean window loss (one per copy allowed). Options of :func:`train_stream`
    (evaluation, eval_every, max_grad_norm, progress, checkpoint, …) are passed on; all other options go to
    the rule. Returns ``(history, rule)``; ``rule.network`` is the trained network.
    """
    from ..experiment import stream

    keys = ("evaluation", "eval_every", "progress", "checkpoint", "checkpoint_every", "resume",
            "divergence_threshold", "max_grad_norm", "progress_desc")
    training = {key: options.pop(key) for key in keys if key in options}

    def generators(purpose):
        if isinstance(seeds, int):
            return stream(seeds, purpose, device or "cpu")
        return [stream(seed, purpose, device or "cpu") for seed in seeds]

    network = RNN(n_hidden=n_hidden, generator=generators("init"), dtype=dtype, device=device)
    rule = make_rule(name, network, generator=generators("rule"), **options)
    history = train_stream(rule, EnsembleSGD(network.parameters(), lr=lr), config, epochs=epochs,
                           data_generator=generators("data"), **training)
    return history, rule


def select_copies(history: dict, copies) -> dict:
    """The history of some copies of an ensemble run (e.g. one option of a sweep): every per-copy list keeps the
    entries ``copies`` (a list of indices); step, epoch and seconds are kept as they are."""
    copies = list(copies)

    def pick(value):
        return value if not isinstance(value, list) else [value[i] for i in copies]

    return {key: values if key in ("step", "epoch", "seconds") else [pick(v) for v in values]
            for key, values in history.items()}
