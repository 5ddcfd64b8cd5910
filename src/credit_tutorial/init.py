"""The weight initialisations the papers use, drawn from explicit generators.

- ``"he"``: ``N(0, 2/fan_in)`` (Lansdell et al.);
- ``"uniform"``: ``U[−s, s]``, default ``s = 0.05`` (Pozzi et al.);
- ``"normal"``: ``N(0, σ²)``, default ``σ = 0.01`` (the BrainProp code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from . import rng

_DEFAULT_SCALE = {"he": None, "uniform": 0.05, "normal": 0.01}


@dataclass(frozen=True)
class Init:
    """An initialisation scheme: ``kind`` in ``he``, ``uniform``, ``normal``; ``scale`` as described above."""

    kind: str = "he"
    scale: float | None = None

    def __post_init__(self):
        if self.kind not in _DEFAULT_SCALE:
            raise ValueError(f"init must be one of {sorted(_DEFAULT_SCALE)}, got {self.kind!r}")
        if self.kind == "he" and self.scale is not None:
            raise ValueError("init 'he' takes no scale: its standard deviation is sqrt(2/fan_in)")
        if self.scale is None:
            object.__setattr__(self, "scale", _DEFAULT_SCALE[self.kind])
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"init scale must be a positive finite number, got {self.scale!r}")

    def sample(self, shape: Sequence[int], generator: rng.Generators, *, dtype=torch.float32,
               device=None) -> Tensor:
        """A weight matrix of ``shape = (n_out, n_in)`` (fan-in ``n_in``), stacked over an ensemble."""
        n_in = shape[-1]
        if self.kind == "he":
            return rng.normal(shape, generator, std=math.sqrt(2.0 / n_in), dtype=dtype, device=device)
        if self.kind == "normal":
            return rng.normal(shape, generator, std=self.scale, dtype=dtype, device=device)
        return rng.uniform(shape, generator, low=-self.scale, high=self.scale, dtype=dtype, device=device)


def as_init(spec: str | Init) -> Init:
    """Accept ``"he"``, ``"uniform"``, ``"normal"``, ``"uniform:0.1"``, ``"normal:0.01"`` or an :class:`Init`."""
    if isinstance(spec, Init):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"init must be a string like 'he', 'uniform:0.05' or 'normal:0.01', got {spec!r}")
    kind, _, scale = spec.partition(":")
    if scale:
        try:
            value = float(scale)
        except ValueError:
            raise ValueError(f"init scale in {spec!r} is not a number") from None
        return Init(kind, value)
    return Init(kind)
