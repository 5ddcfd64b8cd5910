"""Objectives: the per-sample loss a rule descends and its exact gradient with respect to the output.

Every rule declares its objective, so that "compare with backprop" always means backprop on the same loss.
Losses are averaged over the batch (autograd's ``mean`` convention); ``output_gradient`` is per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor


def one_hot(labels: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """``(..., batch)`` integer labels → ``(..., batch, n_classes)`` one-hot rows of ``dtype`` (exact 0s and 1s).

    Six tensor operations (one pass for the range check, two reads of it, then zeros with a 1 scattered into each
    row), where ``min``/``max`` checks, ``F.one_hot`` (which checks the range again) and a cast take thirteen: on a
    CPU each costs a few microseconds, a sizeable part of a small network's training step.
    """
    labels = labels.long()
    if labels.numel():
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= n_classes:
            raise ValueError(f"labels must lie in [0, {n_classes - 1}], got values in [{low}, {high}]")
    rows = torch.zeros(*labels.shape, n_classes, dtype=dtype, device=labels.device)  # (..., batch, n_classes)
    return rows.scatter_(-1, labels.unsqueeze(-1), 1.0)


class Objective:
    """Base class: subclasses define ``per_sample`` and ``output_gradient``."""

    name = "objective"

    def per_sample(self, output: Tensor, target: Tensor) -> Tensor:  # (..., batch)
        raise NotImplementedError

    def output_gradient(self, output: Tensor, target: Tensor) -> Tensor:  # (..., batch, n_out)
        raise NotImplementedError

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``(per_sample, output_gradient)`` together; subclasses share what the two have in common."""
        return self.per_sample(output, target), self.output_gradient(output, target)

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """Batch-mean loss, ``(...)`` (a scalar for a single network, ``(K,)`` for an ensemble)."""
        return self.per_sample(output, target).mean(dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredError(Objective):
    """``L = ½ ‖ŷ − y‖²`` per sample; integer class labels are turned into one-hot targets."""

    name = "squared error (½‖ŷ − y‖², one-hot targets)"

    def target_matrix(self, output: Tensor, target: Tensor) -> Tensor:
        if target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            return one_hot(target, output.shape[-1], output.dtype)
        if target.shape[-1] != output.shape[-1]:
            raise ValueError(f"target must have {output.shape[-1]} columns like the output, or be class "
                             f"labels; got shape {tuple(target.shape)}")
        return target

    def per_sample(self, output: Tensor, target: Tensor) -> Tensor:
        return 0.5 * (output - self.target_matrix(output, target)).square().sum(dim=-1)

    def output_gradient(self, output: Tensor, target: Tensor) -> Tensor:
        return output - self.target_matrix(output, target)  # ∂L/∂ŷ = ŷ − y

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The error ``e = ŷ − y`` once: ``(½‖e‖², e)`` (the same numbers as the two methods)."""
        error = output - self.target_matrix(output, target)  # (..., batch, n_out)
        return 0.5 * error.square().sum(dim=-1), error


class SoftmaxCrossEntropy(Objective):
    """``L = −log softmax(ŷ)_y`` per sample, on a linear (identity) output layer; targets are class labels."""

    name = "softmax cross-entropy"

    def per_sample(self, output: Tensor, target: Tensor) -> Tensor:
        log_p = torch.log_softmax(output, dim=-1)
        return -log_p.gather(-1, target.long().expand(log_p.shape[:-1]).unsqueeze(-1)).squeeze(-1)

    def output_gradient(self, output: Tensor, target: Tensor) -> Tensor:
        return torch.softmax(output, dim=-1) - one_hot(target, output.shape[-1], output.dtype)

    def loss_and_gradient(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The gradient first: its one-hot encoding checks the labels' range before the loss indexes with them."""
        gradient = self.output_gradient(output, target)
        return self.per_sample(output, target), gradient


OBJECTIVES = {"mse": SquaredError, "cross_entropy": SoftmaxCrossEntropy}


def get_objective(name: str | Objective) -> Objective:
    """``"mse"`` or ``"cross_entropy"`` (or an :class:`Objective`, returned as is)."""
    if isinstance(name, Objective):
        return name
    try:
        return OBJECTIVES[name]()
    except (KeyError, TypeError):
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {name!r}") from None
