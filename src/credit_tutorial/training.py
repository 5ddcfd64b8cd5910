"""One training loop for every rule: minibatches, evaluation, metrics, divergence detection, checkpoints.

The loop returns a *history*: a plain dict of lists (floats, or lists of K floats for an ensemble) that the
plotting functions take and that serialises to JSON as it is.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor

from . import rng
from .checkpoint import load_checkpoint, save_checkpoint
from .data import Dataset
from .loop import checkpointed_loop
from .objectives import Objective

Metric = Callable[["object", Dataset], Mapping[str, object]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exceeded the divergence threshold."""


def _finite_or_none(value):
    """NaN/inf → None, recursively, so histories stay valid JSON (a diverged ensemble copy records None)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _python(value):
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist()
    return _finite_or_none(value)


@torch.no_grad()
def evaluate(network, x: Tensor, y: Tensor, objective: Objective, *, chunk_size: int = 8192) -> dict[str, object]:
    """Batch-mean loss and (for integer labels) error rate of ``network`` on ``(x, y)``, in chunks of samples.

    Returns floats (or lists of K floats for an ensemble); ``error`` is ``None`` for regression targets.
    """
    losses, errors = [], []
    n = x.shape[-2]
    for start in range(0, n, chunk_size):
        xs = x[..., start:start + chunk_size, :]
        ys = y[..., start:start + chunk_size, :] if y.is_floating_point() else y[..., start:start + chunk_size]
        out = network(xs)
        losses.append(objective.per_sample(out, ys))
        if not y.is_floating_point():
            errors.append(out.argmax(dim=-1) != ys)
    loss = torch.cat(losses, dim=-1).mean(dim=-1)
    error = None if not errors else torch.cat(errors, dim=-1).to(loss.dtype).mean(dim=-1)
    return {"loss": _python(loss), "error": _python(error)}


def _mask_copies(value, dead: list[bool]):
    """Replace the entries of diverged copies by None in a per-copy list (or a list of per-copy lists)."""
    if isinstance(value, list) and len(value) == len(dead) and not any(isinstance(v, list) for v in value):
        return [None if d else v for v, d in zip(value, dead)]
    if isinstance(value, list):
        return [_mask_copies(v, dead) for v in value]
    return value


def _check_training_data(network, data: Dataset, batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if data.n_train == 0:
        raise ValueError("the training set is empty")
    if data.x_train.shape[-1] != network.sizes[0]:
        raise ValueError(f"the data has {data.x_train.shape[-1]} input features but the network expects "
                         f"{network.sizes[0]}")
    for name in ("x_train", "x_test"):
        if not bool(torch.isfinite(getattr(data, name)).all()):
            raise ValueError(f"data.{name} contains NaN or inf values")
    if not data.y_train.is_floating_point():
        top = int(torch.cat([data.y_train.flatten(), data.y_test.flatten()]).max())
        if top >= network.sizes[-1]:
            raise ValueError(f"labels go up to {top} but the network has only {network.sizes[-1]} outputs")


def _learning_rates(optimizer) -> str:
    rates = [group["lr"] for group in optimizer.param_groups]
    rates = [_python(r) for r in rates]
    return ", ".join(str(r) for r in rates)


def _rows(values: Tensor, indices: Tensor) -> Tensor:
    """``values[indices]`` for ``indices`` ``(batch,)`` or ``(K, batch)``: ``(..., batch, *values.shape[1:])``.

    ``index_select`` on the flattened indices gathers the same rows several times faster than advanced indexing
    (about 5 µs instead of 20 µs for a batch of 32 MNIST images on one CPU core).
    """
    return values.index_select(0, indices.flatten()).view(*indices.shape, *values.shape[1:])


def _diverged(loss: Tensor, threshold: float) -> Tensor:
    """Boolean mask of diverged copies (a 0-d tensor for a single network)."""
    return ~torch.isfinite(loss) | (loss.abs() > threshold)


def _diverged_error(step: int, steps_per_epoch: int, copy: str, value: float, optimizer, rule) -> TrainingDiverged:
    """The error for a divergence at 0-based ``step``: which step, which value, and what to lower."""
    return TrainingDiverged(f"training diverged at step {step + 1} (epoch {step // steps_per_epoch + 1}){copy}: "
                            f"batch loss = {value:.4g}. Lower the learning rate (now {_learning_rates(optimizer)})"
                            f"{rule.divergence_hint()}.")


def _freeze(rule, dead: Tensor) -> None:
    """Zero the gradients of the diverged ensemble copies so the optimizer leaves them where they stopped."""
    for parameter in rule.parameters():
        if parameter.grad is not None:
            parameter.grad[dead] = 0.0


def fit(rule, optimizer: torch.optim.Optimizer, data: Dataset, *, epochs: float | None = None,
        steps: int | None = None, batch_size: int = 32, generator: rng.Generators = None,
        eval_every: int | None = None, metrics: Mapping[str, Metric] | None = None, progress: bool = False,
        checkpoint: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = False,
        divergence_threshold: float = 1e6, on_divergence: str = "raise", history: dict | None = None) -> dict:
    """Train ``rule.network`` with ``rule`` and ``optimizer`` on ``data``; return the history.

    Parameters
    ----------
    epochs, steps: length of training (exactly one of them). ``epochs`` may be fractional.
    batch_size: samples per step; the last batch of an epoch may be smaller.
    generator: shuffles the training set each epoch; a list of K generators gives each copy of an ensemble
        its own order (copy k then sees exactly what a single network with generator k would see).
    eval_every: steps between evaluations (default: once per epoch); training and test loss and error are
        recorded at step 0, every ``eval_every`` steps and at the end.
    metrics: ``name → fn(rule, data)`` returning a dict of extra values to record at each evaluation.
    progress: show a tqdm bar with throughput in samples/s.
    checkpoint, checkpoint_every: write an atomic checkpoint every ``checkpoint_every`` steps (and at the
        end); with ``resume=True`` an existing checkpoint is loaded and training continues from it, ending
        with the same result as an uninterrupted run.
    divergence_threshold: a batch loss above it, or NaN/inf, counts as divergence.
    on_divergence: ``"raise"`` stops with :class:`TrainingDiverged` (naming the step, the value and what to
        lower); ``"mask"`` (ensembles only, e.g. a learning-rate sweep) freezes the diverged copies, records
        ``None`` for them from then on, and trains the others to the end.
    """
    network, objective = rule.network, rule.objective
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs and steps")
    if epochs is not None and not (isinstance(epochs, (int, float)) and epochs > 0 and math.isfinite(epochs)):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if steps is not None and not (isinstance(steps, int) and steps > 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    _check_training_data(network, data, batch_size)
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if on_divergence not in ("raise", "mask"):
        raise ValueError(f"on_divergence must be 'raise' or 'mask', got {on_divergence!r}")
    if on_divergence == "mask" and network.ensemble_size is None:
        raise ValueError("on_divergence='mask' needs an ensemble network (a single network has nothing to mask)")

    n = data.n_train
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps if steps is not None else max(1, round(epochs * steps_per_epoch))
    eval_every = steps_per_epoch if eval_every is None else eval_every
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    device = data.x_train.device

    history = history if history is not None else {}
    state = {"step": 0, "position": 0, "permutation": None, "seconds": 0.0, "dead": None}
    if resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, map_location=device)
        rule.load_state_dict(saved["rule"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.set_generator_states(generator, saved["data_generator"])
        rng.set_generator_states(rule.generator, saved["rule_generator"])
        history.clear()
        history.update(saved["history"])
        state = saved["position"]

    def record(step: int) -> None:
        train = evaluate(network, data.x_train, data.y_train, objective)
        test = evaluate(network, data.x_test, data.y_test, objective)
        entry = {"train_loss": train["loss"], "test_loss": test["loss"]}
        if test["error"] is not None:
            entry.update(train_error=train["error"], test_error=test["error"])
        for metric in (metrics or {}).values():
            entry.update({key: _python(value) for key, value in metric(rule, data).items()})
        if state["dead"] is not None:  # diverged copies record None
            dead = state["dead"].tolist()
            entry = {key: _mask_copies(value, dead) for key, value in entry.items()}
        entry = {"step": step, "epoch": step / steps_per_epoch, "seconds": state["seconds"], **entry}
        for key, value in entry.items():
            history.setdefault(key, []).append(value)

    def save() -> None:
        save_checkpoint({"rule": rule.state_dict(), "optimizer": optimizer.state_dict(),
                         "data_generator": rng.generator_states(generator),
                         "rule_generator": rng.generator_states(rule.generator),
                         "history": history, "position": state}, checkpoint)

    if state["step"] == 0:
        record(0)
    with checkpointed_loop(save if checkpoint is not None else None, checkpoint_every, progress=progress,
                           total=total * batch_size, initial=state["step"] * batch_size, unit="samples",
                           unit_scale=True, desc=rule.short_name) as loop:
        while state["step"] < total:
            started = time.perf_counter()
            if state["permutation"] is None:
                state["permutation"] = rng.permutation(n, generator, device=device)
            start = state["position"] * batch_size
            indices = state["permutation"][..., start:start + batch_size]
            x, y = _rows(data.x_train, indices), _rows(data.y_train, indices)
            optimizer.zero_grad(set_to_none=True)
            credit = rule.step(x, y, validate=False)
            if credit.loss.dim() == 0:  # one network: read the loss once (five tensor operations cost more)
                value = float(credit.loss)
                if not (math.isfinite(value) and abs(value) <= divergence_threshold):
                    raise _diverged_error(state["step"], steps_per_epoch, "", value, optimizer, rule)
            else:
                bad = _diverged(credit.loss, divergence_threshold)
                if state["dead"] is not None:
                    bad = bad & ~state["dead"]
                if bool(bad.any()):
                    if on_divergence == "raise":
                        index = int(bad.flatten().nonzero()[0, 0])
                        copy = "" if network.ensemble_size is None else f" in ensemble copy {index}"
                        raise _diverged_error(state["step"], steps_per_epoch, copy,
                                              credit.loss.flatten()[index].item(), optimizer, rule)
                    state["dead"] = bad if state["dead"] is None else state["dead"] | bad
            if state["dead"] is not None:
                _freeze(rule, state["dead"])
            optimizer.step()
            state["step"] += 1
            state["position"] += 1
            if state["position"] == steps_per_epoch:
                state["position"], state["permutation"] = 0, None
            state["seconds"] += time.perf_counter() - started
            loop.advance(x.shape[-2])
            if state["step"] % eval_every == 0 or state["step"] == total:
                record(state["step"])
                if loop.showing:
                    postfix = {"loss": history["train_loss"][-1]}
                    if "test_error" in history:
                        postfix["test_error"] = history["test_error"][-1]
                    loop.show({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()})
            loop.step_done(state["step"])
    return history
