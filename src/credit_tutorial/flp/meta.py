"""Meta-training through whole lifetimes: Adam on the learner's meta-parameters, exact checkpoint/resume.

One meta-step draws an episode per ensemble copy, runs the lifetime, scores the test set, back-propagates the
test loss through every lifetime step to the meta-parameters and takes one Adam step. Adam is elementwise, so an
ensemble of K learners (one per seed) trained as one computation gives each copy exactly the single run's result.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .. import rng
from ..checkpoint import load_checkpoint, save_checkpoint
from ..loop import checkpointed_loop
from .episode import Episode
from .learners import MetaLearner

Sampler = Callable[[rng.Generators], Episode]
GROUPS = ("weights", "feedback", "plasticity", "beta")


class MetaTrainingDiverged(RuntimeError):
    """The meta-loss became NaN/inf or exceeded the divergence threshold."""


def meta_optimizer(learner: MetaLearner, *, lr: float = 1e-3, lr_feedback: float | None = None,
                   lr_plasticity: float = 1e-2, lr_beta: float | None = None) -> torch.optim.Adam:
    """Adam with one learning rate per role: ``lr`` for the initial weights (and, unless given, for feedback and β),
    ``lr_plasticity`` for the log-plasticities (log-learning-rates of the gradient learner)."""
    rates = {"weights": lr, "feedback": lr if lr_feedback is None else lr_feedback, "plasticity": lr_plasticity,
             "beta": lr if lr_beta is None else lr_beta}
    for name, value in rates.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"meta learning rate for {name} must be a positive finite number, got {value!r}")
    groups = [{"params": params, "lr": rates[name], "name": name}
              for name, params in learner.parameter_groups().items() if params]
    return torch.optim.Adam(groups)


def _per_copy_norm(parameters, ensemble: bool) -> Tensor:
    squares = [p.grad.square().flatten(start_dim=1 if ensemble else 0).sum(dim=-1) for p in parameters
               if p.grad is not None]
    return torch.stack(squares).sum(dim=0).sqrt()


def clip_grad_norm_per_copy(learner: MetaLearner, max_norm: float) -> Tensor:
    """Scale each ensemble copy's meta-gradient to norm ≤ ``max_norm`` (copies never mix); returns the norms."""
    parameters = [p for p in learner.parameters() if p.grad is not None]
    ensemble = learner.ensemble_size is not None
    norms = _per_copy_norm(parameters, ensemble)
    scale = (max_norm / (norms + 1e-12)).clamp(max=1.0)
    for p in parameters:
        p.grad.mul_(scale.reshape(-1, *([1] * (p.dim() - 1))) if ensemble else scale)
    return norms


def _zero_copies(learner: MetaLearner, bad: Tensor) -> None:
    """Set the meta-gradient of the copies flagged in ``bad`` (one flag per copy, or one for a single learner) to
    zero, and any non-finite entry elsewhere too."""
    for p in learner.parameters():
        if p.grad is None:
            continue
        if learner.ensemble_size is None:
            p.grad.zero_()
        else:
            p.grad[bad.reshape(-1)] = 0
        torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)


def _python(value: Tensor):
    return value.detach().cpu().tolist()


def _finite_or_none(value: Tensor):
    """Like :func:`_python`, with None for NaN/inf (a skipped lifetime, or a log window without a finite one), so
    that histories stay valid JSON."""
    values = _python(value)
    if isinstance(values, float):
        return values if math.isfinite(values) else None
    return [v if math.isfinite(v) else None for v in values]


