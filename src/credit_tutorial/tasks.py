"""Tasks the package makes itself: a teacher–student regression (chapter 12).

A random *teacher* MLP maps Gaussian inputs ``x ~ N(0, I)`` to targets ``y = teacher(x) + noise · ε``,
``ε ~ N(0, I)``. A student with the teacher's architecture can represent the target exactly, so what limits it
is the learning rule alone (and the noise floor). The teacher's weights are drawn like a network's initial weights
(``N(0, 2/fan_in)``), and its output layer is then rescaled so that every output has zero mean and unit variance
over the training inputs: the rescaled teacher is still an MLP of the same architecture, and the targets of every
task in the family have the same scale, whatever the draw. Every draw comes from one generator, in a fixed order
(teacher weights, training inputs, test inputs, noise), so a seed fixes the task.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Sequence

import torch

from . import rng
from .data import Dataset
from .networks import MLP

if TYPE_CHECKING:  # only for the annotation; importing experiment here would be circular
    from .experiment import TrainConfig

#: defaults of the ``teacher`` task of :data:`credit_tutorial.experiment.TASKS`
TEACHER_N_TRAIN = 4000
TEACHER_N_TEST = 1000
TEACHER_NOISE = 0.1
#: the teacher of a run with seed s is drawn from generator s + this offset, a stream no student uses
#: (experiment.stream gives seed + 0, + 1,000,003 and + 2,000,006 to a run's init, data and rule)
TEACHER_SEED_OFFSET = 7_000_001


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def random_teacher(sizes: Sequence[int], activation: str | Sequence[str] = "sigmoid", *,
                   generator: torch.Generator, gain: float = 1.0, dtype: torch.dtype = torch.float32,
                   device=None) -> MLP:
    """A teacher MLP ``sizes[0] → … → sizes[-1]`` with zero biases and a linear output: weights ``N(0, 2/fan_in)``,
    those of the hidden layers multiplied by ``gain`` (a larger gain drives the nonlinearity harder)."""
    if rng.is_ensemble(generator) or not isinstance(generator, torch.Generator):
        raise ValueError("generator must be one torch.Generator (a teacher is a single network)")
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not (0 < gain < math.inf):
        raise ValueError(f"gain must be a positive finite number, got {gain!r}")
    teacher = MLP(sizes, activation, "identity", bias=True, init="he", generator=generator, dtype=dtype,
                  device=device)
    teacher.requires_grad_(False)
    for weight in list(teacher.weights)[:-1]:  # the output layer's scale is set by standardize_outputs
        weight.mul_(gain)
    return teacher


@torch.no_grad()
def standardize_outputs(teacher: MLP, x: torch.Tensor) -> MLP:
    """Rescale ``teacher``'s output layer in place so that its outputs on ``x`` have zero mean and unit variance.

    ``y ← (y − μ) / σ`` per output is ``W_L ← W_L / σ``, ``b_L ← (b_L − μ) / σ``: still the same architecture.
    """
    y = teacher(x)                                   # (n, n_out)
    mean, std = y.mean(dim=0), y.std(dim=0)
    if not bool((std > 0).all()):
        raise ValueError("the teacher's outputs do not vary over x: a constant target cannot be standardized")
    teacher.weights[-1].div_(std.unsqueeze(-1))      # (n_out, n_{L-1}) / (n_out, 1)
    teacher.biases[-1].sub_(mean).div_(std)
    return teacher


def make_teacher_student(n_train: int, n_test: int, sizes: Sequence[int], activation: str | Sequence[str] = "sigmoid",
                         noise: float = TEACHER_NOISE, generator: torch.Generator | None = None, *,
                         gain: float = 1.0, dtype: torch.dtype = torch.float32,
                         device=None) -> tuple[Dataset, MLP]:
    """:func:`teacher_student` and the (standardized) teacher that made it."""
    n_train, n_test = _check_count("n_train", n_train), _check_count("n_test", n_test)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not (0 <= noise < math.inf):
        raise ValueError(f"noise must be a finite number >= 0 (the standard deviation of the target noise), "
                         f"got {noise!r}")
    if generator is None:
        raise ValueError("generator must be a torch.Generator: the package never draws from the global stream")
    sizes = tuple(sizes)
    teacher = random_teacher(sizes, activation, generator=generator, gain=gain, dtype=dtype, device=device)
    x_train = rng.normal((n_train, sizes[0]), generator, dtype=dtype, device=device)   # (n_train, n_in)
    x_test = rng.normal((n_test, sizes[0]), generator, dtype=dtype, device=device)     # (n_test, n_in)
    standardize_outputs(teacher, x_train)
    with torch.no_grad():
        y_train, y_test = teacher(x_train), teacher(x_test)                              # (n, n_out)
        if noise > 0:
            y_train = y_train + rng.normal(y_train.shape, generator, std=noise, dtype=dtype, device=device)
            y_test = y_test + rng.normal(y_test.shape, generator, std=noise, dtype=dtype, device=device)
    names = "/".join(activation) if isinstance(activation, (list, tuple)) else activation
    source = (f"teacher-student regression: random {names} teacher {'-'.join(map(str, sizes))} (gain {gain:g}), "
              f"x ~ N(0, I), noise sd {noise:g}, {n_train:,} train / {n_test:,} test")
    return Dataset(x_train, y_train, x_test, y_test, source=source, n_classes=None), teacher


def teacher_student(n_train: int, n_test: int, sizes: Sequence[int], activation: str | Sequence[str] = "sigmoid",
                    noise: float = TEACHER_NOISE, generator: torch.Generator | None = None, *,
                    gain: float = 1.0, dtype: torch.dtype = torch.float32, device=None) -> Dataset:
    """A regression task from a random teacher MLP of architecture ``sizes``: float targets ``(n, sizes[-1])``.

    Inputs ``x ~ N(0, I)``; targets ``teacher(x) + noise · ε`` with the teacher's outputs standardized on the
    training inputs (so the best possible test loss ``½‖ŷ − y‖²`` is ``½ · n_out · noise²``). ``activation`` is the
    teacher's hidden nonlinearity (one name, or one per hidden layer); ``gain`` scales its hidden weights (see
    :func:`random_teacher`); ``generator`` fixes the task.
    """
    return make_teacher_student(n_train, n_test, sizes, activation, noise, generator, gain=gain, dtype=dtype,
                                device=device)[0]


def teacher_task(config: "TrainConfig") -> Dataset:
    """The ``teacher`` task of the experiment runner: a teacher with the configured architecture and hidden
    nonlinearity (so the student can represent it), drawn from the run's seed; ``n_train``/``n_test`` default to
    4,000/1,000 and the target noise is 0.1. The seeds of an ensemble (``run(config, seeds=[...])``) all learn the
    teacher of ``config.seed``."""
    generator = rng.make_generator(config.seed + TEACHER_SEED_OFFSET)
    return teacher_student(config.n_train or TEACHER_N_TRAIN, config.n_test or TEACHER_N_TEST, config.sizes,
                           config.hidden_activation, TEACHER_NOISE, generator)


def fraction_unexplained(loss: float, n_outputs: int, noise: float = TEACHER_NOISE) -> float:
    """A loss ``⟨½‖ŷ − y‖²⟩`` on a teacher task as the fraction of the targets' variance (``1 + noise²`` per
    output, by construction) left unexplained: about 1 for predicting the mean, ``noise²/(1 + noise²)`` for the
    teacher itself (the noise floor)."""
    return 2.0 * loss / (n_outputs * (1.0 + noise ** 2))
