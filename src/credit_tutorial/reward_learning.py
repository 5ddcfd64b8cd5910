"""Measuring learning by trial and error (chapter 9): training reward, class discovery, feedback symmetry,
epochs to criterion, the learning-rate range test and a paper-scale reproduction of Pozzi et al. (2018), Table 1.

The metric functions have the signature ``fn(rule, data) -> dict`` that :func:`credit_tutorial.training.fit`
records at every evaluation; for an ensemble every value carries one entry per copy.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor

from . import rng
from .data import Dataset
from .metrics import matrix_angle
from .optim import check_learning_rate
from .reproduce import checkpoint_path, register
from .rules.qagrel import QAGREL


def _python(value: Tensor):
    return value.detach().cpu().tolist()


# ---------------------------------------------------------------------------------------------------- metrics
def training_reward(rule: QAGREL, data: Dataset) -> dict:
    """``train_reward``: the fraction of rewarded trials since the previous evaluation (NaN before any trial)."""
    return {"train_reward": _python(rule.pop_reward_rate())}


@torch.no_grad()
def class_discovery(rule, data: Dataset) -> dict:
    """Per class ``c`` on the test set, with the greedy choice ``argmax Q`` (the paper's Fig. 6):

    ``selection_frequency[c]``: fraction of all test samples on which action ``c`` is chosen (0.1 each when
    every class is used equally); ``class_accuracy[c]``: fraction of the test samples of class ``c`` answered
    correctly. Shapes ``(n_classes,)``, or ``(K, n_classes)`` for an ensemble.
    """
    choices = rule.network(data.x_test).argmax(dim=-1)  # (..., n_test)
    n_classes = rule.network.sizes[-1]
    labels = data.y_test
    chosen = torch.nn.functional.one_hot(choices, n_classes).to(data.x_test.dtype)  # (..., n_test, n_classes)
    truth = torch.nn.functional.one_hot(labels, n_classes).to(data.x_test.dtype)  # (n_test, n_classes)
    correct = (choices == labels).to(data.x_test.dtype).unsqueeze(-1)  # (..., n_test, 1)
    per_class = truth.sum(dim=-2).clamp_min(1.0)
    return {"selection_frequency": _python(chosen.mean(dim=-2)),
            "class_accuracy": _python((correct * truth).sum(dim=-2) / per_class)}


@torch.no_grad()
def feedback_symmetry(rule, data: Dataset | None = None) -> dict:
    """``feedback_angle``: per hidden layer, the angle (degrees) between the feedback ``W′_{l+1}`` and ``W_{l+1}ᵀ``."""
    weights = list(rule.network.weights)[1:]
    return {"feedback_angle": [_python(matrix_angle(B.mT, W.detach()))
                               for W, B in zip(weights, rule.feedback_matrices())]}


def epochs_to_criterion(history: dict, accuracy: float, key: str = "test_error") -> list[float | None] | float | None:
    """The first recorded epoch at which ``1 − history[key]`` reaches ``accuracy`` (per copy; ``None``: never,
    e.g. a copy that diverged and records ``None``)."""
    if not 0 < accuracy <= 1:
        raise ValueError(f"accuracy must be in (0, 1], got {accuracy!r}")
    values = history[key]
    ensemble = isinstance(values[0], list)
    columns = list(zip(*values)) if ensemble else [values]
    reached = []
    for column in columns:
        hit = next((epoch for epoch, error in zip(history["epoch"], column)
                    if error is not None and 1.0 - error >= accuracy), None)
        reached.append(hit)
    return reached if ensemble else reached[0]


# ---------------------------------------------------------------------------------------------------- range test
def lr_range_test(config, lrs: Sequence[float], *, steps_per_lr: int, seeds: Sequence[int] | None = None,
                  data: Dataset | None = None) -> dict:
    """Smith's (2017) learning-rate range test as Pozzi et al. used it (their Fig. 4).

    One run (or one ensemble over ``seeds``) of ``config`` (a :class:`~credit_tutorial.experiment.TrainConfig`)
    trains with SGD while the learning rate steps through ``lrs`` (increasing), ``steps_per_lr`` minibatches
    each. Returns ``{"lr": [...], "reward": [...], "accuracy": [...]}``: per learning rate, the fraction of
    rewarded trials (Q-AGREL; the greedy training accuracy for other rules) and the greedy accuracy on the
    minibatches seen at that rate (floats, or lists of K floats for an ensemble).
    """
    from .experiment import _DTYPES, build, load_task, resolve_device  # local: experiment imports the rules

    lrs = [float(v) for v in lrs]
    check_learning_rate(lrs, "lrs")
    if any(b <= a for a, b in zip(lrs, lrs[1:])):
        raise ValueError(f"lrs must increase, got {lrs}")
    if not isinstance(steps_per_lr, int) or isinstance(steps_per_lr, bool) or steps_per_lr < 1:
        raise ValueError(f"steps_per_lr must be a positive integer, got {steps_per_lr!r}")
    config = replace(config, optimizer="sgd", lr=lrs[0])
    device = resolve_device(config.device)
    data = load_task(config, device) if data is None else data.to(device=device, dtype=_DTYPES[config.dtype])
    rule, optimizer, data_gen = build(config, seeds=seeds, device=device)
    n, batch = data.n_train, config.batch_size
    per_epoch = math.ceil(n / batch)
    result = {"lr": lrs, "reward": [], "accuracy": []}
    permutation, position = None, 0
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        rewarded = correct = 0.0
        for _ in range(steps_per_lr):
            if permutation is None:
                permutation = rng.permutation(n, data_gen, device=device)
            indices = permutation[..., position * batch:(position + 1) * batch]
            x, y = data.x_train[indices], data.y_train[indices]
            optimizer.zero_grad(set_to_none=True)
            credit = rule.step(x, y, validate=False)
            optimizer.step()
            greedy = (credit.trace.output.argmax(dim=-1) == y).to(x.dtype).mean(dim=-1)
            correct = correct + greedy
            rewarded = rewarded + (credit.extras["rewards"].mean(dim=-1) if "rewards" in credit.extras else greedy)
            position += 1
            if position == per_epoch:
                permutation, position = None, 0
        result["reward"].append(_python(rewarded / steps_per_lr))
        result["accuracy"].append(_python(correct / steps_per_lr))
    return result


# ---------------------------------------------------------------------------------------------------- reproduction
#: Table 1 of Pozzi et al. as blocks: (name, rule, feedback mode or None, learning rate). Q-AGREL lr 0.5 and
#: backprop lr 0.1 (squared error to one-hot targets) as in the paper and chapter 9; fixed random feedback at the
#: paper's lower rate 0.1 (at 0.5 the one-hidden-layer network diverges in its first epoch).
TABLE1_BLOCKS = (("Q-AGREL, symmetric feedback", "qagrel", "symmetric", 0.5),
                 ("Q-AGREL, learned random feedback", "qagrel", "learned", 0.5),
                 ("Q-AGREL, fixed random feedback", "qagrel", "fixed", 0.1),
                 ("error-backprop", "bp", None, 0.1))


def table1(out, *, sizes: Sequence[Sequence[int]] = ((784, 300, 100, 10), (784, 300, 10)),
           blocks: Sequence[tuple] = TABLE1_BLOCKS, epochs: float = 50, seeds: Sequence[int] = (0, 1, 2),
           batch_size: int = 100, init: str = "uniform", bias: bool = True, epsilon: float = 0.025,
           data_root: str | None = None, n_train: int | None = None, n_test: int | None = None,
           device: str = "auto", progress: bool = False, resume: bool = False,
           checkpoint_every: int | None = None, command: str | None = None) -> dict:
    """Pozzi et al.'s Table 1 at any scale: every block × architecture trained for ``epochs`` over ``seeds``.

    Each (architecture, block) is one ensemble run over the seeds (``experiment.run(config, seeds=...)``); a copy
    that diverges is frozen and recorded as ``None`` (``on_divergence="mask"``) while the others train on. Data:
    full MNIST when ``data_root`` (or the download cache) holds it, else the embedded 8,000/2,000 subset.
    The JSON record ``{"command", "settings", "runs": [...]}`` is rewritten atomically to ``out`` after every
    run; with ``resume=True`` finished runs found in ``out`` (same settings) are kept and the current run continues
    from its checkpoint (``out`` with suffix ``.ckpt``). Each run stores its configuration, the final test
    accuracy per seed and the per-epoch histories (test error, training reward, feedback angle).
    """
    from pathlib import Path

    from .checkpoint import save_json
    from .experiment import TrainConfig, run

    out = Path(out)
    settings = {"epochs": epochs, "seeds": list(seeds), "batch_size": batch_size, "init": init, "bias": bias,
                "epsilon": epsilon, "n_train": n_train, "n_test": n_test, "data_root": data_root}
    record = {"command": command, "settings": settings, "runs": []}
    if resume and out.exists():
        previous = json.loads(out.read_text())
        if previous.get("settings") == settings:
            record["runs"] = previous["runs"]
    done = {(r["block"], tuple(r["sizes"])) for r in record["runs"]}
    metrics = {"reward": training_reward, "symmetry": feedback_symmetry}
    keep = ("epoch", "seconds", "test_error", "train_error", "train_reward", "feedback_angle")
    for layer_sizes in sizes:
        for name, rule, mode, lr in blocks:
            if (name, tuple(layer_sizes)) in done:
                continue
            options = {} if rule != "qagrel" else {"feedback": mode, "epsilon": epsilon}
            config = TrainConfig(task="mnist", rule=rule, sizes=tuple(layer_sizes), hidden_activation="relu",
                                 init=init, bias=bias, lr=lr, epochs=epochs, batch_size=batch_size,
                                 device=device, data_root=data_root, n_train=n_train, n_test=n_test,
                                 rule_options=options)
            result = run(config, seeds=list(seeds), metrics=metrics if rule == "qagrel" else None,
                         progress=progress, on_divergence="mask", checkpoint=checkpoint_path(out),
                         checkpoint_every=checkpoint_every, resume=resume)
            record["runs"].append({
                "block": name, "rule": rule, "feedback": mode, "sizes": list(layer_sizes), "lr": lr,
                "data": result.data_source, "device": result.device,
                "final_accuracy": [None if e is None else 1.0 - e for e in result.final("test_error")],
                "history": {k: v for k, v in result.history.items() if k in keep}})
            save_json(record, out)
            checkpoint_path(out).unlink(missing_ok=True)  # the next run starts afresh
    record["final"] = {f"{r['block']}, {'-'.join(map(str, r['sizes']))}": r["final_accuracy"] for r in record["runs"]}
    save_json(record, out)
    return record


@register("qagrel-table1")
def reproduce_table1(out, *, device: str = "auto", seed: int = 0, resume: bool = False, progress: bool = False,
                     quick: bool = False, data_root: str | None = None, checkpoint_every: int | None = None,
                     command: str = "") -> dict:
    """``reproduce qagrel-table1``: :func:`table1` for seeds ``seed, seed+1, seed+2`` (50 epochs; ``quick``: a
    30-unit network for a twentieth of an epoch on 500 samples, the same code path)."""
    seeds = (seed, seed + 1, seed + 2)
    if quick:
        return table1(out, sizes=((784, 30, 10),), epochs=0.05, seeds=seeds[:2], n_train=500, n_test=200,
                      device=device, data_root=data_root, progress=progress, resume=resume,
                      checkpoint_every=checkpoint_every, command=command)
    return table1(out, seeds=seeds, device=device, data_root=data_root, progress=progress, resume=resume,
                  checkpoint_every=checkpoint_every, command=command)
