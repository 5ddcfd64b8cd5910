"""One lifetime's data: a sequence of training batches, seen once each, and a test set scored at the end."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

KINDS = ("regression", "classification")


@dataclass(frozen=True, eq=False)
class Episode:
    """Training stream and test set of one lifetime, or of many: the leading dimensions ``...`` may hold an
    ensemble copy index K and/or a meta-batch of M episodes per copy (``(K, M)``, ``(K,)``, ``(M,)`` or none).

    x_train: ``(..., T, batch, n_in)`` -- step t of the lifetime shows batch ``x_train[..., t, :, :]``.
    y_train: regression ``(..., T, batch, n_out)`` floats; classification ``(..., T, batch)`` int64 labels.
    x_test, y_test: ``(..., n_test, n_in)`` and ``(..., n_test, n_out)`` or ``(..., n_test)``.
    task_train: ``(..., T)`` int64, the sub-task (sinusoid, class) of each training step.
    task_test: ``(..., n_test)`` int64, the sub-task of each test point.
    kind: ``"regression"`` or ``"classification"``; n_outputs: output units the network needs.
    info: extra tensors describing the episode (amplitudes, phases, chosen classes, ...).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    task_train: Tensor
    task_test: Tensor
    kind: str
    n_outputs: int
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.x_train.dim() < 3:
            raise ValueError(f"x_train must have shape (..., T, batch, n_in), got {tuple(self.x_train.shape)}")
        lead = self.x_train.shape[:-2]
        labels = self.kind == "classification"
        y_lead = self.y_train.shape if labels else self.y_train.shape[:-1]
        if y_lead != self.x_train.shape[:-1]:
            raise ValueError(f"y_train {tuple(self.y_train.shape)} does not match x_train {tuple(self.x_train.shape)}")
        if self.task_train.shape != lead:
            raise ValueError(f"task_train must have shape {tuple(lead)}, got {tuple(self.task_train.shape)}")
        y_test_lead = self.y_test.shape if labels else self.y_test.shape[:-1]
        if y_test_lead != self.x_test.shape[:-1] or self.task_test.shape != self.x_test.shape[:-1]:
            raise ValueError(f"x_test {tuple(self.x_test.shape)}, y_test {tuple(self.y_test.shape)} and task_test "
                             f"{tuple(self.task_test.shape)} disagree")
        if self.x_test.shape[-1] != self.x_train.shape[-1]:
            raise ValueError("x_train and x_test must have the same number of input features")

    @property
    def steps(self) -> int:
        """Number of training steps T in the lifetime."""
        return self.x_train.shape[-3]

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[-1]

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """The leading dimensions ``...`` (ensemble copies and/or meta-batch)."""
        return tuple(self.x_train.shape[:-3])

    @property
    def ensemble_size(self) -> int | None:
        """Size of the first leading dimension (K, or M for a single learner's meta-batch), else None."""
        return self.x_train.shape[0] if self.x_train.dim() >= 4 else None

    def to(self, device=None, dtype=None) -> "Episode":
        """A copy on ``device``; ``dtype`` applies to the floating tensors only."""
        def move(t):
            if not isinstance(t, Tensor):
                return t
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        return dataclasses.replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                                   x_test=move(self.x_test), y_test=move(self.y_test),
                                   task_train=move(self.task_train), task_test=move(self.task_test),
                                   info={k: move(v) for k, v in self.info.items()})

    def copy(self, k: int) -> "Episode":
        """Index ``k`` of the first leading dimension (ensemble copy k, or episode k of a meta-batch)."""
        if self.ensemble_size is None:
            raise ValueError("this episode has no ensemble dimension")
        if not 0 <= k < self.ensemble_size:
            raise ValueError(f"k must be in [0, {self.ensemble_size - 1}], got {k}")
        pick = lambda t: t[k] if isinstance(t, Tensor) else t  # noqa: E731
        return dataclasses.replace(self, x_train=pick(self.x_train), y_train=pick(self.y_train),
                                   x_test=pick(self.x_test), y_test=pick(self.y_test),
                                   task_train=pick(self.task_train), task_test=pick(self.task_test),
                                   info={key: pick(v) for key, v in self.info.items()})


def stack_episodes(episodes: list[Episode]) -> Episode:
    """Stack episodes (of equal shapes) into one with a new leading ensemble dimension K = len(episodes)."""
    if not episodes:
        raise ValueError("episodes must not be empty")
    first = episodes[0]
    if len({e.lead_shape for e in episodes}) != 1:
        raise ValueError(f"episodes must share their leading shape, got {sorted({e.lead_shape for e in episodes})}")
    kinds = {(e.kind, e.n_outputs) for e in episodes}
    if len(kinds) != 1:
        raise ValueError(f"episodes of different kinds cannot be stacked: {sorted(kinds)}")

    def stack(name):
        return torch.stack([getattr(e, name) for e in episodes])
    info = {key: torch.stack([e.info[key] for e in episodes]) for key in first.info
            if all(isinstance(e.info.get(key), Tensor) for e in episodes)}
    return Episode(stack("x_train"), stack("y_train"), stack("x_test"), stack("y_test"), stack("task_train"),
                   stack("task_test"), first.kind, first.n_outputs, info)
