"""Pick the compute device once, at the top of a script or chapter; nothing deeper names a device."""

from __future__ import annotations

import torch

_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda[:i]"`` or ``"mps"`` into a device.

    A device that was asked for by name but is not available is an error, not a silent fall-back.
    """
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str) or spec.split(":")[0] not in _CHOICES:
        raise ValueError(f"device must be one of {', '.join(_CHOICES)} (or 'cuda:N'), got {spec!r}")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {spec!r} was asked for, but MPS is not available here; use 'auto' or 'cpu'")
    return device
