"""A vanilla recurrent network whose forward pass records what the credit-assignment rules need.

Notation (REFERENCE.md, with time as the layer index):

    a_t = U x_t + W h_{t−1} + b,     h_t = tanh(a_t),     ŷ_t = V h_t + c,

``U`` (n_h, n_in) input weights, ``W`` (n_h, n_h) recurrent weights, ``V`` (n_out, n_h) readout. Sequences are
time-major: ``x (..., T, batch, n_in)``; each step is batch-major ``(..., batch, n)``; an ensemble of K copies
puts K first in every weight and activity (``W (K, n_h, n_h)``, ``h (K, batch, n_h)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import rng


@dataclass
class RecurrentTrace:
    """Everything one pass over a window computed.

    inputs ``x (..., T, batch, n_in)``; initial_state ``h_{−1} (..., batch, n_h)``; pre_activations ``a`` and
    hidden ``h`` ``(..., T, batch, n_h)`` (``h`` includes the noise of a perturbed pass); outputs ``ŷ (..., T, batch,
    n_out)``.
    """

    inputs: Tensor
    initial_state: Tensor
    pre_activations: Tensor
    hidden: Tensor
    outputs: Tensor
    perturbed: bool = False

    @property
    def steps(self) -> int:
        return self.hidden.shape[-3]

    @property
    def final_state(self) -> Tensor:
        return self.hidden[..., -1, :, :]

    @property
    def previous_hidden(self) -> Tensor:
        """``h_{t−1}`` for ``t = 0..T−1`` (the initial state first), ``(..., T, batch, n_h)``."""
        return torch.cat([self.initial_state.unsqueeze(-3), self.hidden[..., :-1, :, :]], dim=-3)


def add_product(base: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``base + left @ right`` in one fused call where the shapes allow (2-d: addmm, 3-d: baddbmm)."""
    if base.dim() == left.dim() == right.dim() == 2:
        return torch.addmm(base, left, right)
    if base.dim() == left.dim() == right.dim() == 3 and base.shape[0] == left.shape[0] == right.shape[0]:
        return torch.baddbmm(base, left, right)
    return base + left @ right


def _glorot(shape, generator, dtype, device) -> Tensor:
    """``N(0, 2/(fan_in + fan_out))``: the variance of the Glorot-uniform initialiser of the authors' TF code."""
    n_out, n_in = shape
    return rng.normal(shape, generator, std=math.sqrt(2.0 / (n_in + n_out)), dtype=dtype, device=device)


