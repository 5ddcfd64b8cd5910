"""Learning a feedback matrix ``B`` by regressing node-perturbation estimates on errors (Lansdell et al.).

For hidden layer ``l``, ``λ̂_l ≈ ∂L/∂h_l = W_{l+1}ᵀ δ_{l+1}``, so the least-squares regression of ``λ̂_l`` on
``δ_{l+1}`` recovers ``B_{l+1} ≈ W_{l+1}ᵀ``. Two learners of the same problem

    minimise  Σ_b ‖λ̂_b − B δ_b‖² + γ ‖B‖²:

- :class:`RidgeFeedback`: exact ridge with running sums ``V = γI + Σ δδᵀ``, ``S = Σ λ̂ δᵀ``, ``B = S V⁻¹``
  (optionally forgetting old samples with a factor ρ), solved with a Cholesky factorisation, never an inverse;
- :class:`SGDFeedback`: ``B ← B − η_B Σ_b (B δ_b − λ̂_b) δ_bᵀ`` (the batch *sum*, as the authors' code).

Both hold their state as buffers (``.to()``, ``state_dict()``) and accept a leading ensemble dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _check_pair(lambdas: Tensor, deltas: Tensor, B: Tensor) -> None:
    if lambdas.shape[:-1] != deltas.shape[:-1]:
        raise ValueError(f"λ̂ and δ must hold the same samples: shapes {tuple(lambdas.shape)} and "
                         f"{tuple(deltas.shape)}")
    if lambdas.shape[-1] != B.shape[-2] or deltas.shape[-1] != B.shape[-1]:
        raise ValueError(f"B has shape {tuple(B.shape[-2:])} = (n_l, n_(l+1)), but λ̂ has {lambdas.shape[-1]} "
                         f"columns and δ {deltas.shape[-1]}")


class RidgeFeedback(nn.Module):
    """Exact ridge regression of ``λ̂`` (n_l) on ``δ`` (n_{l+1}): ``B = S (γI + D)⁻¹``.

    ``D = Σ δδᵀ`` and ``S = Σ λ̂δᵀ`` are running sums over every sample seen, each multiplied by ``ρ`` per batch
    before the new batch is added (``ρ = 1``: plain accumulation). ``B`` is re-solved every ``solve_every``
    batches (the sums are always updated).
    """

    def __init__(self, n_receiving: int, n_sending: int, *, gamma: float = 0.1, rho: float = 1.0,
                 solve_every: int = 1, lead: tuple[int, ...] = (), dtype=torch.float32, device=None):
        super().__init__()
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma (ridge penalty γ) must be a finite number ≥ 0, got {gamma!r}")
        if not (isinstance(rho, (int, float)) and 0 < rho <= 1):
            raise ValueError(f"rho (forgetting factor ρ) must lie in (0, 1], got {rho!r}")
        if not (isinstance(solve_every, int) and solve_every >= 1):
            raise ValueError(f"solve_every must be a positive integer, got {solve_every!r}")
        self.gamma, self.rho, self.solve_every = float(gamma), float(rho), solve_every
        self.register_buffer("B", torch.zeros(*lead, n_receiving, n_sending, dtype=dtype, device=device))
        self.register_buffer("D", torch.zeros(*lead, n_sending, n_sending, dtype=dtype, device=device))
        self.register_buffer("S", torch.zeros(*lead, n_receiving, n_sending, dtype=dtype, device=device))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long, device=device))

    @torch.no_grad()
    def update(self, lambdas: Tensor, deltas: Tensor) -> Tensor:
        """Add a batch of pairs (``λ̂ (..., batch, n_l)``, ``δ (..., batch, n_{l+1})``) and re-solve when due."""
        _check_pair(lambdas, deltas, self.B)
        if self.rho != 1.0:
            self.D.mul_(self.rho)
            self.S.mul_(self.rho)
        self.D.add_(deltas.mT @ deltas)   # Σ_b δ_b δ_bᵀ: (..., n_{l+1}, n_{l+1})
        self.S.add_(lambdas.mT @ deltas)  # Σ_b λ̂_b δ_bᵀ: (..., n_l, n_{l+1})
        self.batches.add_(1)
        if int(self.batches) % self.solve_every == 0:
            self.solve()
        return self.B

    @torch.no_grad()
    def solve(self) -> Tensor:
        """``B = S V⁻¹`` with ``V = γI + D`` symmetric: solve ``V Bᵀ = Sᵀ`` by Cholesky (least squares if γ = 0)."""
        n = self.D.shape[-1]
        V = self.D + self.gamma * torch.eye(n, dtype=self.D.dtype, device=self.D.device)
        factor, info = torch.linalg.cholesky_ex(V)
        if self.gamma > 0 and not bool(info.any()):
            self.B.copy_(torch.cholesky_solve(self.S.mT, factor).mT)
        else:  # γ = 0 or a singular V: minimum-norm least squares
            self.B.copy_(torch.linalg.lstsq(V, self.S.mT, driver="gelsd" if V.device.type == "cpu" else None)
                         .solution.mT)
        return self.B


class SGDFeedback(nn.Module):
    """Online least squares: ``B ← B − η_B Σ_b (B δ_b − λ̂_b) δ_bᵀ``."""

    def __init__(self, n_receiving: int, n_sending: int, *, lr: float, initial: Tensor | None = None,
                 lead: tuple[int, ...] = (), dtype=torch.float32, device=None):
        super().__init__()
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"feedback_lr (η_B) must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        B = torch.zeros(*lead, n_receiving, n_sending, dtype=dtype, device=device) if initial is None \
            else initial.detach().clone()
        self.register_buffer("B", B)

    @torch.no_grad()
    def update(self, lambdas: Tensor, deltas: Tensor) -> Tensor:
        _check_pair(lambdas, deltas, self.B)
        residual = deltas @ self.B.mT - lambdas          # (..., batch, n_l): B δ_b − λ̂_b
        self.B.sub_(self.lr * (residual.mT @ deltas))    # Σ_b residual_b δ_bᵀ
        return self.B
