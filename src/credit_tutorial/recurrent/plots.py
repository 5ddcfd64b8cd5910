"""Figures of the recurrent chapter: a stretch of the delayed-XOR stream, learning curves and angles through time."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..plotting import plot_band
from .task import BIT, CUE, XORStream


def plot_stream(stream: XORStream, outputs=None, *, index: int = 0, steps: int = 60, ax=None, title: str | None = None):
    """Stream ``index``'s first ``steps`` steps: go cues, bits, target (and the network's output, if given)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.6))
    t = np.arange(steps)
    x = stream.inputs[..., :steps, index, :].detach().cpu().numpy()
    y = stream.targets[..., :steps, index, 0].detach().cpu().numpy()
    cue, bits = np.nonzero(x[:, CUE])[0], np.nonzero(x[:, BIT])[0]
    ax.vlines(cue, 0, 1.2, color="tab:green", lw=2, label="go cue")
    ax.plot(bits, x[bits, BIT], "o", color="tab:blue", label="bits (±1)")
    ax.step(t, y, where="mid", color="black", lw=1.2, label="target: XOR at the response step")
    if outputs is not None:
        ax.plot(t, outputs[..., :steps, index, 0].detach().cpu().numpy(), color="tab:orange", lw=1.2,
                label="network output")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="time step", ylim=(-1.5, 1.6), yticks=[-1, 0, 1])
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize="small", ncol=4, loc="upper left")
    return ax


def plot_curves(histories: Mapping[str, dict], key: str = "test_loss", *, ax=None, scale: float = 1.0,
                ylabel: str | None = None, title: str | None = None, x: str = "step",
                colors: Mapping[str, str] | None = None):
    """One band (mean ± sd over the ensemble's seeds) per rule; ``x`` is ``"step"`` (windows) or ``"epoch"``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, history in histories.items():
        points = [i for i, v in enumerate(history[key]) if v is not None]
        values = [history[key][i] for i in points]
        style = {} if colors is None or name not in colors else {"color": colors[name]}
        plot_band(ax, [history[x][i] for i in points], values, label=name, scale=scale, **style)
    ax.set_xlabel("windows (updates)" if x == "step" else x)
    ax.set_ylabel(ylabel or key.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
    return ax


def plot_angles_through_time(angles: Mapping[str, Sequence], *, ax=None, title: str | None = None,
                             colors: Mapping[str, str] | None = None):
    """Angle to BPTT's error at each unrolled step of the window, one band per rule.

    angles: rule name → ``[step]`` or ``[seed][step]`` (degrees), e.g. ``history["delta_angle"][-1]``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in angles.items():
        runs = np.asarray(values, dtype=float)
        runs = runs[None, :] if runs.ndim == 1 else runs  # (seeds, T)
        steps = np.arange(runs.shape[1])
        style = {} if colors is None or name not in colors else {"color": colors[name]}
        plot_band(ax, steps, runs.T, label=name, marker="o", **style)
    ax.axhline(90, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="unrolled step t in the window (T − 1: the latest)", ylabel="angle to BPTT's δ_t (°)",
           ylim=(0, 100))
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
    return ax
