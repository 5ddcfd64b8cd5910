"""SGD with one learning rate per ensemble copy, so a learning-rate sweep trains as one computation."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor


def check_learning_rate(lr, name: str = "lr") -> None:
    values = lr.tolist() if isinstance(lr, Tensor) else (list(lr) if isinstance(lr, (list, tuple)) else [lr])
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0) or value == float("inf"):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class EnsembleSGD(torch.optim.Optimizer):
    """Plain SGD, ``θ_k ← θ_k − η_k ∂L/∂θ_k``, where ``η`` holds one learning rate per ensemble copy.

    ``lr``: a float (all copies alike) or a sequence of K floats; parameters must have the ensemble
    dimension K first. With K = 1 or a float, this is ``torch.optim.SGD`` without momentum.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float | Sequence[float]):
        check_learning_rate(lr)
        super().__init__(params, {"lr": lr})
        self._rates: dict[tuple, Tensor] = {}  # per-copy rates as (K, 1, …, 1) tensors, built once

    def _rate(self, lr, p: Tensor) -> Tensor:
        """``η`` shaped ``(K, 1, …, 1)`` to broadcast against ``p`` (cached unless ``lr`` is a tensor)."""
        key = None if isinstance(lr, Tensor) else (tuple(lr), p.dtype, p.device, p.dim())
        rate = self._rates.get(key)
        if rate is None:
            rate = torch.as_tensor(lr, dtype=p.dtype, device=p.device)
            if rate.shape[0] != p.shape[0]:
                raise ValueError(f"lr lists {rate.shape[0]} learning rates but the parameter's "
                                 f"ensemble dimension is {p.shape[0]}")
            rate = rate.view(-1, *([1] * (p.dim() - 1)))
            if key is not None:
                self._rates[key] = rate
        return rate

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            per_copy = isinstance(lr, (list, tuple, Tensor))
            for p in group["params"]:
                if p.grad is None:
                    continue
                if per_copy:
                    p.addcmul_(self._rate(lr, p), p.grad, value=-1.0)  # θ_k −= η_k ∂L/∂θ_k, no temporary
                else:
                    p.add_(p.grad, alpha=-lr)  # θ −= η ∂L/∂θ, exactly torch.optim.SGD's update
        return loss
