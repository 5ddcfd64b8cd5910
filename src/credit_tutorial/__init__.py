"""credit_tutorial: credit-assignment rules without weight transport, tested against backprop."""

__version__ = "0.1.0"
