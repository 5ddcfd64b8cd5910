"""Backpropagation: the reference every other rule is measured against."""

from __future__ import annotations

from torch import Tensor

from ..networks import Trace
from ..propagation import backprop_deltas
from .base import CreditAssignmentRule


class Backprop(CreditAssignmentRule):
    """Exact gradient: ``δ_l = f'(a_l) ⊙ (W_{l+1}ᵀ δ_{l+1})`` — the feedback *is* the transported forward weights."""

    short_name = "bp"
    requirements = {"weight transport": True, "derivative of the nonlinearity": True, "injected noise": False,
                    "global reward only": False, "meta-learned prior": False}

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return backprop_deltas(self.network.weight_list(), derivatives, output_delta)[:-1]

    def feedback_matrices(self) -> list[Tensor]:
        return [W.detach().mT for W in self.network.weight_list()[1:]]
