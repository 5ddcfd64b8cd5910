"""How close is a rule to backprop? Angles, relative errors and sign congruence.

All functions accept an optional leading ensemble dimension and then return one value per copy.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from . import rng
from .propagation import backprop_deltas, weight_gradients


def angle(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample angle in degrees between rows of ``a`` and ``b`` (``(..., batch, n)`` → ``(..., batch)``).

    Identical directions give 0°, orthogonal 90°, opposite 180°. A row that is all zeros has no direction:
    its angle is NaN (and :func:`mean_angle` leaves it out).
    """
    if a.shape != b.shape:
        raise ValueError(f"angle needs tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dot = (a * b).sum(dim=-1)
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms, torch.full_like(dot, math.nan))
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def mean_angle(a: Tensor, b: Tensor) -> Tensor:
    """The per-sample :func:`angle` averaged over the batch (NaNs from zero rows left out), ``(...)``."""
    return angle(a, b).nanmean(dim=-1)


def matrix_angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees between two matrices (or weight updates) seen as flat vectors, ``(..., m, n)`` → ``(...)``."""
    return angle(a.flatten(start_dim=-2), b.flatten(start_dim=-2))


def relative_error(W: Tensor, B: Tensor) -> Tensor:
    """``‖W − Bᵀ‖_F / ‖W‖_F``: how far the feedback matrix ``B`` (shape of ``Wᵀ``) is from transport."""
    if B.mT.shape != W.shape:
        raise ValueError(f"B must have the shape of Wᵀ, {tuple(W.mT.shape)}; got {tuple(B.shape)}")
    return (W - B.mT).flatten(start_dim=-2).norm(dim=-1) / W.flatten(start_dim=-2).norm(dim=-1)


def sign_congruence(W: Tensor, B: Tensor) -> Tensor:
    """Fraction of entries where ``sign(Bᵀ) = sign(W)`` (0.5 for unrelated random matrices)."""
    if B.mT.shape != W.shape:
        raise ValueError(f"B must have the shape of Wᵀ, {tuple(W.mT.shape)}; got {tuple(B.shape)}")
    return (torch.sign(W) == torch.sign(B.mT)).to(W.dtype).flatten(start_dim=-2).mean(dim=-1)


def feedback_report(rule) -> dict[str, list]:
    """Per hidden layer: relative error, sign congruence and angle (degrees) of the rule's feedback ``B_{l+1}``
    against ``W_{l+1}ᵀ``.

    Empty lists for a rule without layer-wise feedback matrices (e.g. direct feedback).
    """
    matrices = rule.feedback_matrices()
    report = {"relative_error": [], "sign_congruence": [], "feedback_angle": []}
    if matrices is None:
        return report
    for W, B in zip(list(rule.network.weights)[1:], matrices):
        W = W.detach()
        report["relative_error"].append(_to_python(relative_error(W, B)))
        report["sign_congruence"].append(_to_python(sign_congruence(W, B)))
        report["feedback_angle"].append(_to_python(matrix_angle(W, B.mT)))
    return report


def compare_with_backprop(rule, x: Tensor, target: Tensor) -> dict[str, list]:
    """Measure a rule against backprop *on the rule's own objective*, on one batch, without side effects.

    Both use the same forward pass and the same output error ``δ_L`` (so for Q-AGREL, the same selected
    action). Returns, per hidden layer ``l = 1..L−1``: ``delta_angle`` (mean per-sample angle between the
    rule's ``δ_l`` and backprop's, degrees) and ``update_angle`` (angle between the weight updates
    ``⟨δ_l h_{l−1}ᵀ⟩``). The rule's random generator is restored afterwards, so measuring does not change
    the training run.
    """
    state = rng.generator_states(rule.generator)
    try:
        credit = rule.compute_credit(x, target)
    finally:
        rng.set_generator_states(rule.generator, state)
    with torch.no_grad():
        derivatives = rule.network.derivatives(credit.trace)
        exact = backprop_deltas(list(rule.network.weights), derivatives, credit.output_delta)
        rule_updates = weight_gradients(credit.trace, credit.deltas)
        exact_updates = weight_gradients(credit.trace, exact)
        hidden = range(len(exact) - 1)
        return {
            "delta_angle": [_to_python(mean_angle(credit.deltas[i], exact[i])) for i in hidden],
            "update_angle": [_to_python(matrix_angle(rule_updates[i][0], exact_updates[i][0])) for i in hidden],
        }


def _to_python(value: Tensor):
    """A float for a scalar, a list of floats for an ensemble."""
    return value.detach().cpu().tolist()


def error_rate(output: Tensor, labels: Tensor) -> Tensor:
    """Fraction of samples whose arg-max output is not the label, ``(...)``."""
    return (output.argmax(dim=-1) != labels).to(output.dtype).mean(dim=-1)


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a list of floats."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
