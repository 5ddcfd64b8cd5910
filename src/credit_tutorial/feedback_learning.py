"""Learning a feedback matrix ``B`` by regressing node-perturbation estimates on errors (Lansdell et al.).

For hidden layer ``l``, ``λ̂_l ≈ ∂L/∂h_l = W_{l+1}ᵀ δ_{l+1}``, so the least-squares regression of ``λ̂_l`` on
``δ_{l+1}`` recovers ``B_{l+1} ≈ W_{l+1}ᵀ``. Two learners of the same problem

    minimise  Σ_b ‖λ̂_b − B δ_b‖² + γ ‖B‖²:

- :class:`RidgeFeedback`: exact ridge with running sums ``V = γI + Σ δδᵀ``, ``S = Σ λ̂ δᵀ``, ``B = S V⁻¹``
  (optionally forgetting old samples with a factor ρ), solved with a Cholesky factorisation, never an inverse;
- :class:`SGDFeedback`: ``B ← B − η_B Σ_b (B δ_b − λ̂_b) δ_bᵀ`` (the batch *sum*, as the authors' code).

Both hold their state as buffers (``.to()``, ``state_dict()``) and accept a leading ensemble dimension. Their
per-step methods read the buffers from ``self._buffers``: on Python 3.11 the attribute ``self.B`` first fails the
ordinary lookup, building an AttributeError message, before ``nn.Module.__getattr__`` finds it (~0.6 µs each).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .propagation import without_grad


class StepCount:
    """Mixin for an ``nn.Module`` that counts its steps in a Python int, ``self._count``, saved in ``state_dict`` as
    the 0-d long buffer named by ``_count_buffer`` (and read back from it by ``load_state_dict``).

    Incrementing a tensor counter costs a tensor operation per step, and reading one (to decide whether to re-solve,
    or whether warm-up is over) is a synchronising operation; a Python int costs neither. The buffer is therefore
    written only when the state is saved: between saves, the count is ``_count``, not the buffer.
    """

    _count_buffer = "steps"
    _count = 0  # until the first step (the instance's own value lives in its __dict__)

    def _advance(self) -> int:
        """Count one step; return the new count. (Written to ``__dict__`` directly: ``nn.Module.__setattr__``, which
        checks whether the value is a parameter, buffer or submodule, costs about 1 µs.)"""
        count = self._count + 1
        self.__dict__["_count"] = count
        return count

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._buffers[self._count_buffer].fill_(self._count)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + self._count_buffer in state_dict:
            self.__dict__["_count"] = int(self._buffers[self._count_buffer])


def _sum_dtype(device) -> torch.dtype:
    """Running sums are kept in float64: in float32, adding the 10⁶-th small batch to a sum of 10⁶ batches keeps only a
    few of its digits, and B = S V⁻¹ amplifies those errors by the condition number of V. MPS has no float64."""
    return torch.float32 if device is not None and torch.device(device).type == "mps" else torch.float64


def _add_product(total: Tensor, left: Tensor, right: Tensor, *, alpha: float = 1.0) -> Tensor:
    """``total += alpha · left @ right`` in place. For 2-d operands it is one BLAS call (``addmm_``), which accumulates
    into ``total`` directly; the result can differ from ``total + alpha · (left @ right)`` in the last bit."""
    if total.dim() == left.dim() == right.dim() == 2:
        return total.addmm_(left, right, alpha=alpha)
    return total.add_(left @ right, alpha=alpha)


def _check_pair(lambdas: Tensor, deltas: Tensor, B: Tensor) -> None:
    if lambdas.shape[:-1] != deltas.shape[:-1]:
        raise ValueError(f"λ̂ and δ must hold the same samples: shapes {tuple(lambdas.shape)} and "
                         f"{tuple(deltas.shape)}")
    if lambdas.shape[-1] != B.shape[-2] or deltas.shape[-1] != B.shape[-1]:
        raise ValueError(f"B has shape {tuple(B.shape[-2:])} = (n_l, n_(l+1)), but λ̂ has {lambdas.shape[-1]} "
                         f"columns and δ {deltas.shape[-1]}")


class RidgeFeedback(StepCount, nn.Module):
    """Exact ridge regression of ``λ̂`` (n_l) on ``δ`` (n_{l+1}): ``B = S (γI + D)⁻¹``.

    ``D = Σ δδᵀ`` and ``S = Σ λ̂δᵀ`` are running sums over every sample seen, each multiplied by ``ρ`` per batch
    before the new batch is added (``ρ = 1``: plain accumulation). ``B`` is re-solved every ``solve_every``
    batches (the sums are always updated). ``B`` has ``dtype``; the sums and the solve use float64 (``sum_dtype``,
    float32 on MPS), whatever ``dtype`` is, and stay float64 when the module is moved or cast. The buffer ``batches``
    (batches seen) is written when the state is saved (:class:`StepCount`).
    """

    _count_buffer = "batches"

    def __init__(self, n_receiving: int, n_sending: int, *, gamma: float = 0.1, rho: float = 1.0,
                 solve_every: int = 1, lead: tuple[int, ...] = (), dtype=torch.float32, device=None,
                 sum_dtype: torch.dtype | None = None):
        super().__init__()
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma (ridge penalty γ) must be a finite number ≥ 0, got {gamma!r}")
        if not (isinstance(rho, (int, float)) and 0 < rho <= 1):
            raise ValueError(f"rho (forgetting factor ρ) must lie in (0, 1], got {rho!r}")
        if not (isinstance(solve_every, int) and solve_every >= 1):
            raise ValueError(f"solve_every must be a positive integer, got {solve_every!r}")
        self.gamma, self.rho, self.solve_every = float(gamma), float(rho), solve_every
        self.register_buffer("B", torch.zeros(*lead, n_receiving, n_sending, dtype=dtype, device=device))
        self._fixed_sum_dtype = sum_dtype
        sums = sum_dtype or _sum_dtype(device)
        self.register_buffer("D", torch.zeros(*lead, n_sending, n_sending, dtype=sums, device=device))
        self.register_buffer("S", torch.zeros(*lead, n_receiving, n_sending, dtype=sums, device=device))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long, device=device))
        # γI, kept so that V = γI + D is one addition (configuration: moved by .to(), not saved)
        self.register_buffer("_ridge", self.gamma * torch.eye(n_sending, dtype=sums, device=device), persistent=False)

    def _apply(self, fn, recurse=True):
        """``.to(dtype)``/``.float()`` cast ``B``; the running sums keep their (float64) summation dtype, except on
        MPS, which has no float64 (they are cast to float32 before the move)."""
        destination = fn(torch.zeros((), dtype=self.B.dtype, device=self.B.device)).device
        wanted = self._fixed_sum_dtype or _sum_dtype(destination)
        if self.D.dtype != wanted and destination.type == "mps":
            self.D, self.S, self._ridge = self.D.to(wanted), self.S.to(wanted), self._ridge.to(wanted)
        super()._apply(fn, recurse)
        if self.D.dtype != wanted:
            self.D, self.S, self._ridge = self.D.to(wanted), self.S.to(wanted), self._ridge.to(wanted)
        return self

    @without_grad
    def update(self, lambdas: Tensor, deltas: Tensor) -> Tensor:
        """Add a batch of pairs (``λ̂ (..., batch, n_l)``, ``δ (..., batch, n_{l+1})``) and re-solve when due."""
        buffers = self._buffers
        D, S = buffers["D"], buffers["S"]
        _check_pair(lambdas, deltas, S)  # S has B's shape, (..., n_l, n_{l+1})
        if self.rho != 1.0:
            D.mul_(self.rho)
            S.mul_(self.rho)
        deltas, lambdas = deltas.to(D.dtype), lambdas.to(D.dtype)
        _add_product(D, deltas.mT, deltas)   # D += Σ_b δ_b δ_bᵀ: (..., n_{l+1}, n_{l+1})
        _add_product(S, lambdas.mT, deltas)  # S += Σ_b λ̂_b δ_bᵀ: (..., n_l, n_{l+1})
        if self._advance() % self.solve_every == 0:
            return self.solve()
        return buffers["B"]

    @without_grad
    def solve(self) -> Tensor:
        """``B = S V⁻¹`` with ``V = γI + D`` symmetric: solve ``V Bᵀ = Sᵀ`` by Cholesky (least squares if γ = 0)."""
        buffers = self._buffers
        B, S = buffers["B"], buffers["S"]
        V = buffers["D"] + buffers["_ridge"]            # γI + D
        if self.gamma > 0:
            try:
                return B.copy_(torch.cholesky_solve(S.mT, torch.linalg.cholesky(V)).mT)
            except torch.linalg.LinAlgError:                # not positive definite (rounding): fall through
                pass
        # γ = 0 or a singular V: minimum-norm least squares
        return B.copy_(torch.linalg.lstsq(V, S.mT, driver="gelsd" if V.device.type == "cpu" else None).solution.mT)


def _check_feedback_lr(lr) -> float | list[float]:
    values = list(lr) if isinstance(lr, (list, tuple)) else [lr]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                             for v in values):
        raise ValueError(f"feedback_lr (η_B) must be a positive finite number, or one per ensemble copy, got {lr!r}")
    return [float(v) for v in values] if isinstance(lr, (list, tuple)) else float(lr)


class SGDFeedback(nn.Module):
    """Online least squares: ``B ← B − η_B Σ_b (B δ_b − λ̂_b) δ_bᵀ``.

    ``lr`` (η_B) is a float, or a list of K floats, one per ensemble copy (a feedback-learning-rate sweep as one
    computation; ``lead`` must then start with K).
    """

    def __init__(self, n_receiving: int, n_sending: int, *, lr: float | list[float], initial: Tensor | None = None,
                 lead: tuple[int, ...] = (), dtype=torch.float32, device=None):
        super().__init__()
        self.lr = _check_feedback_lr(lr)
        B = torch.zeros(*lead, n_receiving, n_sending, dtype=dtype, device=device) if initial is None \
            else initial.detach().clone()
        self.register_buffer("B", B)
        per_copy = isinstance(self.lr, list)
        if per_copy and (B.dim() < 3 or B.shape[0] != len(self.lr)):
            raise ValueError(f"feedback_lr lists {len(self.lr)} learning rates but B has shape {tuple(B.shape)}: "
                             "one per ensemble copy needs lead=(K,) with K learning rates")
        # (K, 1, 1) per-copy rates; not saved in state_dict (they are configuration), but moved by .to()
        self.register_buffer("_rates", torch.tensor(self.lr, dtype=B.dtype, device=B.device).view(-1, 1, 1)
                             if per_copy else None, persistent=False)

    @without_grad
    def update(self, lambdas: Tensor, deltas: Tensor) -> Tensor:
        B = self._buffers["B"]
        _check_pair(lambdas, deltas, B)
        if B.dim() == deltas.dim() == 2:  # one network: each line one fused matrix kernel (addmm)
            residual = torch.addmm(lambdas, deltas, B.mT, beta=-1)  # (batch, n_l): B δ_b − λ̂_b
        else:
            residual = deltas @ B.mT - lambdas                      # (..., batch, n_l)
        if isinstance(self.lr, float):
            _add_product(B, residual.mT, deltas, alpha=-self.lr)    # B −= η Σ_b residual_b δ_bᵀ
        else:
            B.sub_(self._rates * (residual.mT @ deltas))            # η_k per ensemble copy, (K, 1, 1)
        return B
