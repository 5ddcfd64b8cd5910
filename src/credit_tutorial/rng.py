"""Random numbers from explicit generators: the package never seeds globally.

A network *ensemble* (K independent copies trained as one batched computation) carries one generator per
copy, so that copy k draws exactly the numbers a single network with generator k would draw.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator


def is_ensemble(generator: Generators) -> bool:
    return isinstance(generator, (list, tuple))


def _stack(draw, generator: Generators) -> Tensor:
    if is_ensemble(generator):
        return torch.stack([draw(g) for g in generator])  # one draw per copy: (K, *shape)
    return draw(generator)


def _one_scaled_draw(shape: tuple[int, ...], generator: Generators, std, dtype) -> bool:
    """Whether ``torch.normal(0, std)`` gives exactly the numbers of ``torch.randn() * std`` (one tensor operation
    instead of two): for one CPU generator and a Python float ``std``, when torch's CPU kernel fills the tensor in
    blocks of 16 (``x · std + 0`` in the tensor's dtype: the same rounding as ``randn`` then ``· std``). Tensors of
    fewer than 16 float32 numbers are drawn in double precision and rounded once, so they are left to the two-step
    path (tests/test_learned_feedback_core.py checks both sides of that boundary)."""
    if not isinstance(std, float) or generator is None or is_ensemble(generator):
        return False
    if dtype not in (torch.float32, torch.float64) or generator.device.type != "cpu":
        return False
    return dtype == torch.float64 or math.prod(shape) >= 16


def normal(shape: Sequence[int], generator: Generators, *, std: float | Tensor = 1.0,
           dtype=torch.float32, device=None) -> Tensor:
    """``N(0, std²)`` samples of ``shape``; with a list of K generators the result is ``(K, *shape)``.

    ``std`` may be a tensor that broadcasts against the result (e.g. one noise level per ensemble copy). The numbers
    are always those of ``randn(shape) * std`` (with generator k for copy k).
    """
    shape = tuple(shape)
    if _one_scaled_draw(shape, generator, std, dtype):
        return torch.normal(0.0, std, shape, generator=generator, dtype=dtype, device=device)

    def draw(g):
        return torch.randn(shape, generator=g, dtype=dtype, device=device)
    return _stack(draw, generator) * std


def uniform(shape: Sequence[int], generator: Generators, *, low: float = 0.0, high: float = 1.0,
            dtype=torch.float32, device=None) -> Tensor:
    """``U[low, high)`` samples, stacked over the ensemble as in :func:`normal`."""
    def draw(g):
        return torch.rand(tuple(shape), generator=g, dtype=dtype, device=device)
    samples = _stack(draw, generator)
    if low == 0.0 and high == 1.0:  # U[0, 1): 0 + 1 · u is u itself, so skip the two operations of the map
        return samples
    return low + (high - low) * samples


def permutation(n: int, generator: Generators, *, device=None) -> Tensor:
    """A random permutation of ``range(n)``: ``(n,)``, or ``(K, n)`` for a list of K generators."""
    def draw(g):
        return torch.randperm(n, generator=g, device=device)
    return _stack(draw, generator)


def generator_states(generator: Generators):
    """The state(s) of a generator or list of generators, for checkpoints."""
    if generator is None:
        return None
    if is_ensemble(generator):
        return [g.get_state() for g in generator]
    return generator.get_state()


def set_generator_states(generator: Generators, state) -> None:
    """Restore what :func:`generator_states` returned."""
    if generator is None:
        return
    # a checkpoint loaded with map_location="cuda" moves the states too; generators take CPU byte tensors only
    if is_ensemble(generator):
        for g, s in zip(generator, state):
            g.set_state(s.cpu())
    else:
        generator.set_state(state.cpu())