class RNN(nn.Module):
    """``n_in → n_hidden`` tanh units with recurrence ``→ n_out`` linear readout (default 2 → 50 → 1).

    Weights are drawn from ``N(0, 2/(fan_in + fan_out))`` (recurrent spectral radius ≈ 1), biases start at 0.
    generator: a ``torch.Generator``, or a list of K for an ensemble (copy k equals the single network with
    generator k).
    """

    def __init__(self, n_in: int = 2, n_hidden: int = 50, n_out: int = 1, *, generator: rng.Generators = None,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        for name, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        self.sizes = (n_in, n_hidden, n_out)
        self.ensemble_size = len(generator) if rng.is_ensemble(generator) else None
        if self.ensemble_size == 0:
            raise ValueError("generator: an ensemble needs at least one generator")
        lead = () if self.ensemble_size is None else (self.ensemble_size,)
        options = dict(dtype=dtype, device=device)
        self.input_weight = nn.Parameter(_glorot((n_hidden, n_in), generator, **options))        # U
        self.recurrent_weight = nn.Parameter(_glorot((n_hidden, n_hidden), generator, **options))  # W
        self.hidden_bias = nn.Parameter(torch.zeros(*lead, n_hidden, **options))                   # b
        self.readout_weight = nn.Parameter(_glorot((n_out, n_hidden), generator, **options))      # V
        self.readout_bias = nn.Parameter(torch.zeros(*lead, n_out, **options))                     # c

    @property
    def n_hidden(self) -> int:
        return self.sizes[1]

    def extra_repr(self) -> str:
        lead = "" if self.ensemble_size is None else f", ensemble of {self.ensemble_size}"
        return f"sizes={'-'.join(map(str, self.sizes))}, tanh hidden, linear readout{lead}"

    def initial_state(self, batch: int) -> Tensor:
        """Zero hidden state ``(..., batch, n_h)``."""
        W = self.recurrent_weight
        return torch.zeros(*W.shape[:-2], batch, self.n_hidden, dtype=W.dtype, device=W.device)

    def check_inputs(self, x: Tensor, h0: Tensor | None) -> None:
        n_in, n_h, _ = self.sizes
        if not isinstance(x, Tensor) or x.dim() < 3 or x.shape[-1] != n_in:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (T, batch, {n_in}) (time-major; a leading K for an ensemble), "
                             f"got {got}")
        if x.shape[-3] == 0 or x.shape[-2] == 0:
            raise ValueError(f"x must hold at least one step and one stream, got shape {tuple(x.shape)}")
        if x.dtype != self.recurrent_weight.dtype:
            raise ValueError(f"x has dtype {x.dtype} but the network's weights are {self.recurrent_weight.dtype}")
        if h0 is not None and (not isinstance(h0, Tensor) or h0.shape[-1] != n_h or h0.shape[-2] != x.shape[-2]):
            got = tuple(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
            raise ValueError(f"h0 must have shape (batch, {n_h}) with the batch of x ({x.shape[-2]}), got {got}")

    def input_drive(self, x: Tensor) -> Tensor:
        """``U x_t + b`` for every step at once, ``(..., T, batch, n_h)`` (x may lack the ensemble dimension)."""
        U, b = self.input_weight, self.hidden_bias
        return x @ U.mT.unsqueeze(-3) + b.unsqueeze(-2).unsqueeze(-3)

    def trace(self, x: Tensor, h0: Tensor | None = None, noise: Tensor | None = None) -> RecurrentTrace:
        """Run the window ``x (..., T, batch, n_in)`` from ``h0`` (default zeros), recording ``a_t``, ``h_t``, ``ŷ_t``.

        noise: ``ξ (..., T, batch, n_h)`` added to ``h_t`` after the nonlinearity (node perturbation); the
        next step and the readout then receive the perturbed activity.
        """
        self.check_inputs(x, h0)
        h = self.initial_state(x.shape[-2]) if h0 is None else h0
        initial = h
        drives = self.input_drive(x).unbind(dim=-3)
        noises = noise.unbind(dim=-3) if noise is not None else None
        W = self.recurrent_weight.mT
        pre, hidden = [], []
        for t, drive in enumerate(drives):
            a = add_product(drive, h, W)  # a_t = U x_t + b + W h_{t−1}: (..., batch, n_h)
            h = torch.tanh(a)
            if noises is not None:
                h = h + noises[t]
            pre.append(a)
            hidden.append(h)
        a, h = torch.stack(pre, dim=-3), torch.stack(hidden, dim=-3)
        outputs = h @ self.readout_weight.mT.unsqueeze(-3) + self.readout_bias.unsqueeze(-2).unsqueeze(-3)
        return RecurrentTrace(inputs=x, initial_state=initial, pre_activations=a, hidden=h, outputs=outputs,
                              perturbed=noise is not None)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(ŷ (..., T, batch, n_out), h_T (..., batch, n_h))``."""
        trace = self.trace(x, h0)
        return trace.outputs, trace.final_state

    @staticmethod
    def derivatives(trace: RecurrentTrace) -> Tensor:
        """``tanh'(a_t) = 1 − tanh(a_t)²``, ``(..., T, batch, n_h)`` (recomputed from ``a`` for a noisy trace)."""
        h = torch.tanh(trace.pre_activations) if trace.perturbed else trace.hidden
        return 1.0 - h * h
