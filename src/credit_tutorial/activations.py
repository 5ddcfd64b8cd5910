"""Elementwise nonlinearities f and their derivatives f', as the error-propagation rules need them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """A nonlinearity ``h = f(a)`` with its derivative ``f'(a)``.

    ``derivative(a, h)`` takes both the pre-activation ``a`` and the activity ``h = f(a)``, so that
    sigmoid and tanh reuse ``h`` instead of recomputing it.
    """

    name: str
    function: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor, Tensor], Tensor]
    smooth: bool  # analytic everywhere (assumption A2 of Lansdell et al. excludes ReLU)

    def __call__(self, a: Tensor) -> Tensor:
        return self.function(a)


def _sigmoid_derivative(a: Tensor, h: Tensor) -> Tensor:
    return h * (1.0 - h)  # σ'(a) = σ(a)(1 − σ(a))


def _tanh_derivative(a: Tensor, h: Tensor) -> Tensor:
    return 1.0 - h * h  # tanh'(a) = 1 − tanh(a)²


def _relu_derivative(a: Tensor, h: Tensor) -> Tensor:
    return (a > 0).to(a.dtype)  # 1 where the unit is active, 0 elsewhere (0 at a = 0, as autograd)


def _identity_derivative(a: Tensor, h: Tensor) -> Tensor:
    return torch.ones_like(a)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_derivative, smooth=True),
    "tanh": Activation("tanh", torch.tanh, _tanh_derivative, smooth=True),
    "relu": Activation("relu", torch.relu, _relu_derivative, smooth=False),
    "identity": Activation("identity", lambda a: a, _identity_derivative, smooth=True),
}


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (``sigmoid``, ``tanh``, ``relu``, ``identity``)."""
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None
