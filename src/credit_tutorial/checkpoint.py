"""Atomic file writes: a result or checkpoint is either the old file or the complete new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def save_json(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically; NaN/inf are refused (they are not JSON)."""
    text = json.dumps(data, indent=2, allow_nan=False)
    return _atomic_write(path, lambda stream: stream.write(text.encode() + b"\n"))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` a checkpoint atomically (temporary file in the same directory, then ``os.replace``)."""
    return _atomic_write(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``: nothing is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)
