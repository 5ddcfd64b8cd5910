"""A multilayer perceptron that records what every learning rule needs.

Notation (REFERENCE.md): layer ``l = 1..L`` has pre-activation ``a_l = W_l h_{l-1} + b_l`` and activity
``h_l = f_l(a_l)``; ``h_0 = x``. Tensors are batch-major, ``(batch, n)``. A network may be an *ensemble* of K
independent copies trained as one computation: its weights are then ``(K, n_out, n_in)`` and its activities
``(K, batch, n)``; every formula below is written with broadcasting matrix products, so it holds for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from . import rng
from .activations import Activation, get_activation
from .init import Init, as_init


@dataclass
class LayerRecord:
    """One layer's forward quantities: ``presynaptic = h_{l-1}``, ``pre_activation = a_l``, ``activity = h_l``."""

    presynaptic: Tensor    # (..., batch, n_{l-1})
    pre_activation: Tensor  # (..., batch, n_l)
    activity: Tensor       # (..., batch, n_l)


@dataclass
class Trace:
    """Everything a forward pass computed, layer by layer (``layers[0]`` is layer 1)."""

    layers: list[LayerRecord]
    perturbed: bool = False  # True when noise was added: then ``activity`` is not ``f(pre_activation)``

    @property
    def output(self) -> Tensor:
        return self.layers[-1].activity

    @property
    def input(self) -> Tensor:
        return self.layers[0].presynaptic


def trace_layers(h: Tensor, start: int, n_layers: int, pre_activation: Callable[[int, Tensor], Tensor],
                 activations: Sequence[Activation], noise: Sequence[Tensor | None] | None = None) -> Trace:
    """Layers ``start+1 .. n_layers`` of any feedforward network, recorded: from ``h = h_start``, layer ``l``
    computes ``a_l = pre_activation(l − 1, h_{l−1})`` and ``h_l = f_l(a_l)``, plus ``noise[l−1]`` when given (node
    perturbation; the next layer receives the perturbed activity). 0-based ``start``: 0 is the input."""
    layers = []
    for index in range(start, n_layers):
        a = pre_activation(index, h)
        out = activations[index](a)
        if noise is not None and noise[index] is not None:
            out = out + noise[index]
        layers.append(LayerRecord(presynaptic=h, pre_activation=a, activity=out))
        h = out
    return Trace(layers, perturbed=noise is not None)


