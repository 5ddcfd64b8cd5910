"""Solution of book/assignments/a2_ridge_feedback.ipynb. Instructors only."""

import torch


def accumulate_sums(D, S, lambdas, deltas, rho):
    """D ← ρ D + Σ_b δ_b δ_bᵀ, S ← ρ S + Σ_b λ̂_b δ_bᵀ (in D's dtype)."""
    lambdas, deltas = lambdas.to(D.dtype), deltas.to(D.dtype)
    return rho * D + deltas.mT @ deltas, rho * S + lambdas.mT @ deltas


def solve_feedback(D, S, gamma):
    """B = S (γI + D)⁻¹ by solving V Bᵀ = Sᵀ (V symmetric), without an inverse."""
    V = D + gamma * torch.eye(D.shape[-1], dtype=D.dtype, device=D.device)
    return torch.linalg.solve(V, S.mT).mT