def meta_fit(learner: MetaLearner, optimizer: torch.optim.Optimizer, sample: Sampler, *, episodes: int,
             generator: rng.Generators, log_every: int = 10, progress: bool = False,
             checkpoint: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = False,
             max_grad_norm: float | None = None, divergence_threshold: float = 1e6,
             lifetime_options: dict | None = None, record_first: int = 5, skip_diverged: bool = False) -> dict:
    """Meta-train ``learner`` for ``episodes`` meta-steps on episodes ``sample(generator)``; return the history.

    history: ``episode`` (meta-steps done), ``meta_loss`` (mean test loss over the last ``log_every`` episodes,
    a float or K floats), ``seconds`` (wall-clock training time so far) and ``cpu_seconds`` (this process's CPU
    time, all threads: on a shared machine the honest measure of the work done). ``checkpoint``/``checkpoint_every`` write an atomic
    checkpoint (learner, optimizer, generator states, history); ``resume=True`` continues from it and ends with
    the same result as an uninterrupted run. ``max_grad_norm`` clips each copy's meta-gradient.
    ``first_meta_losses``: the meta-loss of each of the first ``record_first`` meta-steps on its own (a float or K
    floats each), so that a result file can be checked by re-running its first steps.

    A lifetime whose test loss is NaN/inf or above ``divergence_threshold`` raises :class:`MetaTrainingDiverged`;
    with ``skip_diverged=True`` it is skipped instead: that copy's meta-gradient is set to zero for this step (what
    the authors' code does with NaN gradients; Adam's momentum still moves it), the other copies train as usual, the
    logged ``meta_loss`` averages the copy's finite lifetimes only, and ``skipped`` counts, per copy, the lifetimes
    skipped so far (at each logged point).
    """
    for name, value in (("episodes", episodes), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if max_grad_norm is not None and not (max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm!r}")
    if isinstance(record_first, bool) or not isinstance(record_first, int) or record_first < 0:
        raise ValueError(f"record_first must be a non-negative integer, got {record_first!r}")
    options = lifetime_options or {}
    history = {"episode": [], "meta_loss": [], "seconds": [], "cpu_seconds": [], "first_meta_losses": [],
               "skipped": []}
    state = {"episode": 0, "seconds": 0.0, "cpu_seconds": 0.0, "running": None, "count": 0, "good": None,
             "skipped": None}
    if resume and Path(checkpoint).exists():
        # load on the CPU: generator states must stay CPU tensors; load_state_dict moves the rest to the
        # learner's and the optimizer's device
        saved = load_checkpoint(checkpoint, map_location="cpu")
        learner.load_state_dict(saved["learner"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.set_generator_states(generator, saved["generator"])
        history, state = saved["history"], saved["state"]
        for key in ("first_meta_losses", "skipped"):            # checkpoints of earlier versions lack them
            history.setdefault(key, [])
        if state.get("good") is None and state["running"] is not None:
            state["good"] = torch.full_like(state["running"], float(state["count"]))
        state.setdefault("good", None)
        state.setdefault("skipped", None)

    def save() -> None:
        save_checkpoint({"learner": learner.state_dict(), "optimizer": optimizer.state_dict(),
                         "generator": rng.generator_states(generator), "history": history, "state": state},
                        checkpoint)

    with checkpointed_loop(save if checkpoint is not None else None, checkpoint_every, progress=progress,
                           total=episodes, initial=state["episode"], unit="episode",
                           desc=f"meta-train {learner.short_name}") as loop:
        while state["episode"] < episodes:
            started, cpu_started = time.perf_counter(), time.process_time()
            episode = sample(generator)
            optimizer.zero_grad(set_to_none=True)
            loss = learner.episode_loss(episode, **options)                   # (...) one per copy
            bad = ~torch.isfinite(loss) | (loss.abs() > divergence_threshold)
            if bool(bad.any()) and not skip_diverged:
                copy = "" if learner.ensemble_size is None else f" in ensemble copy {int(bad.flatten().nonzero()[0, 0])}"
                value = float(loss.detach().flatten()[bad.flatten()][0])
                raise MetaTrainingDiverged(
                    f"meta-training diverged at episode {state['episode'] + 1}{copy}: test loss = {value:.4g}. "
                    "Lower init_plasticity (or init_learning_rate) or the plasticity meta learning rate, set "
                    "max_grad_norm, or skip such lifetimes (skip_diverged).")
            if bool(bad.any()):
                torch.where(bad, torch.zeros_like(loss), loss).sum().backward()
                _zero_copies(learner, bad)                                      # NaN can reach a bad copy's slice
            else:
                loss.sum().backward()                                           # copies keep their own gradients
            if max_grad_norm is not None:
                clip_grad_norm_per_copy(learner, max_grad_norm)
            optimizer.step()
            detached = loss.detach()
            if state["episode"] < record_first:
                history["first_meta_losses"].append(_finite_or_none(detached))
            good = (~bad).to(detached.dtype)
            finite = torch.where(bad, torch.zeros_like(detached), detached)
            state["running"] = finite if state["running"] is None else state["running"] + finite
            state["good"] = good if state["good"] is None else state["good"] + good
            state["skipped"] = (1 - good) if state["skipped"] is None else state["skipped"] + (1 - good)
            state["count"] += 1
            state["episode"] += 1
            state["seconds"] += time.perf_counter() - started
            state["cpu_seconds"] += time.process_time() - cpu_started
            if state["episode"] % log_every == 0 or state["episode"] == episodes:
                history["episode"].append(state["episode"])
                history["meta_loss"].append(_finite_or_none(state["running"] / state["good"]))
                history["seconds"].append(state["seconds"])
                history["cpu_seconds"].append(state["cpu_seconds"])
                history["skipped"].append(_python(state["skipped"].round().to(torch.int64)))
                state["running"], state["count"], state["good"] = None, 0, None
                if loop.showing:
                    mean = torch.as_tensor(history["meta_loss"][-1]).mean().item()
                    loop.show({"meta_loss": f"{mean:.4g}"})
            loop.advance(1)
            loop.step_done(state["episode"])
    return history


@torch.no_grad()
def evaluate(learner: MetaLearner, sample: Sampler, generator: rng.Generators, episodes: int,
             **lifetime_options) -> dict[str, Tensor]:
    """Mean test ``loss`` (and ``error``) of fresh lifetimes, per copy, over ``episodes`` draws of ``sample``
    (times the meta-batch, if it has one); also ``losses`` (``errors``), every lifetime's value ``(n, [K])``."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    copies = 0 if learner.ensemble_size is None else 1
    results = [learner.evaluate(sample(generator), **lifetime_options) for _ in range(episodes)]
    out = {}
    for key, name in (("loss", "losses"), ("error", "errors")):
        if key not in results[0]:
            continue
        values = torch.stack([r[key] for r in results])              # (episodes, [K], [M])
        if values.dim() > 1 + copies:                                # a meta-batch: count its episodes too
            values = values.movedim(1 + copies, 1).flatten(0, 1)
        out[name], out[key] = values, values.mean(dim=0)
    return out
