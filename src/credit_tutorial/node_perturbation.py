"""Node perturbation: REINFORCE with Gaussian noise as an estimator of ``∂L/∂h``.

A second forward pass adds ``ξ_l ~ N(0, c² I)`` to the activity ``h_l`` of the perturbed layers (after the
nonlinearity). With ``L`` the clean and ``L̃`` the noisy per-sample loss,

    λ̂_l = (L̃ − L) ξ_l / c²                                   (REFERENCE.md §A)

and a first-order Taylor expansion gives ``E[λ̂_l | x] = ∂L/∂h_l + O(c²)``. The noisy pass starts from the perturbed
activity ``h_l + ξ_l`` of the first perturbed layer, so neither that layer nor any below it (the costly input
layer included) is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from . import rng
from .networks import MLP, LayerRecord, Trace, linear
from .objectives import Objective
from .propagation import without_grad


@dataclass
class PerturbationEstimate:
    """One node-perturbation estimate for a batch.

    ``lambdas[l-1]`` is ``λ̂_l`` for layer ``l`` (``None`` where that layer was not perturbed), ``(..., batch, n_l)``;
    ``noise`` likewise holds ``ξ_l``; ``clean_loss`` and ``noisy_loss`` are per sample, ``(..., batch)``.
    """

    lambdas: list[Tensor | None]
    noise: list[Tensor | None]
    clean_loss: Tensor
    noisy_loss: Tensor
    noisy_trace: Trace


def noise_std(c, *, dtype=torch.float32, device=None) -> Tensor:
    """Validate the noise standard deviation ``c`` and return it as a tensor: ``()`` for a float, ``(K,)`` for one
    value per ensemble copy (a list or tensor of K positive values)."""
    if isinstance(c, Tensor):
        values = c.detach().flatten().tolist()
    else:
        values = list(c) if isinstance(c, (list, tuple)) else [c]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
                             for v in values):
        raise ValueError(f"c (the noise standard deviation) must be a positive finite number, or one per ensemble "
                         f"copy, got {c!r}")
    per_copy = isinstance(c, (list, tuple)) or (isinstance(c, Tensor) and c.dim() > 0)
    return torch.tensor(values if per_copy else values[0], dtype=dtype, device=device)


def _broadcastable(std: Tensor) -> Tensor:
    """``(K,)`` → ``(K, 1, 1)`` so one noise level per copy broadcasts against ``(K, batch, n)``."""
    return std.view(-1, 1, 1) if std.dim() == 1 else std


def _draw(activity: Tensor, generator: rng.Generators, std: Tensor | float, ensemble: bool) -> Tensor:
    """``ξ ~ N(0, c²)`` shaped like ``activity``. With a list of K generators, copy k draws from generator k: an
    ensemble's activity ``(K, batch, n)`` is drawn per copy; a single network's ``(batch, n)`` becomes ``(K, batch, n)``
    (K noise levels or K independent noise draws on one network). ``std``: c as a tensor (``()`` or ``(K, 1, 1)``),
    or as a Python float (one c: :func:`credit_tutorial.rng.normal` may then draw and scale in one operation)."""
    shape = activity.shape[1:] if (ensemble and rng.is_ensemble(generator)) else activity.shape
    return rng.normal(shape, generator, std=std, dtype=activity.dtype, device=activity.device)


def _check_copies(network: MLP, std: Tensor, generator: rng.Generators) -> None:
    """One noise level and one generator per ensemble copy, when they are given per copy."""
    copies = network.ensemble_size
    if std.dim() == 1 and copies is not None and std.numel() != copies:
        raise ValueError(f"c lists {std.numel()} noise levels but the network is an ensemble of {copies} copies; "
                         "give one c per copy or a single c")
    if rng.is_ensemble(generator):
        if copies is not None and len(generator) != copies:
            raise ValueError(f"generator lists {len(generator)} generators but the network is an ensemble of "
                             f"{copies} copies")
        if std.dim() == 1 and std.numel() != len(generator):
            raise ValueError(f"c lists {std.numel()} noise levels but generator lists {len(generator)} generators")


def resolve_layers(network: MLP, layers: str | Sequence[int]) -> list[int]:
    """0-based indices of perturbed layers: ``"hidden"`` (1..L−1), ``"all"`` (1..L) or explicit 0-based indices."""
    if layers == "hidden":
        return list(range(network.n_layers - 1))
    if layers == "all":
        return list(range(network.n_layers))
    indices = sorted(set(int(i) for i in layers))
    if not indices or indices[0] < 0 or indices[-1] >= network.n_layers:
        raise ValueError(f"layers must be 'hidden', 'all' or 0-based layer indices in [0, {network.n_layers - 1}], "
                         f"got {layers!r}")
    return indices


def _validated_std(network: MLP, c, generator: rng.Generators, like: Tensor) -> Tensor:
    """``c`` as a tensor (``()`` or ``(K,)``), checked against the ensemble and the generators."""
    if not isinstance(c, Tensor):
        c = noise_std(c, dtype=like.dtype, device=like.device)
    _check_copies(network, c, generator)
    return c


@torch.no_grad()
def estimate(network: MLP, objective: Objective, trace: Trace, target: Tensor, c, generator: rng.Generators,
             *, layers: str | Sequence[int] = "hidden", baseline: bool = True,
             clean_loss: Tensor | None = None) -> PerturbationEstimate:
    """Node-perturbation estimate of ``∂L/∂h_l`` for the perturbed layers, from one extra (partial) forward pass.

    trace: the clean forward pass of the batch (``network.trace(x)``).
    c: noise standard deviation: a float, one per ensemble copy, or a tensor from :func:`noise_std` (used as is).
        K values on a single (non-ensemble) network give K estimates at once, ``(K, batch, n)``: a noise sweep.
    generator: one generator, or one per ensemble copy / per noise level.
    layers: which layers receive noise (all of them at once).
    baseline: subtract the clean loss (``λ̂ = (L̃ − L) ξ / c²``); without it ``λ̂ = L̃ ξ / c²``, which has the same
        mean but a far larger variance.
    clean_loss: the per-sample clean loss ``(..., batch)`` if the caller has it already (saves recomputing it).

    Training rules call :func:`perturbation_lambdas`, which draws the same noise and returns the same ``λ̂`` without
    recording the noisy pass.
    """
    indices = resolve_layers(network, layers)
    c = _validated_std(network, c, generator, trace.output)
    std = _broadcastable(c)
    if hasattr(objective, "target_matrix"):  # class labels → one-hot rows once, for both losses
        target = objective.target_matrix(trace.output, target)
    ensemble = network.ensemble_size is not None
    noise: list[Tensor | None] = [None] * network.n_layers
    for index in indices:
        noise[index] = _draw(trace.layers[index].activity, generator, std, ensemble)
    # The noise enters after the nonlinearity, so the first perturbed layer's a_l and h_l are the clean ones:
    # the noisy pass starts from h_l + ξ_l and recomputes only the layers above it.
    first = indices[0]
    clean_first = trace.layers[first]
    perturbed_first = LayerRecord(presynaptic=clean_first.presynaptic, pre_activation=clean_first.pre_activation,
                                  activity=clean_first.activity + noise[first])
    partial = network.trace_from(first + 1, perturbed_first.activity, noise)
    noisy_trace = Trace(trace.layers[:first] + [perturbed_first] + partial.layers, perturbed=True)
    if clean_loss is None:
        clean_loss = objective.per_sample(trace.output, target)
    noisy_loss = objective.per_sample(noisy_trace.output, target)
    reward_change = (noisy_loss - clean_loss) if baseline else noisy_loss
    weight = reward_change.unsqueeze(-1) / std.square()  # (..., batch, 1)
    lambdas = [None if xi is None else weight * xi for xi in noise]
    return PerturbationEstimate(lambdas=lambdas, noise=noise, clean_loss=clean_loss, noisy_loss=noisy_loss,
                                noisy_trace=noisy_trace)


def _noisy_output(network: MLP, trace: Trace, noise: list[Tensor | None], first: int) -> Tensor:
    """``ŷ`` of the noisy pass: ``h_first + ξ_first`` carried through the layers above ``first``, each adding its
    own ``ξ`` after the nonlinearity (what :func:`estimate` records layer by layer, keeping only the output)."""
    weights, biases, activations = network.weight_list(), network.bias_list(), network.activations
    h = trace.layers[first].activity + noise[first]  # (..., batch, n_first)
    for index in range(first + 1, len(weights)):
        h = activations[index](linear(h, weights[index], biases[index]))
        if noise[index] is not None:
            h = h.add_(noise[index])  # h is this pass's own fresh tensor: add in place
    return h


@without_grad
def perturbation_lambdas(network: MLP, objective: Objective, trace: Trace, target: Tensor, c: Tensor,
                         generator: rng.Generators, clean_loss: Tensor, *, layers: Sequence[int],
                         c_value: float | None = None) -> list[Tensor | None]:
    """``λ̂_l = (L̃ − L) ξ_l / c²`` for the 0-based ``layers`` (all perturbed at once): the numbers and random draws
    of ``estimate(network, objective, trace, target, c, generator, layers=layers, clean_loss=clean_loss).lambdas``,
    for the training rules, which need only ``λ̂`` (nothing recorded, no checks: the rule checked its options).

    target: as the objective compares it with the output (one-hot rows for class labels under the squared error).
    c: the noise level from :func:`noise_std`, ``()`` or ``(K,)``. c_value: the same c as a Python float when it is
        one number (the rule reads it from its buffer once, not every step): the noise is then drawn and scaled in
        one operation and ``c²`` costs no tensor operation. The results are the same either way.
    clean_loss: the clean per-sample loss, ``(..., batch)``.
    """
    std = _broadcastable(c) if c_value is None else c_value
    ensemble = network.ensemble_size is not None
    noise: list[Tensor | None] = [None] * network.n_layers
    for index in layers:
        noise[index] = _draw(trace.layers[index].activity, generator, std, ensemble)
    noisy_loss = objective.per_sample(_noisy_output(network, trace, noise, layers[0]), target)
    # (L̃ − L) / c²: (..., batch, 1). A float c² is formed in double precision, where the square of a float32 or
    # float64 c is exact or rounded once, as c.square() rounds it: the same divisor.
    variance = std.square() if c_value is None else c_value * c_value
    weight = (noisy_loss - clean_loss).unsqueeze_(-1).div_(variance)
    return [None if xi is None else weight * xi for xi in noise]


@torch.no_grad()
def estimate_layerwise(network: MLP, objective: Objective, trace: Trace, target: Tensor, c,
                       generator: rng.Generators, *, layers: str | Sequence[int] = "hidden",
                       baseline: bool = True, clean_loss: Tensor | None = None) -> list[Tensor | None]:
    """Like :func:`estimate`, but one noisy pass per layer, each perturbing that layer alone.

    Lower variance per layer (no cross-talk from the noise in other layers) at the price of one pass per layer.
    """
    if hasattr(objective, "target_matrix"):
        target = objective.target_matrix(trace.output, target)
    if clean_loss is None:
        clean_loss = objective.per_sample(trace.output, target)
    lambdas: list[Tensor | None] = [None] * network.n_layers
    for index in resolve_layers(network, layers):
        lambdas[index] = estimate(network, objective, trace, target, c, generator, layers=[index],
                                  baseline=baseline, clean_loss=clean_loss).lambdas[index]
    return lambdas
