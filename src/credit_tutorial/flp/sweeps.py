"""Choosing settings on validation episodes, never on meta-test episodes, with results that record their command.

:func:`sweep` meta-trains one configuration per entry of ``settings`` (overrides of a base :class:`MetaConfig`),
each as one ensemble over (order, seed), and scores it on *validation* episodes — drawn like meta-training episodes
from their own random stream (:func:`~.experiment.meta_test` with ``stream="validation"``) — with the learner's
plasticity on and switched off (``plasticity_scale=0``: the same meta-learned network that learns nothing within
its lifetime). :func:`select` picks the setting with the lowest validation loss. Used for the gradient-based
baseline's alternative fixed learning rate and for FLP's meta-learning settings (chapter 11).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Mapping, Sequence

import torch

from .experiment import MetaConfig, meta_test, meta_train
from .meta import MetaTrainingDiverged


def _mean(values: Sequence[float | None]) -> float:
    """Mean of the values that are not None (None: every validation lifetime of that copy blew up)."""
    kept = [v for v in values if v is not None]
    return float(sum(kept) / len(kept)) if kept else float("nan")


def _by_order(orders: Sequence[str], values: Sequence[float | None]) -> dict[str, float]:
    return {order: _mean([v for o, v in zip(orders, values) if o == order]) for order in dict.fromkeys(orders)}


def sweep(config: MetaConfig, settings: Mapping[str, dict], *, seeds: Sequence[int] = (0, 1, 2),
          orders: Sequence[str] = ("iid", "continual"), validation_episodes: int = 128, progress: bool = False) -> dict:
    """Meta-train ``replace(config, **settings[label])`` for every label and score it on validation episodes.

    Returns ``{"seeds", "orders", "validation_episodes", "settings": {label: row}}``; a row holds ``overrides``,
    the full ``config``, ``validation`` (loss per copy with plasticity ``on`` and ``off``, and both averaged per
    order), ``first_meta_losses`` (to check the row by re-running its first meta-steps), ``meta_loss`` (the
    logged meta-training curve), ``cpu_seconds``, and for FLP the mean plasticity per layer in units of ``P₀``
    (``p_ratio``) and ``β``. A run that diverges is recorded as ``{"diverged": message}``.
    """
    from .reproduce import _config_record

    if isinstance(validation_episodes, bool) or not isinstance(validation_episodes, int) or validation_episodes < 1:
        raise ValueError(f"validation_episodes must be a positive integer, got {validation_episodes!r}")
    if not settings:
        raise ValueError("settings must hold at least one entry")
    record = {"seeds": list(seeds), "orders": list(orders), "validation_episodes": validation_episodes,
              "settings": {}}
    for label, overrides in settings.items():
        run_config = replace(config, **overrides)
        row = {"overrides": dict(overrides), "config": _config_record(run_config)}
        started = time.process_time()
        try:
            run = meta_train(run_config, seeds, orders, progress=progress)
        except MetaTrainingDiverged as error:
            row["diverged"] = str(error)
            record["settings"][label] = row
            continue
        scores, blown = {}, {}
        for name, scale in (("on", 1.0), ("off", 0.0)):
            result = meta_test(run, stream="validation", episodes=validation_episodes, meta_batch=16,
                               plasticity_scale=scale)
            scores[name], blown[f"diverged_{name}"] = result["loss"], result["diverged"]
        row["orders"] = run.orders
        row["validation"] = {**scores, **blown, "on_by_order": _by_order(run.orders, scores["on"]),
                             "off_by_order": _by_order(run.orders, scores["off"]), "on_mean": _mean(scores["on"]),
                             "off_mean": _mean(scores["off"])}
        row["first_meta_losses"] = run.history["first_meta_losses"]
        row["meta_loss"] = {"episode": run.history["episode"], "mean": [_mean(v) for v in run.history["meta_loss"]]}
        row["cpu_seconds"] = time.process_time() - started
        learner = run.learner
        if hasattr(learner, "plasticity"):
            with torch.no_grad():
                row["p_ratio"] = [float(p.mean() / unit) for p, unit in
                                  zip(learner.plasticity(), learner.init_plasticity)]
                row["beta"] = [float(b.mean()) for b in learner.beta()]
        record["settings"][label] = row
    return record


def select(record: dict, *, key: str = "on_mean") -> str:
    """The label of the setting with the lowest validation ``key`` (diverged settings never win)."""
    finite = {label: row["validation"][key] for label, row in record["settings"].items() if "validation" in row}
    if not finite:
        raise ValueError("every setting of the sweep diverged: nothing to select")
    return min(finite, key=finite.get)


#: the fixed inner learning rates tried for the gradient-based baseline: the paper's 0.003 and a decade around it
#: on either side (our networks are 10× narrower than the paper's, so the rate that suits them may differ)
GRADIENT_LRS = (0.001, 0.003, 0.01, 0.03, 0.1)


def _flp(init_plasticity=1e-5, lr_plasticity=0.05, lr_beta=None, lr_feedback=None, max_grad_norm=1.0, lr=3e-3):
    return {"method": "flp", "init_plasticity": init_plasticity, "lr_plasticity": lr_plasticity, "lr_beta": lr_beta,
            "lr_feedback": lr_feedback, "max_grad_norm": max_grad_norm, "lr": lr}


#: FLP's meta-learning settings tried at the chapter's scale (every row spells out all six, so a row does not depend
#: on the preset's defaults). "earlier" is what the chapter used before; the others change one thing at a time
#: or combine changes that helped: P's starting value P₀ and its meta learning rate (P can rise by at most
#: P₀·lr/ln 2 per meta-step), β's and the feedback's meta learning rates (β moves by at most lr_beta per step in
#: logit), no clipping of the meta-gradient, and a larger meta learning rate for the initial weights.
FLP_SETTINGS = {
    "earlier": _flp(),
    "P0=3e-6, lrP=0.5": _flp(init_plasticity=3e-6, lr_plasticity=0.5),
    "P0=3e-5": _flp(init_plasticity=3e-5),
    "lrP=0.2": _flp(lr_plasticity=0.2),
    "lrP=0.5": _flp(lr_plasticity=0.5),
    "lrP=1": _flp(lr_plasticity=1.0),
    "lrP=0.5, lrβ=0.03": _flp(lr_plasticity=0.5, lr_beta=0.03),
    "lrP=0.5, lrβ=0.1": _flp(lr_plasticity=0.5, lr_beta=0.1),
    "lrP=0.5, lrβ=0.03, lrB=0.03": _flp(lr_plasticity=0.5, lr_beta=0.03, lr_feedback=0.03),
    "lrP=0.5, lrβ=0.03, no clip": _flp(lr_plasticity=0.5, lr_beta=0.03, max_grad_norm=None),
    "lrP=0.5, lrβ=0.03, lr=0.01": _flp(lr_plasticity=0.5, lr_beta=0.03, lr=1e-2),
}


def named_sweeps() -> dict[str, tuple[str, dict[str, dict]]]:
    """``{name: (preset, settings)}``: the sweeps whose results ship with the package (chapter 11)."""
    gradient = {f"lr={rate:g}": {"method": "gradient", "init_learning_rate": rate} for rate in GRADIENT_LRS}
    return {"gradient-lr-chapter": ("sine-chapter", gradient),
            "gradient-lr-medium": ("sine-medium", gradient),
            "flp-chapter": ("sine-chapter", dict(FLP_SETTINGS))}


def run_sweep(name: str, out, *, episodes: int | None = None, seeds: Sequence[int] = (0, 1, 2),
              validation_episodes: int = 128, command: str | None = None, progress: bool = False) -> dict:
    """Run the named sweep (:func:`named_sweeps`) and write its record, with ``command``, ``preset``, the
    ``selected`` label and the software versions, atomically to ``out`` (JSON). ``episodes`` overrides the
    preset's meta-steps (recorded in every row's configuration)."""
    import platform
    from pathlib import Path

    from .. import __version__
    from .experiment import presets

    sweeps = named_sweeps()
    if name not in sweeps:
        raise ValueError(f"unknown sweep {name!r}; known: {sorted(sweeps)}")
    preset, settings = sweeps[name]
    config = presets()[preset]
    if episodes is not None:
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        config = replace(config, episodes=episodes)
    record = sweep(config, settings, seeds=seeds, validation_episodes=validation_episodes, progress=progress)
    record = {"command": command, "sweep": name, "preset": preset, "selected": select(record),
              "threads": torch.get_num_threads(),
              "versions": {"credit_tutorial": __version__, "torch": torch.__version__,
                           "python": platform.python_version()}, **record}
    from .reproduce import save_result

    save_result(record, Path(out))
    return record
