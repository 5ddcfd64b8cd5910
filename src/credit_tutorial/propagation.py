"""The one shared piece of every rule: carry an output error down to the hidden layers.

With feedback matrices ``B_{l+1} = W_{l+1}ᵀ`` this is backprop; with fixed random ``B`` it is feedback alignment;
with learned ``B`` it is the Lansdell et al. rule; with an error on the chosen action only it is Q-AGREL.
Feedback matrices follow the notation of REFERENCE.md: ``B_{l+1}`` has the shape of ``W_{l+1}ᵀ``, ``(n_l, n_{l+1})``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from .networks import Trace


def without_grad(function):
    """Decorator: run ``function`` with autograd off, like ``@torch.no_grad()``, but enter that context only when
    gradients are on. A rule's step already runs under ``no_grad``, and entering it again costs about 1.3 µs per call
    on a CPU, several times per step (``torch.is_grad_enabled()`` costs 0.05 µs)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if torch.is_grad_enabled():
            with torch.no_grad():
                return function(*args, **kwargs)
        return function(*args, **kwargs)
    return wrapper


def propagate_down(output_delta: Tensor, feedback: Sequence[Tensor], derivatives: Sequence[Tensor]) -> list[Tensor]:
    """Layer-by-layer errors ``[δ_1, …, δ_L]`` from ``δ_L`` and feedback ``[B_2, …, B_L]``.

    ``δ_l = f'(a_l) ⊙ (B_{l+1} δ_{l+1})``, written batch-major as ``f'(a_l) * (δ_{l+1} @ B_{l+1}ᵀ)``.

    output_delta: ``δ_L``, ``(..., batch, n_L)``.
    feedback: ``L − 1`` matrices, ``B_{l+1}`` of shape ``(..., n_l, n_{l+1})``.
    derivatives: ``f_l'(a_l)`` for ``l = 1..L`` (the last is not used) or ``1..L−1``.
    """
    if len(feedback) != len(derivatives) - 1 and len(feedback) != len(derivatives):
        raise ValueError(f"feedback lists {len(feedback)} matrices but derivatives {len(derivatives)} layers; "
                         "need one feedback matrix per hidden layer")
    deltas = [output_delta]
    for B, f_prime in zip(reversed(feedback), reversed(derivatives[: len(feedback)])):
        deltas.append(f_prime * (deltas[-1] @ B.mT))  # (..., batch, n_{l+1}) @ (..., n_{l+1}, n_l)
    return deltas[::-1]


def broadcast_direct(output_delta: Tensor, feedback: Sequence[Tensor], derivatives: Sequence[Tensor]) -> list[Tensor]:
    """Direct feedback: every hidden layer receives the output error through its own matrix.

    ``δ_l = f'(a_l) ⊙ (B_l δ_L)`` with ``B_l`` of shape ``(..., n_l, n_L)`` for ``l = 1..L−1``; returns
    ``[δ_1, …, δ_L]`` with ``δ_L`` the output error itself.
    """
    if len(feedback) not in (len(derivatives), len(derivatives) - 1):
        raise ValueError(f"direct feedback needs one matrix per hidden layer ({len(derivatives) - 1}), "
                         f"got {len(feedback)}")
    hidden = [f_prime * (output_delta @ B.mT) for B, f_prime in zip(feedback, derivatives)]
    return hidden + [output_delta]


def backprop_deltas(weights: Sequence[Tensor], derivatives: Sequence[Tensor], output_delta: Tensor) -> list[Tensor]:
    """Backprop's ``[δ_1, …, δ_L]``: :func:`propagate_down` with the transported weights ``B_{l+1} = W_{l+1}ᵀ``."""
    return propagate_down(output_delta, [W.mT for W in weights[1:]], derivatives)


def batch_mean_outer(delta: Tensor, presynaptic: Tensor) -> Tensor:
    """``⟨δ hᵀ⟩ = δᵀ h / batch``, ``(..., n_out, n_in)``, from ``δ (..., batch, n_out)`` and ``h (..., batch, n_in)``.

    The division is done in place on the product, so the only new tensor is the result: for an ensemble's
    ``(K, n_out, n_in)`` gradient a second temporary of that size costs more than the product itself.
    """
    return torch.matmul(delta.mT, presynaptic).div_(delta.shape[-2])  # (..., n_out, batch) @ (..., batch, n_in)


def weight_gradients(trace: Trace, deltas: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Batch-mean ``(∂L/∂W_l, ∂L/∂b_l) = (⟨δ_l h_{l-1}ᵀ⟩, ⟨δ_l⟩)`` for every layer, from the given errors."""
    return [(batch_mean_outer(delta, record.presynaptic), delta.mean(dim=-2))
            for record, delta in zip(trace.layers, deltas)]


def accumulate_grad(parameter: torch.nn.Parameter, value: Tensor, *, owned: bool = False) -> None:
    """Add ``value`` to ``parameter.grad`` as autograd would (creating it when absent).

    ``owned=True`` says ``value`` is a fresh tensor that nothing else holds or changes: it then becomes ``.grad``
    itself instead of a copy (a gradient written into two parameters, e.g. ``W`` and ``W′ = Wᵀ``, is not owned).
    """
    if value.requires_grad:
        value = value.detach()
    if value.shape != parameter.shape:
        raise ValueError(f"gradient of shape {tuple(value.shape)} does not fit parameter {tuple(parameter.shape)}")
    if parameter.grad is None:
        parameter.grad = value if owned else value.clone()
    else:
        parameter.grad.add_(value)
