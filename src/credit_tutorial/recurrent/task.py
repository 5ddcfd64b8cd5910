"""The delayed-XOR stream (Lansdell et al., Fig. 4): a recurrent network must remember two bits.

Each of ``n_streams`` parallel streams is a long sequence of non-overlapping *trials*. A trial whose response is
due at step ``r`` shows

- input bit ``a = ±1`` on channel 1 at step ``r − input_lags[0]``,
- input bit ``b = ±1`` on channel 1 at step ``r − input_lags[1]``,
- a go cue (``1``) on channel 0 at step ``r − cue_lag``,

and asks for the output ``y_r = XOR(a, b) = −a·b`` (``+1`` when the bits differ, ``−1`` when they agree) at
step ``r``; the target is ``0`` at every other step. The defaults (lags 3 and 2, cue one step before the
response) are the fixed delays of the authors' script. Consecutive responses are at least
``max(lags) + 1`` steps apart, so trials never overlap (the original script drew go cues independently, so two
trials could overwrite each other's inputs and leave targets that no input supports); the extra gap is
geometric, with mean spacing ``mean_gap`` (20, i.e. the script's go-cue rate of 0.05).

Tensors are time-major, ``(..., T, n_streams, n)``, so that one step ``x[..., t, :, :]`` is a batch-major
``(..., batch, n)`` activity as everywhere in the package; an ensemble of K generators adds a leading K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import rng

CUE, BIT = 0, 1  # input channels


@dataclass
class XORStream:
    """A chunk of delayed-XOR streams.

    inputs: ``(..., T, n_streams, 2)``; channel 0 the go cue, channel 1 the bits.
    targets: ``(..., T, n_streams, 1)``: ``±1`` at response steps, ``0`` elsewhere.
    responses: ``(..., T, n_streams)`` bool, True at the response steps.
    """

    inputs: Tensor
    targets: Tensor
    responses: Tensor

    @property
    def length(self) -> int:
        return self.inputs.shape[-3]

    @property
    def n_streams(self) -> int:
        return self.inputs.shape[-2]

    def window(self, start: int, size: int) -> tuple[Tensor, Tensor]:
        """Steps ``start .. start+size−1``: ``(inputs, targets)``, each ``(..., size, n_streams, n)``."""
        return self.inputs[..., start:start + size, :, :], self.targets[..., start:start + size, :, :]


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_lags(input_lags, cue_lag) -> tuple[tuple[int, int], int]:
    """Validate the delays: two distinct positive input lags and a positive cue lag (steps before the response)."""
    if not isinstance(input_lags, (tuple, list)) or len(input_lags) != 2:
        raise ValueError(f"input_lags must be two delays (steps before the response), got {input_lags!r}")
    lags = tuple(_positive_int(lag, "each of input_lags") for lag in input_lags)
    if lags[0] == lags[1]:
        raise ValueError(f"input_lags must differ (both bits arrive on one channel), got {input_lags!r}")
    return lags, _positive_int(cue_lag, "cue_lag")


def delayed_xor(n_streams: int, length: int, generator: rng.Generators, *, input_lags=(3, 2), cue_lag: int = 1,
                mean_gap: float = 20.0, dtype=torch.float32, device=None) -> XORStream:
    """Draw ``n_streams`` delayed-XOR streams of ``length`` steps (vectorised over streams and trials).

    generator: a ``torch.Generator``, or a list of K for an ensemble (copy k then equals the single draw with
        generator k).
    input_lags, cue_lag: steps between each bit (resp. the go cue) and the response.
    mean_gap: mean number of steps between consecutive responses; at least ``max(input_lags, cue_lag) + 1``.
    """
    _positive_int(n_streams, "n_streams")
    _positive_int(length, "length")
    (lag_a, lag_b), cue_lag = check_lags(input_lags, cue_lag)
    span = max(lag_a, lag_b, cue_lag)  # a trial occupies steps r − span .. r
    if not (isinstance(mean_gap, (int, float)) and math.isfinite(mean_gap) and mean_gap >= span + 1):
        raise ValueError(f"mean_gap must be a number ≥ max(input_lags, cue_lag) + 1 = {span + 1} (trials may not "
                         f"overlap), got {mean_gap!r}")
    # Gap between responses: span + 1 + G, G geometric on {0, 1, ...} with mean mean_gap − span − 1,
    # drawn by inversion, G = floor(log U / log(1 − p)). The first response is at span + G.
    extra = mean_gap - span - 1.0
    n_trials = length // (span + 1) + 1  # enough trials to fill the stream even if every G is 0
    u = rng.uniform((n_streams, n_trials), generator, dtype=torch.float64, device=device)
    if extra > 0:
        p = 1.0 / (extra + 1.0)
        geometric = torch.floor(torch.log1p(-u) / math.log1p(-p))  # log1p(−u): u ∈ [0, 1) never gives log 0
    else:
        geometric = torch.zeros_like(u)
    gaps = geometric + (span + 1)
    gaps[..., 0] -= 1  # first response at span + G_0
    responses = torch.cumsum(gaps, dim=-1).long()  # (..., n_streams, n_trials)
    bits = torch.where(rng.uniform((n_streams, 2, n_trials), generator, device=device) < 0.5, -1.0, 1.0)
    bits = bits.to(dtype)  # (..., n_streams, 2, n_trials)
    valid = responses < length
    xor = (-bits[..., 0, :] * bits[..., 1, :]) * valid  # +1 if the bits differ, −1 if they agree; 0 if dropped

    lead = responses.shape[:-2]
    inputs = torch.zeros(*lead, n_streams, length, 2, dtype=dtype, device=device)
    targets = torch.zeros(*lead, n_streams, length, 1, dtype=dtype, device=device)
    index = responses.clamp(max=length - 1)  # dropped trials add 0 at a valid position (scatter_add)
    ones = valid.to(dtype)
    inputs[..., CUE].scatter_add_(-1, index - cue_lag, ones)
    inputs[..., BIT].scatter_add_(-1, index - lag_a, bits[..., 0, :] * ones)
    inputs[..., BIT].scatter_add_(-1, index - lag_b, bits[..., 1, :] * ones)
    targets[..., 0].scatter_add_(-1, index, xor)
    is_response = torch.zeros(*lead, n_streams, length, dtype=dtype, device=device)
    is_response.scatter_add_(-1, index, ones)
    # (..., n_streams, T, n) → time-major (..., T, n_streams, n)
    return XORStream(inputs=inputs.transpose(-3, -2).contiguous(), targets=targets.transpose(-3, -2).contiguous(),
                     responses=is_response.transpose(-2, -1).contiguous() > 0)


def xor_accuracy(outputs: Tensor, stream: XORStream) -> Tensor:
    """Fraction of response steps where ``sign(ŷ_r)`` equals the target, ``(...)`` (chance: 0.5)."""
    correct = (torch.sign(outputs[..., 0]) == stream.targets[..., 0]) & stream.responses
    n = stream.responses.flatten(start_dim=-2).sum(dim=-1).clamp(min=1)
    return correct.flatten(start_dim=-2).sum(dim=-1).to(outputs.dtype) / n.to(outputs.dtype)
