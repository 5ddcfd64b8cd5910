"""The credit-assignment rule interface shared by every method in the book.

A rule answers one question: *what error signal does each layer use in place of* ``W_{l+1}ᵀ δ_{l+1}``?
It runs the forward pass, computes per-layer errors ``δ_l`` (estimates of ``∂L/∂a_l``), and writes the implied
``∂L/∂θ`` (autograd's sign convention, batch mean) into ``.grad``, so any ``torch.optim`` optimizer applies them.
It owns its feedback weights (buffers when fixed or learned by a closed form, parameters when an optimizer
updates them) and declares the objective it descends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..networks import MLP, Trace
from ..objectives import Objective, get_objective
from ..propagation import accumulate_grad, batch_mean_outer, without_grad
from .. import rng


@dataclass
class Credit:
    """What a rule computed for one batch.

    ``deltas[l-1]`` is the rule's ``δ_l`` for layer ``l`` (the last entry is the output error ``δ_L``, exact for
    the rule's objective); ``loss`` is the batch-mean loss, detached, ``()`` or ``(K,)`` for an ensemble.
    """

    trace: Trace
    output_delta: Tensor
    deltas: list[Tensor]
    loss: Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class CleanPass(NamedTuple):
    """What :meth:`CreditAssignmentRule.clean_pass` computed for one batch."""

    credit: Credit            # trace, δ_L, the rule's δ_l and the batch-mean loss
    target: Tensor            # the target as the objective compares it (class labels → one-hot rows under MSE)
    per_sample_loss: Tensor   # the clean loss of each sample, (..., batch)
    derivatives: list[Tensor]  # f_l'(a_l), l = 1..L, (..., batch, n_l)


class BufferList(nn.Module):
    """A list of tensors registered as buffers (``name.0``, ``name.1``, …) so ``.to()`` and ``state_dict()`` see them."""

    def __init__(self, tensors=()):
        super().__init__()
        self._length = 0
        for tensor in tensors:
            self.append(tensor)

    def append(self, tensor: Tensor) -> None:
        self.register_buffer(str(self._length), tensor)
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Tensor:
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._buffers[str(index)]

    def __setitem__(self, index: int, tensor: Tensor) -> None:
        if index < 0:
            index += self._length
        setattr(self, str(index), tensor)

    def __iter__(self):
        return iter(list(self._buffers.values()))  # "0", "1", … in order (a replaced buffer keeps its place)


def check_batch(network: MLP, x: Tensor, target: Tensor) -> None:
    """Clear errors for the bad inputs a rule can receive: wrong type or shape, empty batch, NaN/inf."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    network._check_input(x)
    if x.dtype != network.weights[0].dtype:
        raise ValueError(f"x has dtype {x.dtype} but the network's weights are {network.weights[0].dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    if target.is_floating_point() and not bool(torch.isfinite(target).all()):
        raise ValueError("target contains NaN or inf values")
    batch = x.shape[-2]
    if target.is_floating_point():  # regression rows (..., batch, n_out)
        fits = target.dim() >= 2 and target.shape[-2] == batch
    else:  # class labels (..., batch)
        fits = target.dim() >= 1 and target.shape[-1] == batch
    if not fits:
        raise ValueError(f"target must hold one entry (label or row) per sample of x: x has a batch of "
                         f"{x.shape[-2]}, target has shape {tuple(target.shape)}")


def target_rows(objective: Objective, output: Tensor, target: Tensor) -> Tensor:
    """The target as the objective compares it with the output: class labels become one-hot rows once per batch
    (for objectives with a ``target_matrix``, e.g. the squared error), so that the output error and the loss do
    not each convert and range-check the labels again. Other objectives get ``target`` unchanged."""
    to_rows = getattr(objective, "target_matrix", None)
    return target if to_rows is None else to_rows(output, target)


class CreditAssignmentRule(nn.Module):
    """Base class. Subclasses implement :meth:`hidden_deltas` (and, if they learn feedback, :meth:`update_feedback`).

    The network is a submodule, so ``rule.to(device)``, ``rule.state_dict()`` and ``rule.parameters()`` cover
    the network and the rule's own feedback weights together.
    """

    short_name = "rule"
    #: what the rule needs biologically, for the book's comparison table
    requirements: dict[str, bool] = {}
    #: the class of network the rule trains (the convolutional rules set ConvNet)
    network_type: type = MLP

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator: rng.Generators = None):
        super().__init__()
        if not isinstance(network, self.network_type):
            kind = self.network_type
            raise TypeError(f"network must be a {kind.__module__}.{kind.__name__}, got {type(network).__name__}")
        self.network = network
        self.objective = get_objective(objective)
        self.generator = generator  # the rule's own random stream (feedback init, noise, actions)

    # ------------------------------------------------------------------ what subclasses provide
    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        """The rule's ``[δ_1, …, δ_{L−1}]``."""
        raise NotImplementedError

    def feedback_matrices(self) -> list[Tensor] | None:
        """The matrices standing in for ``W_{l+1}ᵀ`` (shape ``(n_l, n_{l+1})``), or ``None`` when not layer-wise."""
        return None

    def update_feedback(self, credit: Credit) -> None:
        """Learn the feedback weights from this batch (no-op for fixed feedback)."""

    def divergence_hint(self) -> str:
        """Extra advice when training diverges (e.g. "or the noise level c")."""
        return ""

    # ------------------------------------------------------------------ the shared machinery
    def output_delta(self, trace: Trace, target: Tensor, derivatives: list[Tensor], *,
                     gradient: Tensor | None = None) -> Tensor:
        """``δ_L = f_L'(a_L) ⊙ ∂L/∂ŷ`` for the rule's objective (``gradient``: ``∂L/∂ŷ`` if already computed)."""
        if gradient is None:
            gradient = self.objective.output_gradient(trace.output, target)
        if self.network.activations[-1].name == "identity":  # f' = 1: δ_L is ∂L/∂ŷ itself
            return gradient
        return derivatives[-1] * gradient

    @without_grad
    def clean_pass(self, x: Tensor, target: Tensor) -> CleanPass:
        """:meth:`compute_credit`'s forward pass and errors, with what a rule that runs a second, noisy pass reuses
        (see :class:`CleanPass`). Writes nothing."""
        network, objective = self.network, self.objective
        trace = network.trace(x)
        target = target_rows(objective, trace.output, target)
        derivatives = network.derivatives(trace)
        per_sample, gradient = objective.loss_and_gradient(trace.output, target)
        output_delta = self.output_delta(trace, target, derivatives, gradient=gradient)
        deltas = self.hidden_deltas(trace, output_delta, derivatives) + [output_delta]
        loss = per_sample.mean(dim=-1)  # the batch mean, as objective(output, target)
        credit = Credit(trace=trace, output_delta=output_delta, deltas=deltas, loss=loss)
        return CleanPass(credit, target, per_sample, derivatives)

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        """Forward pass and error signals for one batch; writes nothing."""
        return self.clean_pass(x, target).credit

    def write_gradients(self, credit: Credit) -> None:
        """Write ``∂L/∂W_l = ⟨δ_l h_{l−1}ᵀ⟩`` and ``∂L/∂b_l = ⟨δ_l⟩`` into ``.grad`` (accumulating, like autograd)."""
        network = self.network
        for record, delta, weight, bias in zip(credit.trace.layers, credit.deltas, network.weight_list(),
                                               network.bias_list()):
            # both values are fresh tensors: they become .grad without a copy (owned)
            accumulate_grad(weight, batch_mean_outer(delta, record.presynaptic), owned=True)  # (..., n_l, n_{l-1})
            if bias is not None:
                accumulate_grad(bias, delta.mean(dim=-2), owned=True)  # (..., n_l)

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        """One batch: compute the credit, write ``.grad``, learn the feedback. Call ``optimizer.step()`` after."""
        if validate:
            check_batch(self.network, x, target)
        with torch.no_grad():  # one context for the whole step (the pieces inside enter none of their own)
            credit = self.compute_credit(x, target)
            self.write_gradients(credit)
            self.update_feedback(credit)
        return credit

    def extra_repr(self) -> str:
        return f"objective={self.objective.name}"
