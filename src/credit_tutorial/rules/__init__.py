"""Credit-assignment rules, one small class each, chosen by import (or by short name in :data:`RULES`)."""

from __future__ import annotations

from .backprop import Backprop
from .base import BufferList, Credit, CreditAssignmentRule, check_batch
from .feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from .qagrel import QAGREL
from .learned_feedback import LearnedFeedback, NodePerturbationLearning

#: short names used by the command line and the experiment runner; later chapters register theirs here
RULES: dict[str, type[CreditAssignmentRule]] = {
    "bp": Backprop,
    "fa": FeedbackAlignment,
    "dfa": DirectFeedbackAlignment,
    "qagrel": QAGREL,
    "np": LearnedFeedback,
    "reinforce": NodePerturbationLearning,
}


def get_rule(name: str) -> type[CreditAssignmentRule]:
    """The rule class for a short name (``bp``, ``fa``, ``dfa``, …); a typo is an error, never a fall-back."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {name!r}") from None


__all__ = ["Backprop", "BufferList", "Credit", "CreditAssignmentRule", "DirectFeedbackAlignment",
           "FeedbackAlignment", "LearnedFeedback", "NodePerturbationLearning", "RULES", "check_batch", "get_rule"]
