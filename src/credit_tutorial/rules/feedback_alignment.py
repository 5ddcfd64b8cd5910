"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nøkland 2016)."""

from __future__ import annotations

from torch import Tensor

from .. import rng
from ..init import Init, as_init
from ..networks import MLP, Trace
from ..objectives import Objective
from ..propagation import broadcast_direct, propagate_down
from .base import BufferList, CreditAssignmentRule


def random_feedback(network: MLP, shapes: list[tuple[int, int]], init: str | Init | None,
                    generator: rng.Generators) -> BufferList:
    """Fixed random matrices of the given ``(n_receiving, n_sending)`` shapes.

    Each is drawn like a forward weight matrix of shape ``(n_sending, n_receiving)`` (same scheme and fan-in
    as W, per REFERENCE.md: "same init scale as W") and transposed.
    """
    scheme = network.init if init is None else as_init(init)
    reference = network.weights[0]
    matrices = BufferList()
    for n_receiving, n_sending in shapes:
        w_like = scheme.sample((n_sending, n_receiving), generator, dtype=reference.dtype, device=reference.device)
        matrices.append(w_like.mT.contiguous())
    return matrices


class FeedbackAlignment(CreditAssignmentRule):
    """``δ_l = f'(a_l) ⊙ (B_{l+1} δ_{l+1})`` with fixed random ``B_{l+1}`` in place of ``W_{l+1}ᵀ``.

    The output layer's own gradient is exact; only what reaches the hidden layers differs from backprop.
    ``generator`` draws ``B`` (a list of K generators for an ensemble network).
    """

    short_name = "fa"
    requirements = {"weight transport": False, "derivative of the nonlinearity": True, "injected noise": False,
                    "global reward only": False, "meta-learned prior": False}

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator: rng.Generators = None,
                 init: str | Init | None = None):
        super().__init__(network, objective, generator=generator)
        shapes = [(W.shape[-1], W.shape[-2]) for W in network.weights[1:]]  # B_{l+1}: (n_l, n_{l+1})
        self.feedback = random_feedback(network, shapes, init, generator)

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return propagate_down(output_delta, list(self.feedback), derivatives)[:-1]

    def feedback_matrices(self) -> list[Tensor]:
        return list(self.feedback)


class DirectFeedbackAlignment(CreditAssignmentRule):
    """``δ_l = f'(a_l) ⊙ (B_l δ_L)``: the output error goes straight to every hidden layer through fixed random ``B_l``.

    ``B_l`` has shape ``(n_l, n_L)``; it stands in for the whole product of transposed weights above layer ``l``,
    so :meth:`feedback_matrices` is ``None`` (there is no layer-wise ``W_{l+1}ᵀ`` to compare with).
    """

    short_name = "dfa"
    requirements = {"weight transport": False, "derivative of the nonlinearity": True, "injected noise": False,
                    "global reward only": False, "meta-learned prior": False}

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator: rng.Generators = None,
                 init: str | Init | None = None):
        super().__init__(network, objective, generator=generator)
        n_out = network.sizes[-1]
        self.feedback = random_feedback(network, [(n, n_out) for n in network.sizes[1:-1]], init, generator)

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return broadcast_direct(output_delta, list(self.feedback), derivatives[:-1])[:-1]
