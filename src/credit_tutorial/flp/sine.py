"""Incremental sine waves (Javed & White 2019; Lindsey & Litwin-Kumar 2020, §5).

Each episode draws ``n_tasks`` sinusoids ``y = A sin(x + φ)``, ``A ~ U[0.1, 5]``, ``φ ~ U[0, π]``,
``x ~ U[−5, 5]``. The input is ``[one-hot task id (n_tasks), x]``. The lifetime shows ``batches_per_task``
batches of ``batch_size`` points from each sinusoid, every batch once: in ``"continual"`` order all batches of
sinusoid 1, then of sinusoid 2, …; in ``"iid"`` order the same batches shuffled (as in the authors' code, each
batch holds points of one sinusoid). The test set holds ``n_test_per_task`` fresh points of every sinusoid.
Paper scale: 10 sinusoids × 40 batches × 32 points = 400 inner steps.
"""

from __future__ import annotations

import math

import torch

from .. import rng
from .episode import Episode

ORDERS = ("iid", "continual")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _interval(name: str, value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a finite interval with low <= high, got {value!r}")
    return low, high


def sine_episode(generator: rng.Generators, *, n_tasks: int = 10, batches_per_task: int = 40, batch_size: int = 32,
                 n_test_per_task: int = 32, order: str = "iid", amplitude=(0.1, 5.0), phase=(0.0, math.pi),
                 x_range=(-5.0, 5.0), meta_batch: int | None = None, dtype: torch.dtype = torch.float32,
                 device=None) -> Episode:
    """One incremental-sine-waves lifetime (a list of K generators gives K independent episodes, stacked;
    ``meta_batch=M`` gives M episodes per generator, leading shape ``(K, M)`` or ``(M,)``).

    Draws are made on the generator's device (CPU generators for reproducibility across devices) and the episode
    is then moved to ``device``. Returns an :class:`Episode` with ``x_train (..., T, batch, n_tasks + 1)``,
    ``y_train (..., T, batch, 1)``, ``T = n_tasks · batches_per_task``; ``info`` holds ``amplitude`` and ``phase``
    ``(..., n_tasks)``.
    """
    n_tasks = _positive_int("n_tasks", n_tasks)
    batches_per_task = _positive_int("batches_per_task", batches_per_task)
    batch_size = _positive_int("batch_size", batch_size)
    n_test_per_task = _positive_int("n_test_per_task", n_test_per_task)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    amplitude, phase, x_range = _interval("amplitude", amplitude), _interval("phase", phase), _interval("x_range", x_range)
    if amplitude[0] < 0:
        raise ValueError(f"amplitude must be non-negative, got {amplitude}")
    prefix = () if meta_batch is None else (_positive_int("meta_batch", meta_batch),)
    draw = dict(dtype=torch.float64)  # draw in float64, then cast: the same numbers at any dtype
    steps = n_tasks * batches_per_task
    amp = rng.uniform(prefix + (n_tasks,), generator, low=amplitude[0], high=amplitude[1], **draw)  # (..., n_tasks)
    ph = rng.uniform(prefix + (n_tasks,), generator, low=phase[0], high=phase[1], **draw)
    x_train = rng.uniform(prefix + (n_tasks, batches_per_task, batch_size), generator, low=x_range[0],
                          high=x_range[1], **draw)
    x_test = rng.uniform(prefix + (n_tasks, n_test_per_task), generator, low=x_range[0], high=x_range[1], **draw)

    def targets(x):  # x (..., n_tasks, m, [batch]) → A_k sin(x + φ_k)
        extra = x.dim() - amp.dim()
        shape = amp.shape + (1,) * extra
        return amp.reshape(shape) * torch.sin(x + ph.reshape(shape))

    task_ids = torch.arange(n_tasks).repeat_interleave(batches_per_task)                       # continual order
    lead = amp.shape[:-1]
    task_train = task_ids.expand(*lead, steps).clone()
    y_train = targets(x_train).reshape(*lead, steps, batch_size)
    x_train = x_train.reshape(*lead, steps, batch_size)
    if order == "iid":
        perm = rng.uniform(prefix + (steps,), generator, **draw).argsort(dim=-1)               # (..., T)
        task_train = task_train.gather(-1, perm)
        x_train = x_train.gather(-2, perm.unsqueeze(-1).expand_as(x_train))
        y_train = y_train.gather(-2, perm.unsqueeze(-1).expand_as(y_train))
    y_test = targets(x_test).reshape(*lead, -1)
    task_test = torch.arange(n_tasks).repeat_interleave(n_test_per_task).expand(*lead, -1).clone()
    x_test = x_test.reshape(*lead, -1)

    def encode(x, tasks):  # [one-hot task id, x]
        return torch.cat([torch.nn.functional.one_hot(tasks, n_tasks).to(x.dtype), x.unsqueeze(-1)], dim=-1)

    episode = Episode(x_train=encode(x_train, task_train.unsqueeze(-1).expand_as(x_train)),
                      y_train=y_train.unsqueeze(-1), x_test=encode(x_test, task_test),
                      y_test=y_test.unsqueeze(-1), task_train=task_train, task_test=task_test,
                      kind="regression", n_outputs=1, info={"amplitude": amp, "phase": ph})
    return episode.to(device=device, dtype=dtype)
