"""Plots that take histories (dicts of lists) as :func:`credit_tutorial.training.fit` returns them."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def _as_runs(values: Sequence) -> np.ndarray:
    """History values → array (n_points, n_runs): one column per ensemble copy (one column for a single run)."""
    array = np.asarray(values, dtype=float)
    return array[:, None] if array.ndim == 1 else array


def plot_band(ax, x: Sequence[float], values: Sequence, *, label: str | None = None, scale: float = 1.0, **style):
    """Mean over runs as a line, ± one standard deviation as a shaded band (no band for a single run)."""
    runs = _as_runs(values) * scale
    mean = runs.mean(axis=1)
    (line,) = ax.plot(x, mean, label=label, **style)
    if runs.shape[1] > 1:
        sd = runs.std(axis=1, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def plot_learning_curves(histories: Mapping[str, dict], key: str = "test_error", *, ax=None, percent: bool = True,
                         xlabel: str = "epoch", title: str | None = None):
    """One curve per named history, ``key`` against epoch; error rates shown in percent."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    scale = 100.0 if percent and "error" in key else 1.0
    for name, history in histories.items():
        plot_band(ax, history["epoch"], history[key], label=name, scale=scale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(key.replace("_", " ") + (" (%)" if scale == 100.0 else ""))
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def plot_layer_metric(histories: Mapping[str, dict], key: str = "delta_angle", *, ax=None, layers=None,
                      ylabel: str = "angle to backprop (°)", title: str | None = None):
    """A per-layer metric recorded by ``fit`` (``history[key][eval][layer]``), one line per rule and layer."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    styles = ["-", "--", ":", "-."]
    for name, history in histories.items():
        per_eval = history[key]
        n_layers = len(per_eval[0])
        for layer in (range(n_layers) if layers is None else layers):
            values = [point[layer] for point in per_eval]
            plot_band(ax, history["epoch"], values, label=f"{name}, hidden layer {layer + 1}",
                      linestyle=styles[layer % len(styles)])
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
    return ax
