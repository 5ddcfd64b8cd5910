"""Oja's rule (Oja 1982) and plain Hebbian learning, vectorised over the batch, with per-synapse plasticity.

A layer with weights ``W`` (``(..., n_post, n_pre)``) sees presynaptic activity ``x`` (``(..., batch, n_pre)``) and
postsynaptic activity ``y`` (``(..., batch, n_post)``). Per synapse ``(i, j)`` and sample ``b``:

- Hebb: ``ΔW_ij = P_ij Σ_b y_bi x_bj``
- Oja:  ``ΔW_ij = P_ij Σ_b (y_bi x_bj − y_bi² W_ij)``, i.e. ``ΔW = P ⊙ (yᵀx − diag(Σ_b y²) W)``

(``reduction="mean"`` divides by the batch size). Each row of ``W`` follows the single-neuron Oja rule
``w ← w + α (y x − y² w)``, whose averaged dynamics have the top principal component of the input, with unit
norm, as their stable fixed point (chapter 10). The FLP lifetime (Lindsey & Litwin-Kumar 2020) applies the layer
form with ``y`` the feedback-nudged target activity and ``x`` the feedforward presynaptic activity.

The ``averaged_*`` helpers implement the deterministic averaged map for zero-mean inputs with covariance ``C``:
``w ← w + α (C w − (wᵀ C w) w)`` (Oja) and ``w ← w + α C w`` (Hebb).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_REDUCTIONS = ("sum", "mean")


def _check_layer(weight: Tensor, pre: Tensor, post: Tensor) -> None:
    for name, value in (("weight", weight), ("pre", pre), ("post", post)):
        if not isinstance(value, Tensor) or value.dim() < 2:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a tensor with at least 2 dimensions, got {got}")
    if pre.shape[-2] != post.shape[-2]:
        raise ValueError(f"pre and post must have the same batch size, got pre {tuple(pre.shape)} and "
                         f"post {tuple(post.shape)}")
    if weight.shape[-2:] != (post.shape[-1], pre.shape[-1]):
        raise ValueError(f"weight must have shape (..., n_post, n_pre) = (..., {post.shape[-1]}, {pre.shape[-1]}) "
                         f"to match post {tuple(post.shape)} and pre {tuple(pre.shape)}, got {tuple(weight.shape)}")


def _check_plasticity(plasticity, weight: Tensor) -> None:
    if isinstance(plasticity, Tensor):
        try:
            torch.broadcast_shapes(plasticity.shape, weight.shape)
        except RuntimeError:
            raise ValueError(f"plasticity of shape {tuple(plasticity.shape)} does not broadcast against the weight "
                             f"{tuple(weight.shape)}; use a scalar, (n_post, 1), (n_post, n_pre) or (K, 1, 1)") from None
        if not plasticity.requires_grad and bool((plasticity < 0).any()):
            raise ValueError(f"plasticity must be >= 0 (a rate), got a minimum of {float(plasticity.min()):.4g}")
    elif isinstance(plasticity, (int, float)) and not isinstance(plasticity, bool):
        if not (plasticity >= 0 and math.isfinite(plasticity)):
            raise ValueError(f"plasticity must be a finite number >= 0, got {plasticity!r}")
    else:
        raise ValueError(f"plasticity must be a number or a tensor, got {type(plasticity).__name__}")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def hebb_update(weight: Tensor, pre: Tensor, post: Tensor, plasticity: float | Tensor = 1.0, *,
                reduction: str = "sum", validate: bool = True) -> Tensor:
    """Plain Hebbian update ``ΔW = P ⊙ (yᵀ x)``, summed (or averaged) over the batch; shape of ``weight``."""
    if validate:
        _check_layer(weight, pre, post)
        _check_plasticity(plasticity, weight)
    _check_reduction(reduction)
    hebbian = post.mT @ pre  # Σ_b y_bi x_bj: (..., n_post, batch) @ (..., batch, n_pre)
    if reduction == "mean":
        hebbian = hebbian / pre.shape[-2]
    return plasticity * hebbian


def oja_update(weight: Tensor, pre: Tensor, post: Tensor, plasticity: float | Tensor = 1.0, *,
               reduction: str = "sum", validate: bool = True) -> Tensor:
    """Oja's update ``ΔW = P ⊙ (yᵀx − diag(Σ_b y²) W)`` for a whole layer and batch; shape of ``weight``.

    weight: ``(..., n_post, n_pre)``; pre ``x``: ``(..., batch, n_pre)``; post ``y``: ``(..., batch, n_post)``;
    plasticity ``P``: a number or a tensor broadcasting against ``weight`` (per synapse, per neuron, per copy).
    """
    if validate:
        _check_layer(weight, pre, post)
        _check_plasticity(plasticity, weight)
    _check_reduction(reduction)
    decay = post.square().sum(dim=-2).unsqueeze(-1) * weight  # Σ_b y_bi² W_ij, (..., n_post, n_pre)
    change = _add_matmul(decay, post.mT, pre, beta=-1.0)      # Σ_b y_bi x_bj − Σ_b y_bi² W_ij
    if reduction == "mean":
        change = change / pre.shape[-2]
    return plasticity * change


def _add_matmul(input: Tensor, a: Tensor, b: Tensor, *, beta: float = 1.0) -> Tensor:
    """``beta · input + a @ b`` as one fused kernel when the shapes allow it (2-d or equal 3-d batches)."""
    if input.dim() == a.dim() == b.dim() == 2:
        return torch.addmm(input, a, b, beta=beta)
    if input.dim() == a.dim() == b.dim() == 3 and input.shape[0] == a.shape[0] == b.shape[0]:
        return torch.baddbmm(input, a, b, beta=beta)
    return beta * input + a @ b


# ---------------------------------------------------------------------------------------------- a single neuron
def oja_neuron_online(w0: Tensor, inputs: Tensor, alpha: float | Tensor, *, hebbian: bool = False) -> Tensor:
    """Run the single-neuron rule ``y = wᵀx, w ← w + α (y x − y² w)`` over a stream, one sample at a time.

    w0: ``(..., n)``; inputs: ``(T, n)`` or ``(..., T, n)``; alpha: a number or a tensor of shape ``(...)`` (one
    learning rate per copy, so a sweep over α runs as one computation). ``hebbian=True`` drops the decay term.
    Returns the trajectory ``(..., T + 1, n)`` (``w0`` first).
    """
    if not isinstance(w0, Tensor) or w0.dim() < 1:
        raise ValueError("w0 must be a tensor of shape (..., n)")
    if not isinstance(inputs, Tensor) or inputs.dim() < 2 or inputs.shape[-1] != w0.shape[-1]:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must have shape (T, {w0.shape[-1]}) or (..., T, {w0.shape[-1]}), got {got}")
    alpha = torch.as_tensor(alpha, dtype=w0.dtype, device=w0.device)
    if bool((alpha <= 0).any()) or not bool(torch.isfinite(alpha).all()):
        raise ValueError(f"alpha must be positive and finite, got {alpha.tolist()}")
    alpha = alpha.unsqueeze(-1)  # (..., 1) against w (..., n)
    w, path = w0, [w0]
    for t in range(inputs.shape[-2]):                  # online: time is sequential, copies are batched
        x = inputs[..., t, :]
        y = (w * x).sum(dim=-1, keepdim=True)          # (..., 1)
        dw = y * x if hebbian else y * x - y * y * w
        w = w + alpha * dw
        path.append(w)
    return torch.stack(path, dim=-2)


# ------------------------------------------------------------------------------------------- averaged dynamics
def _check_covariance(covariance: Tensor) -> None:
    if not isinstance(covariance, Tensor) or covariance.dim() != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError("covariance must be a square (n, n) tensor")
    if not torch.allclose(covariance, covariance.mT, atol=1e-10 + 1e-6 * float(covariance.abs().max())):
        raise ValueError("covariance must be symmetric")


def averaged_oja_field(w: Tensor, covariance: Tensor) -> Tensor:
    """The expected Oja update per unit α for zero-mean inputs: ``C w − (wᵀ C w) w``, ``w (..., n)``."""
    Cw = w @ covariance  # C is symmetric: (..., n)
    return Cw - (w * Cw).sum(dim=-1, keepdim=True) * w


def averaged_oja(w0: Tensor, covariance: Tensor, alpha: float | Tensor, steps: int, *,
                 hebbian: bool = False) -> Tensor:
    """Iterate the averaged map ``w ← w + α (C w − (wᵀCw) w)`` (or ``w + α C w`` for Hebb) ``steps`` times.

    ``alpha`` may hold one value per copy (shape ``(...)`` of ``w0 (..., n)``). Returns ``(..., steps + 1, n)``.
    """
    _check_covariance(covariance)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    alpha = torch.as_tensor(alpha, dtype=w0.dtype, device=w0.device)
    if bool((alpha <= 0).any()):
        raise ValueError(f"alpha must be positive, got {alpha.tolist()}")
    alpha = alpha.unsqueeze(-1)
    w, path = w0, [w0]
    for _ in range(steps):
        w = w + alpha * ((w @ covariance) if hebbian else averaged_oja_field(w, covariance))
        path.append(w)
    return torch.stack(path, dim=-2)


def top_principal_component(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """The largest eigenvalue ``λ₁`` and its unit eigenvector of a symmetric ``covariance`` (sign: first
    nonzero entry positive)."""
    _check_covariance(covariance)
    values, vectors = torch.linalg.eigh(covariance)
    v = vectors[:, -1]
    first = v[v.abs() > 1e-12 * v.abs().max()][0]
    return values[-1], v * torch.sign(first)


def critical_learning_rate(covariance: Tensor) -> float:
    """``1/λ₁``: the averaged Oja map is locally stable at ``±v₁`` exactly for ``0 < α < 1/λ₁`` (chapter 10)."""
    top, _ = top_principal_component(covariance)
    if not float(top) > 0:
        raise ValueError("covariance must have a positive largest eigenvalue")
    return 1.0 / float(top)


def averaged_oja_jacobian(covariance: Tensor, alpha: float) -> Tensor:
    """Jacobian of the averaged Oja map at its fixed point ``v₁``: ``I + α (C − λ₁ I − 2 λ₁ v₁ v₁ᵀ)``."""
    top, v = top_principal_component(covariance)
    eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    return eye + alpha * (covariance - top * eye - 2 * top * torch.outer(v, v))


def alignment(w: Tensor, v: Tensor) -> Tensor:
    """``|cos|`` between ``w (..., n)`` and a direction ``v (n,)`` (a principal component has no sign)."""
    return (w @ v).abs() / (w.norm(dim=-1) * v.norm())