def linear(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``a = h Wᵀ + b`` for ``h (..., batch, n_in)``, ``W (..., n_out, n_in)``, ``b (..., n_out)``."""
    if weight.dim() == 2:
        return torch.nn.functional.linear(h, weight, bias)  # fused addmm on the common 2-d path
    if bias is not None and h.dim() == weight.dim() == 3 and h.shape[0] == weight.shape[0]:
        # an ensemble, each copy on its own batch: b + h Wᵀ in one batched kernel, (K, batch, n_out)
        return torch.baddbmm(bias.unsqueeze(-2), h, weight.mT)
    a = h @ weight.mT
    return a if bias is None else a + bias.unsqueeze(-2)


class MLP(nn.Module):
    """Fully connected network ``sizes[0] → … → sizes[-1]`` with a hidden and an output nonlinearity.

    Parameters
    ----------
    sizes: layer widths, input first, e.g. ``(784, 50, 20, 10)``.
    hidden_activation: a name from :mod:`credit_tutorial.activations`, or one name per hidden layer
        (e.g. ``["tanh", "identity", "tanh"]`` for an autoencoder with a linear bottleneck).
    output_activation: the output layer's nonlinearity.
    bias: whether layers have biases (initialised to zero).
    init: ``"he"`` (N(0, 2/fan_in)), ``"uniform[:s]"`` (±s, default 0.05) or ``"normal[:σ]"`` (default 0.01).
    generator: a ``torch.Generator`` for the initial weights, or a list of K generators for an ensemble of K
        copies (copy k is then initialised exactly as a single network with generator k would be).
    """

    def __init__(self, sizes: Sequence[int], hidden_activation: str | Sequence[str] = "sigmoid",
                 output_activation: str = "identity", *, bias: bool = True, init: str | Init = "he",
                 generator: rng.Generators = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise ValueError(f"sizes must list at least two positive integer layer widths, got {sizes!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        self.sizes = sizes
        self.init = as_init(init)
        self.ensemble_size = len(generator) if rng.is_ensemble(generator) else None
        if self.ensemble_size == 0:
            raise ValueError("generator: an ensemble needs at least one generator")
        n_hidden = len(sizes) - 2
        if isinstance(hidden_activation, (list, tuple)):
            if len(hidden_activation) != n_hidden:
                raise ValueError(f"hidden_activation lists {len(hidden_activation)} nonlinearities but the network "
                                 f"has {n_hidden} hidden layers")
            hidden = [get_activation(name) for name in hidden_activation]
        else:
            hidden = [get_activation(hidden_activation)] * n_hidden
        self.activations: list[Activation] = hidden + [get_activation(output_activation)]
        lead = () if self.ensemble_size is None else (self.ensemble_size,)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList() if bias else None
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            w = self.init.sample((n_out, n_in), generator, dtype=dtype, device=device)
            self.weights.append(nn.Parameter(w))
            if bias:
                self.biases.append(nn.Parameter(torch.zeros(*lead, n_out, dtype=dtype, device=device)))

    # ------------------------------------------------------------------ structure
    # The hot paths below reach the parameter lists through ``self._modules``: on Python 3.11, ``self.weights`` (a
    # submodule) first fails the ordinary attribute lookup, which builds an AttributeError message before
    # nn.Module.__getattr__ finds it (about 0.6 µs, ~2 % of a small network's training step per dozen lookups).
    @property
    def n_layers(self) -> int:
        """Number of weight layers L."""
        return len(self._modules["weights"])

    @property
    def has_bias(self) -> bool:
        return self.biases is not None

    def bias(self, index: int) -> Tensor | None:
        """Bias of layer ``index + 1`` (0-based index), or ``None``."""
        return None if self.biases is None else self.biases[index]

    # Indexing an nn.ParameterList costs a string conversion and a module attribute lookup per item (about as
    # much as a small matrix product on a CPU); hot loops take plain lists once per step instead.
    def weight_list(self) -> list[nn.Parameter]:
        """``[W_1, …, W_L]`` as a plain list (the parameters themselves, not copies)."""
        return list(self._modules["weights"]._parameters.values())

    def bias_list(self) -> list[nn.Parameter | None]:
        """``[b_1, …, b_L]`` as a plain list, or L times ``None`` for a network without biases."""
        biases = self._modules.get("biases")  # None (a plain attribute) when the network has no biases
        if biases is None:
            return [None] * len(self._modules["weights"])
        return list(biases._parameters.values())

    def extra_repr(self) -> str:
        names = "/".join(a.name for a in self.activations)
        lead = "" if self.ensemble_size is None else f", ensemble of {self.ensemble_size}"
        return f"sizes={'-'.join(map(str, self.sizes))}, activations={names}, init={self.init.kind}{lead}"

    # ------------------------------------------------------------------ forward passes
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.sizes[0]:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.sizes[0]}) (or (K, batch, {self.sizes[0]}) "
                             f"for an ensemble), got {got}")
        if x.shape[-2] == 0:
            raise ValueError("x is an empty batch: it needs at least one sample")

    def trace(self, x: Tensor, noise: Sequence[Tensor | None] | None = None) -> Trace:
        """Forward pass recording ``h_{l-1}``, ``a_l`` and ``h_l`` for every layer.

        ``noise[l-1]``, if given, is added to the activity of layer ``l`` after its nonlinearity (node
        perturbation); the recorded activity is then the perturbed one, which the next layer receives.
        """
        self._check_input(x)
        return self.trace_from(0, x, noise)

    def trace_from(self, start: int, h: Tensor, noise: Sequence[Tensor | None] | None = None) -> Trace:
        """Run layers ``start+1 .. L`` on the activity ``h = h_start`` (0-based ``start``; 0 is the input).

        Node perturbation uses this to begin its noisy pass at the first perturbed layer.
        """
        weights, biases = self.weight_list(), self.bias_list()
        return trace_layers(h, start, len(weights), lambda index, h: linear(h, weights[index], biases[index]),
                            self.activations, noise)

    def forward(self, x: Tensor) -> Tensor:
        """The network's output ``ŷ = h_L``."""
        self._check_input(x)
        h = x
        for weight, bias, f in zip(self.weight_list(), self.bias_list(), self.activations):
            h = f(linear(h, weight, bias))
        return h

    def derivatives(self, trace: Trace) -> list[Tensor]:
        """``f_l'(a_l)`` for every layer, ``(..., batch, n_l)``."""
        if trace.perturbed:  # the recorded activity includes noise: recompute f(a)
            return [f.derivative(r.pre_activation, f(r.pre_activation))
                    for f, r in zip(self.activations, trace.layers)]
        return [f.derivative(r.pre_activation, r.activity) for f, r in zip(self.activations, trace.layers)]
