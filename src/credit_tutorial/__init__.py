"""credit_tutorial: credit-assignment rules without weight transport, tested against backprop.

The package behind the textbook: networks that record what learning rules need, one interface for every
credit-assignment rule (backprop, feedback alignment, learned feedback, Q-AGREL, …), metrics against backprop,
one training loop, and the data the chapters run on.
"""

__version__ = "0.1.0"

from .device import resolve_device  # noqa: E402
from .networks import MLP, Trace  # noqa: E402

__all__ = ["MLP", "Trace", "__version__", "resolve_device"]
