"""Every rule side by side (chapter 12): the same networks, data, seeds and budget; one table and one figure.

A *setting* is a task with a network and a training configuration (embedded MNIST on 784-50-20-10 sigmoid, the
same on ReLU, a teacher–student regression); an *entry* is a rule with its options and learning rate. Every entry
that applies to a setting is trained there as one ensemble of seeds (copy k = the single run with seed k; a seed
fixes the initial weights and the data order, so all rules start alike and see the same batches). At every
evaluation the training loop also records, per hidden layer, how the rule's weight update compares with the true
gradient of the rule's own objective on the same forward pass and output error:

- ``update_angle``: angle (degrees) between the update ``⟨δ_l h_{l−1}ᵀ⟩`` and the gradient, averaged over probe
  batches of the training batch size (0° = backprop, 90° = no information);
- ``update_sign_congruence``: fraction of the synapses whose gradient is not zero where the update has the
  gradient's sign (1 = backprop, 0.5 = a coin flip; an update of 0 where the gradient is not counts as a miss);
- ``update_size``: ``‖update‖ / ‖gradient‖`` (1 = backprop): the angle and the signs ignore how large a step is.

:func:`comparison_table` turns a finished :class:`Comparison` (and, optionally, costs measured by
:mod:`credit_tutorial.bench`) into one table; :func:`plot_comparison` draws the figure, at any recorded epoch.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch
from torch import Tensor

from . import rng
from .data import Dataset, load_embedded_mnist
from .experiment import TrainConfig, run
from .metrics import matrix_angle
from .networks import MLP
from .propagation import backprop_deltas, weight_gradients
from .rules import get_rule
from .tasks import TEACHER_NOISE, TEACHER_SEED_OFFSET, fraction_unexplained, teacher_student


# ------------------------------------------------------------------------------------------------ what is compared
@dataclass(frozen=True)
class Entry:
    """One rule as the comparison runs it: short rule name, options, learning rate and what it can learn."""

    key: str
    label: str
    rule: str
    options: Mapping = field(default_factory=dict)
    lr: float = 0.1
    needs_relu: bool = False           # Q-AGREL gates its feedback with ReLU′ ∈ {0, 1}
    classification_only: bool = False  # Q-AGREL is rewarded for choosing the label


#: The rules of the book, each at the learning rate of its own chapter (nothing is tuned for the comparison):
#: BP, FA, DFA and learned feedback 0.1 (chapters 1 and 5), node perturbation 0.01 (chapter 2), Q-AGREL 0.5
#: (chapter 9, where its feedback weights are learned by the same four-factor rule as the forward ones).
ENTRIES: dict[str, Entry] = {entry.key: entry for entry in [
    Entry("bp", "backprop", "bp"),
    Entry("fa", "feedback alignment", "fa"),
    Entry("dfa", "direct FA", "dfa"),
    Entry("np-ridge", "learned B, ridge", "np", {"c": 1e-3, "feedback": "ridge", "solve_every": 5}),
    Entry("np-sgd", "learned B, SGD", "np", {"c": 1e-3, "feedback": "sgd", "feedback_lr": 1e-3}),
    Entry("reinforce", "node perturbation", "reinforce", {"c": 1e-2}, lr=0.01),
    Entry("qagrel", "Q-AGREL", "qagrel", {"epsilon": 0.025, "feedback": "learned"}, lr=0.5, needs_relu=True,
          classification_only=True),
]}

#: What each rule needs biologically, in the order of the table's rows.
REQUIREMENTS = ("weight transport", "derivative of the nonlinearity", "injected noise", "global reward only",
                "meta-learned prior")

#: FLP (chapter 11) is not trained here: it is a *lifetime* learner meta-trained across a family of tasks, so
#: "its error after E epochs on one task" does not exist; its requirements are described (it has no rule class).
FLP_REQUIREMENTS = {"weight transport": False, "derivative of the nonlinearity": False, "injected noise": False,
                    "global reward only": False, "meta-learned prior": True}

#: rows of :mod:`credit_tutorial.bench` that time each entry (``flp`` is FLP's lifetime step)
BENCH_ROWS = {"fa": "fa", "dfa": "dfa", "np-ridge": "np-ridge-k", "np-sgd": "np-sgd", "reinforce": "reinforce",
              "qagrel": "qagrel", "flp": "flp-step"}


@dataclass(frozen=True)
class Setting:
    """A task, a network and a training configuration (``config.rule``/``lr``/``rule_options`` come from entries)."""

    key: str
    label: str
    config: TrainConfig
    data: Dataset

    @property
    def classification(self) -> bool:
        return not self.data.y_train.is_floating_point()

    @property
    def relu(self) -> bool:
        activation = self.config.hidden_activation
        names = activation if isinstance(activation, list) else [activation]
        return all(name == "relu" for name in names)


def standard_settings(epochs: float = 6, *, eval_every_epochs: float = 1, teacher_sizes=(20, 50, 20, 10),
                      teacher_train: int = 4000, teacher_test: int = 1000, teacher_seed: int = 0,
                      mnist: Dataset | None = None, mnist_train: int | None = None, mnist_test: int | None = None,
                      device: str = "cpu") -> dict[str, Setting]:
    """The chapter's three settings, all with batches of 32 and squared-error rules:

    - ``mnist-sigmoid``: the embedded MNIST subset (whatever else is installed, so that the budget is the same
      everywhere; ``mnist=`` overrides it), 784-50-20-10 sigmoid, He initialisation (chapters 1 and 5);
    - ``mnist-relu``: the same with ReLU hidden layers and uniform ±0.05 initial weights (Q-AGREL's network,
      chapter 9), so that Q-AGREL is compared with every other rule on the very same network;
    - ``teacher``: a random sigmoid teacher ``teacher_sizes`` (:func:`credit_tutorial.tasks.teacher_student`), the
      students having the teacher's architecture.

    ``epochs`` of training each; evaluations (and the update measurements) every ``eval_every_epochs`` epochs.
    ``mnist_train``/``mnist_test`` cut MNIST to its first examples (tests use a tiny configuration).
    """
    if not (isinstance(eval_every_epochs, (int, float)) and eval_every_epochs > 0):
        raise ValueError(f"eval_every_epochs must be a positive number, got {eval_every_epochs!r}")
    mnist = load_embedded_mnist() if mnist is None else mnist
    mnist = mnist.subset(mnist_train, mnist_test)
    teacher = teacher_student(teacher_train, teacher_test, teacher_sizes, "sigmoid", TEACHER_NOISE,
                              rng.make_generator(teacher_seed + TEACHER_SEED_OFFSET))
    batch = 32
    common = dict(objective="mse", batch_size=batch, epochs=epochs, device=device)

    def every(data: Dataset) -> int:
        return max(1, round(eval_every_epochs * math.ceil(data.n_train / batch)))

    configs = {
        "mnist-sigmoid": ("MNIST, sigmoid", mnist, TrainConfig(task="mnist", sizes=(784, 50, 20, 10),
                                                               hidden_activation="sigmoid", init="he",
                                                               eval_every=every(mnist), **common)),
        "mnist-relu": ("MNIST, ReLU", mnist, TrainConfig(task="mnist", sizes=(784, 50, 20, 10),
                                                         hidden_activation="relu", init="uniform:0.05",
                                                         eval_every=every(mnist), **common)),
        "teacher": ("teacher–student", teacher, TrainConfig(task="teacher", sizes=tuple(teacher_sizes),
                                                            hidden_activation="sigmoid", init="he",
                                                            eval_every=every(teacher), seed=teacher_seed,
                                                            **common)),
    }
    return {key: Setting(key, label, config, data) for key, (label, data, config) in configs.items()}


def not_applicable(entry: Entry, setting: Setting) -> str | None:
    """Why ``entry`` is not run in ``setting`` (``None`` when it is)."""
    if entry.classification_only and not setting.classification:
        return f"{entry.label} learns from a reward for choosing the right class: classification only"
    if entry.needs_relu and not setting.relu:
        return f"{entry.label} gates its feedback with ReLU′ ∈ {{0, 1}}: ReLU hidden layers only"
    return None


def entry_config(entry: Entry, setting: Setting, **overrides) -> TrainConfig:
    """The setting's configuration with the entry's rule, options and learning rate."""
    return replace(setting.config, rule=entry.rule, rule_options=dict(entry.options), lr=entry.lr, **overrides)


# ------------------------------------------------------------------------------------------------ measurements
def sign_agreement(update: Tensor, gradient: Tensor) -> Tensor:
    """Fraction of entries with ``gradient ≠ 0`` where ``sign(update) = sign(gradient)``, ``(..., m, n)`` → ``(...)``.

    Entries where the gradient is exactly zero (inputs that are always 0, silent ReLU units) say nothing about a
    rule and are left out; an update of 0 where the gradient is not counts as a disagreement. NaN when the whole
    gradient is zero.
    """
    if update.shape != gradient.shape:
        raise ValueError(f"update and gradient must have equal shapes, got {tuple(update.shape)} and "
                         f"{tuple(gradient.shape)}")
    informative = (gradient != 0).flatten(start_dim=-2)                       # (..., m n)
    agree = (torch.sign(update) == torch.sign(gradient)).flatten(start_dim=-2) & informative
    return agree.sum(dim=-1).to(update.dtype) / informative.sum(dim=-1).to(update.dtype)


def update_agreement(rule, x: Tensor, target: Tensor, batch_size: int | None = None) -> dict[str, list]:
    """Per hidden layer: angle, sign agreement and relative size of the rule's weight update against the gradient.

    ``x``/``target`` are split into probe batches of ``batch_size`` samples (default: all at once); on each, the
    rule computes its credit (one forward pass, its own output error ``δ_L``, for Q-AGREL its own choice of
    action) and backprop carries the same ``δ_L`` down through ``Wᵀ`` on the same forward pass. Values are averaged
    over the probe batches (NaN ones left out, e.g. a rule that sends no error yet). The rule's generator is
    restored afterwards, so measuring does not change training. Returns ``{"update_angle": [...],
    "update_sign_congruence": [...], "update_size": [...]}`` with one float (or one list of K floats for an
    ensemble) per hidden layer; ``update_size`` is ``‖update‖ / ‖gradient‖``.
    """
    n = x.shape[-2]
    batch = n if batch_size is None else batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    state = rng.generator_states(rule.generator)
    angles, signs, sizes = [], [], []
    try:
        with torch.no_grad():
            for start in range(0, n - batch + 1, batch):  # whole probe batches only
                rows = slice(start, start + batch)
                xs = x[..., rows, :]
                ts = target[..., rows, :] if target.is_floating_point() else target[..., rows]
                credit = rule.compute_credit(xs, ts)
                derivatives = rule.network.derivatives(credit.trace)
                exact = backprop_deltas(list(rule.network.weights), derivatives, credit.output_delta)
                updates = weight_gradients(credit.trace, credit.deltas)
                gradients = weight_gradients(credit.trace, exact)
                hidden = range(len(exact) - 1)
                angles.append(torch.stack([matrix_angle(updates[i][0], gradients[i][0]) for i in hidden]))
                signs.append(torch.stack([sign_agreement(updates[i][0], gradients[i][0]) for i in hidden]))
                sizes.append(torch.stack([_norm(updates[i][0]) / _norm(gradients[i][0]) for i in hidden]))
    finally:
        rng.set_generator_states(rule.generator, state)
    if not angles:
        raise ValueError(f"x holds {n} samples, fewer than one probe batch of {batch}")
    angle = torch.stack(angles).nanmean(dim=0)   # (layers,) or (layers, K)
    sign = torch.stack(signs).nanmean(dim=0)
    size = torch.stack(sizes).nanmean(dim=0)
    return {"update_angle": angle.cpu().tolist(), "update_sign_congruence": sign.cpu().tolist(),
            "update_size": size.cpu().tolist()}


def _norm(matrix: Tensor) -> Tensor:
    """Frobenius norm of ``(..., m, n)`` → ``(...)``."""
    return matrix.flatten(start_dim=-2).norm(dim=-1)


def agreement_metric(x: Tensor, target: Tensor, batch_size: int):
    """A ``fit`` metric recording :func:`update_agreement` on fixed probe data at every evaluation."""
    def metric(rule, data):
        reference = data.x_train
        labels = target.to(reference.device, reference.dtype) if target.is_floating_point() \
            else target.to(reference.device)
        return update_agreement(rule, x.to(reference.device, reference.dtype), labels, batch_size)
    return metric


# ------------------------------------------------------------------------------------------------ running
@dataclass
class Comparison:
    """A finished comparison: ``histories[setting][entry]`` (ensemble histories, one value per seed), the rules
    that were not run and why, and the seconds each run took (wall and CPU)."""

    settings: dict[str, Setting]
    entries: dict[str, Entry]
    seeds: list[int]
    histories: dict[str, dict[str, dict]]
    skipped: dict[str, dict[str, str]]
    seconds: dict[str, dict[str, tuple[float, float]]]
    lrs: list[float] | None = None  # a learning-rate sweep: copy i·len(seeds) + j ran lrs[i] with seeds[j]

    def epochs(self, setting: str) -> list[float]:
        """The epochs at which ``setting`` was evaluated."""
        return next(iter(self.histories[setting].values()))["epoch"]

    def at_lr(self, lr: float) -> "Comparison":
        """The copies of a learning-rate sweep that ran ``lr`` (all seeds), as a comparison of its own."""
        if self.lrs is None:
            raise ValueError("this comparison is not a learning-rate sweep (run_comparison(..., lrs=[...]))")
        matches = [i for i, value in enumerate(self.lrs) if math.isclose(value, lr, rel_tol=1e-9)]
        if not matches:
            raise ValueError(f"lr must be one of the swept learning rates {self.lrs}, got {lr!r}")
        n = len(self.seeds)
        copies = list(range(matches[0] * n, (matches[0] + 1) * n))
        histories = {key: {name: select_copies(history, copies) for name, history in per_entry.items()}
                     for key, per_entry in self.histories.items()}
        entries = {name: replace(entry, lr=lr) for name, entry in self.entries.items()}
        return Comparison(self.settings, entries, self.seeds, histories, self.skipped, self.seconds)


    def at_own_lrs(self) -> "Comparison":
        """From a learning-rate sweep, every entry at its own rate (``entry.lr``, which must be one of the swept)."""
        if self.lrs is None:
            raise ValueError("this comparison is not a learning-rate sweep (run_comparison(..., lrs=[...]))")
        histories = {key: {} for key in self.histories}
        ran = {name for per_entry in self.histories.values() for name in per_entry}
        for name, entry in self.entries.items():
            if name not in ran:  # skipped everywhere (e.g. Q-AGREL on a regression): nothing to read
                continue
            one = self.at_lr(entry.lr)
            for key, per_entry in one.histories.items():
                if name in per_entry:
                    histories[key][name] = per_entry[name]
        return Comparison(self.settings, self.entries, self.seeds, histories, self.skipped, self.seconds)


def combine(*comparisons: Comparison) -> Comparison:
    """One comparison from several over different settings (the same entries and seeds)."""
    first = comparisons[0]
    for other in comparisons[1:]:
        if list(other.entries) != list(first.entries) or other.seeds != first.seeds:
            raise ValueError("comparisons to combine must have the same entries and seeds")
        if set(other.settings) & set(first.settings):
            raise ValueError(f"comparisons to combine must cover different settings, both have "
                             f"{sorted(set(other.settings) & set(first.settings))}")
    merged = {}
    for field_ in ("settings", "histories", "skipped", "seconds"):
        merged[field_] = {key: value for c in comparisons for key, value in getattr(c, field_).items()}
    return Comparison(merged["settings"], dict(first.entries), list(first.seeds), merged["histories"],
                      merged["skipped"], merged["seconds"])


_SHARED_KEYS = ("step", "epoch", "seconds")          # one value for all copies
_PER_LAYER_KEYS = ("update_angle", "update_sign_congruence", "update_size")  # [layer][copy]


def select_copies(history: dict, copies: Sequence[int]) -> dict:
    """The history of the ensemble copies ``copies`` only (values of a single copy stay lists of one)."""
    out = {}
    for key, values in history.items():
        if key in _SHARED_KEYS:
            out[key] = list(values)
        elif key in _PER_LAYER_KEYS:
            out[key] = [[[layer[i] for i in copies] for layer in point] for point in values]
        else:
            out[key] = [[point[i] for i in copies] for point in values]
    return out


def run_comparison(settings: Mapping[str, Setting], entries: Mapping[str, Entry] | None = None,
                   seeds: Sequence[int] = (0, 1, 2), *, lrs: Sequence[float] | None = None, probe: int = 256,
                   epochs: float | None = None, eval_every: int | None = None,
                   progress: bool = False) -> Comparison:
    """Train every applicable entry in every setting as one ensemble over ``seeds``; record the update measurements
    on the first ``probe`` test examples (in batches of the training batch size) at every evaluation.

    ``lrs``: a learning-rate sweep instead of each entry's own rate: every rule runs every rate with every seed,
    all in one ensemble (read one rate with :meth:`Comparison.at_lr`). ``epochs``/``eval_every`` override the
    settings' own (e.g. to recompute one point of a slider). A copy that diverges is frozen and records ``None``
    (``on_divergence="mask"``), so one unstable copy cannot stop a run.
    """
    entries = dict(ENTRIES if entries is None else entries)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    if lrs is not None:
        lrs = [float(lr) for lr in lrs]
        if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
            raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {lrs!r}")
    copy_seeds = seeds if lrs is None else [s for _ in lrs for s in seeds]
    copy_lrs = None if lrs is None else [lr for lr in lrs for _ in seeds]
    if isinstance(probe, bool) or not isinstance(probe, int) or probe < 1:
        raise ValueError(f"probe must be a positive number of test examples, got {probe!r}")
    histories, skipped, seconds = {}, {}, {}
    for key, setting in settings.items():
        histories[key], skipped[key], seconds[key] = {}, {}, {}
        batch = setting.config.batch_size
        n_probe = min(probe, setting.data.n_test) // batch * batch
        if n_probe < batch:
            raise ValueError(f"setting {key!r}: probe = {probe} and {setting.data.n_test} test examples leave no "
                             f"probe batch of {batch}")
        metric = agreement_metric(setting.data.x_test[:n_probe], setting.data.y_test[:n_probe], batch)
        overrides = {}
        if epochs is not None:
            overrides["epochs"] = epochs
        if eval_every is not None:
            overrides["eval_every"] = eval_every
        for name, entry in entries.items():
            reason = not_applicable(entry, setting)
            if reason is not None:
                skipped[key][name] = reason
                continue
            config = entry_config(entry, setting, **overrides)
            wall, cpu = time.perf_counter(), time.process_time()
            result = run(config, seeds=copy_seeds, lrs=copy_lrs, data=setting.data, metrics={"agreement": metric},
                         on_divergence="mask", progress=progress)
            seconds[key][name] = (time.perf_counter() - wall, time.process_time() - cpu)
            histories[key][name] = result.history
    return Comparison(dict(settings), entries, seeds, histories, skipped, seconds, lrs)


# ------------------------------------------------------------------------------------------------ summaries
@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over the seeds with a value."""

    mean: float
    sd: float
    values: tuple
    missing: int = 0    # seeds without a value: diverged, or undefined (the angle of an update that is zero)
    diverged: int = 0   # of which diverged

    def __str__(self) -> str:
        return format_stat(self)


def stat(values, diverged: Sequence[bool] | None = None) -> Stat:
    """:class:`Stat` of a list of per-seed values. ``None`` and NaN are missing; ``diverged`` flags the seeds
    whose training diverged (default: those whose value is ``None``, as a diverged copy records)."""
    values = values if isinstance(values, list) else [values]
    if diverged is None:
        diverged = [v is None for v in values]
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    missing, n_diverged = len(values) - len(kept), sum(bool(d) for d in diverged)
    if not kept:
        return Stat(math.nan, math.nan, tuple(values), missing, n_diverged)
    mean = sum(kept) / len(kept)
    sd = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else 0.0
    return Stat(mean, sd, tuple(values), missing, n_diverged)


def format_stat(s: Stat, digits: int = 1, scale: float = 1.0) -> str:
    """``mean ± sd``; ``diverged`` when every seed diverged, ``—`` when the value is undefined."""
    if math.isnan(s.mean):
        return "diverged" if s.diverged == len(s.values) else "—"
    text = f"{scale * s.mean:.{digits}f} ± {scale * s.sd:.{digits}f}"
    return text + (f" ({s.diverged} diverged)" if s.diverged else "")


def _index(history: dict, epoch: float | None) -> int:
    if epoch is None:
        return len(history["epoch"]) - 1
    for i, e in enumerate(history["epoch"]):
        if math.isclose(e, epoch, rel_tol=1e-9, abs_tol=1e-9):
            return i
    raise ValueError(f"epoch must be one of the evaluated epochs {history['epoch']}, got {epoch!r}")


def error_values(setting: Setting, history: dict, index: int = -1) -> list:
    """Per-seed error at evaluation ``index``: test error in % (classification), or the % of the targets'
    variance left unexplained on the test set (teacher–student regression)."""
    if setting.classification:
        return [None if v is None else 100.0 * v for v in _per_copy(history["test_error"][index])]
    n_out = setting.config.sizes[-1]
    return [None if v is None else 100.0 * fraction_unexplained(v, n_out, TEACHER_NOISE)
            for v in _per_copy(history["test_loss"][index])]


def _per_copy(value) -> list:
    return value if isinstance(value, list) else [value]


def summary(comparison: Comparison, epoch: float | None = None) -> dict[str, dict[str, dict]]:
    """``summary[setting][entry]`` = ``{"error": Stat, "angle": [Stat per hidden layer], "sign": [...],
    "size": [...]}`` at ``epoch`` (one of the evaluated epochs; default the end of training)."""
    out = {}
    for key, per_entry in comparison.histories.items():
        setting = comparison.settings[key]
        out[key] = {}
        for name, history in per_entry.items():
            i = _index(history, epoch)
            errors = error_values(setting, history, i)
            diverged = [e is None for e in errors]   # a diverged copy records None for its loss from then on
            out[key][name] = {
                "error": stat(errors),
                "angle": [stat(_per_copy(layer), diverged) for layer in history["update_angle"][i]],
                "sign": [stat(_per_copy(layer), diverged) for layer in history["update_sign_congruence"][i]],
                "size": [stat(_per_copy(layer), diverged) for layer in history["update_size"][i]],
            }
    return out


def margin_below(lower: Stat, higher: Stat, *, sds: float = 3.0, at_least: float = 0.0) -> float:
    """How far ``lower`` lies below ``higher`` beyond ``sds`` combined seed standard deviations (and an absolute
    ``at_least``): positive when the difference of the means exceeds ``max(sds·√(sd₁² + sd₂²), at_least)``. A
    chapter asserts ``margin_below(a, b) > 0`` for "a is lower than b", a claim the seed spread backs."""
    if lower.missing or higher.missing or math.isnan(lower.mean) or math.isnan(higher.mean):
        return -math.inf
    needed = max(sds * math.hypot(lower.sd, higher.sd), at_least)
    return (higher.mean - lower.mean) - needed


# ------------------------------------------------------------------------------------------------ requirements
def requirements(entry: Entry) -> dict[str, bool]:
    """What ``entry``'s rule needs biologically: the rule's own ``requirements`` (read from an instance on a tiny
    network, since Q-AGREL's depend on its feedback mode)."""
    sizes = (3, 4, 4, 2)
    network = MLP(sizes, "relu" if entry.needs_relu else "sigmoid", generator=rng.make_generator(0))
    rule = get_rule(entry.rule)(network, "mse", generator=rng.make_generator(1), **dict(entry.options))
    needs = dict(rule.requirements)
    missing = [name for name in REQUIREMENTS if name not in needs]
    if missing:
        raise ValueError(f"rule {entry.rule!r} does not declare {missing} in its requirements")
    return {name: bool(needs[name]) for name in REQUIREMENTS}


# ------------------------------------------------------------------------------------------------ costs
def bench_costs(result: dict, batch: int = 32) -> dict[str, dict]:
    """``{entry: {"ratio", "q1", "q3", "macs", "network"}}`` from a :func:`credit_tutorial.bench.run_bench` record:
    the median cost of one training step relative to backprop on the same network (and the interquartile range of
    the paired ratios, and the multiply-add ratio); backprop itself is 1."""
    rows = {(row["rule"], row["network"]): row for row in result["rows"] if row["batch"] == batch
            and not row.get("copies")}
    costs = {}
    for key, bench_name in BENCH_ROWS.items():
        found = [row for (name, _), row in rows.items() if name == bench_name]
        if found:
            row = found[0]
            costs[key] = {"ratio": row["ratio"]["median"], "q1": row["ratio"]["q1"], "q3": row["ratio"]["q3"],
                          "macs": row["arithmetic_ratio"], "network": row["network"]}
    reference = [row for (name, _), row in rows.items() if name == "bp"]
    if reference:
        costs["bp"] = {"ratio": 1.0, "q1": 1.0, "q3": 1.0, "macs": 1.0, "network": reference[0]["network"]}
    return costs


# ------------------------------------------------------------------------------------------------ the table
def label_of(comparison: Comparison, key: str) -> str:
    """An entry's label (``"flp"``: FLP's lifetime step, which is timed but not trained here)."""
    return comparison.entries[key].label if key in comparison.entries else "FLP lifetime step"


@dataclass
class Table:
    """Rows of cells under one header; ``groups`` name the block each row belongs to."""

    header: list[str]
    rows: list[list[str]]
    groups: list[str]
    notes: list[str]

    def to_text(self) -> str:
        widths = [max(len(str(r[i])) for r in [self.header] + self.rows) for i in range(len(self.header))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(self.header, widths))]
        group = None
        for g, row in zip(self.groups, self.rows):
            if g != group:
                lines.append(f"-- {g}")
                group = g
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        return "\n".join(lines + [f"* {note}" for note in self.notes])

    def to_html(self) -> str:
        esc = html.escape
        out = ['<table class="comparison" style="font-size:0.8em;border-collapse:collapse">',
               "<thead><tr>" + "".join(f'<th style="text-align:left;padding:2px 6px">{esc(h)}</th>'
                                       for h in self.header) + "</tr></thead><tbody>"]
        group = None
        for g, row in zip(self.groups, self.rows):
            if g != group:
                out.append(f'<tr><td colspan="{len(self.header)}" style="font-weight:bold;padding-top:6px">'
                           f"{esc(g)}</td></tr>")
                group = g
            out.append("<tr>" + "".join(f'<td style="padding:2px 6px;white-space:nowrap">{esc(str(c))}</td>'
                                        for c in row) + "</tr>")
        out.append("</tbody></table>")
        if self.notes:
            out.append('<p style="font-size:0.75em">' + "<br>".join(esc(n) for n in self.notes) + "</p>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.to_text()


def comparison_table(comparison: Comparison, costs: Mapping[str, dict] | None = None, *,
                     epoch: float | None = None, include_flp: bool = True) -> Table:
    """One table, rules as columns: final error per setting; per setting and hidden layer, the angle, the sign
    agreement and the relative size of the update against the gradient; cost per step relative to backprop; and
    what each rule needs biologically."""
    stats = summary(comparison, epoch)
    keys = list(comparison.entries)
    header = ["", *[comparison.entries[k].label for k in keys]] + (["FLP"] if include_flp else [])
    rows, groups = [], []

    def add(group: str, label: str, cells: list[str], flp: str = "") -> None:
        rows.append([label, *cells] + ([flp] if include_flp else []))
        groups.append(group)

    not_here = "not trained here (ch. 11)"
    for skey, setting in comparison.settings.items():
        unit = "test error, %" if setting.classification else "variance unexplained, %"
        cells = []
        for k in keys:
            s = stats[skey].get(k)
            cells.append(format_stat(s["error"]) if s else "n/a")
        add("final error (mean ± sd over seeds)", f"{setting.label} ({unit})", cells, not_here)
    n_layers = len(next(iter(next(iter(stats.values())).values()))["angle"])
    for name, field_, digits, scale in (("update angle to the gradient, °", "angle", 0, 1.0),
                                        ("sign agreement with the gradient, %", "sign", 0, 100.0),
                                        ("update size, ‖update‖ / ‖gradient‖", "size", 2, 1.0)):
        for skey, setting in comparison.settings.items():
            for layer in range(n_layers):
                cells = []
                for k in keys:
                    s = stats[skey].get(k)
                    cells.append(format_stat(s[field_][layer], digits, scale) if s else "n/a")
                add(name, f"{setting.label}, hidden layer {layer + 1}", cells, "—")
    if costs is not None:
        cells = []
        for k in keys:
            c = costs.get(k)
            cells.append("—" if c is None else f"{c['ratio']:.2f} [{c['q1']:.2f}–{c['q3']:.2f}]")
        flp = costs.get("flp")
        add("cost per training step (× backprop, median [IQR])", "measured", cells,
            "—" if flp is None else f"{flp['ratio']:.2f} [{flp['q1']:.2f}–{flp['q3']:.2f}] (one lifetime step)")
        cells = ["—" if costs.get(k) is None else f"{costs[k]['macs']:.2f}" for k in keys]
        add("cost per training step (× backprop, median [IQR])", "multiply-adds", cells,
            "—" if flp is None else f"{flp['macs']:.2f}")
    needs = {k: requirements(comparison.entries[k]) for k in keys}
    for requirement in REQUIREMENTS:
        add("needs", requirement, ["yes" if needs[k][requirement] else "no" for k in keys],
            "yes" if FLP_REQUIREMENTS[requirement] else "no")
    notes = [f"{len(comparison.seeds)} seeds per rule ({', '.join(map(str, comparison.seeds))}), trained as one "
             "ensemble; n/a: the rule does not apply to this setting."]
    for skey, reasons in comparison.skipped.items():
        for k, reason in reasons.items():
            notes.append(f"{comparison.entries[k].label}, {comparison.settings[skey].label}: {reason}.")
    for k, entry in comparison.entries.items():
        if entry.classification_only and any(k in per for per in comparison.histories.values()):
            notes.append(f"{entry.label}: angle, signs and size are measured against the gradient of its own "
                         "objective, ½δ² on the chosen action's value (chapter 9).")
    if include_flp:
        notes.append("FLP: meta-learned across a family of tasks, not trained from scratch on one; its errors and "
                     "the alignment of its updates with the gradient are measured in chapter 11.")
    if costs is not None:
        timed_on = "; ".join(f"{label_of(comparison, k)}: {c['network']}" for k, c in costs.items() if k != "bp")
        notes.append("Cost: credit_tutorial.bench, one training step of each rule against one of backprop on the "
                     f"same network and batch ({timed_on}).")
    return Table(header, rows, groups, notes)


# ------------------------------------------------------------------------------------------------ the figure
SETTING_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")


def plot_comparison(comparison: Comparison, epoch: float | None = None, costs: Mapping[str, dict] | None = None,
                    *, title: str | None = None):
    """The chapter's figure: (a) error per rule and setting, (b) angle of the top (bars) and first (triangles)
    hidden layer's update to the gradient, (c) sign agreement likewise, (d) cost per step relative to backprop.
    Bars are means over seeds, whiskers ± one sd. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    stats = summary(comparison, epoch)
    settings = list(comparison.settings)
    keys = [k for k in comparison.entries if any(k in stats[s] for s in settings)]  # rules that ran somewhere
    labels = [comparison.entries[k].label for k in keys]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.2))
    width = 0.8 / len(settings)
    x = np.arange(len(keys))

    def bars(ax, field_, layer=None, scale=1.0):
        for j, skey in enumerate(settings):
            means, sds, firsts = [], [], []
            for k in keys:
                s = stats[skey].get(k)
                if s is None:  # the rule does not apply to this setting
                    means.append(np.nan)
                    sds.append(0.0)
                    firsts.append(np.nan)
                    continue
                value = s[field_] if layer is None else s[field_][-1]
                means.append(scale * value.mean)
                sds.append(scale * value.sd if not math.isnan(value.sd) else 0.0)
                firsts.append(np.nan if layer is None else scale * s[field_][0].mean)
            position = x + (j - (len(settings) - 1) / 2) * width
            ax.bar(position, means, width, yerr=sds, color=SETTING_COLORS[j % len(SETTING_COLORS)],
                   label=comparison.settings[skey].label, capsize=2, error_kw={"elinewidth": 0.8})
            if layer is not None:
                ax.plot(position, firsts, "v", color="black", markersize=4,
                        label=f"hidden layer 1 (bars: layer {n_hidden})" if j == 0 else None)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)

    n_hidden = len(next(iter(next(iter(stats.values())).values()))["angle"])
    ax = axes[0, 0]
    bars(ax, "error")
    ax.set(ylabel="error (%)", ylim=(0, 110), title="(a) test error / variance unexplained")
    ax.legend(fontsize=7, frameon=False)
    ax = axes[0, 1]
    bars(ax, "angle", layer=1)
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set(ylabel="angle (°)", ylim=(0, 130),
           title="(b) update angle to the gradient")
    ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=2)
    ax = axes[1, 0]
    bars(ax, "sign", layer=1, scale=100.0)
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set(ylabel="agreeing signs (%)", ylim=(0, 105), title="(c) sign agreement with the gradient")
    ax = axes[1, 1]
    if costs:
        names = [k for k in keys if k in costs] + (["flp"] if "flp" in costs else [])
        medians = [costs[k]["ratio"] for k in names]
        spread = [[m - costs[k]["q1"] for m, k in zip(medians, names)],
                  [costs[k]["q3"] - m for m, k in zip(medians, names)]]
        positions = np.arange(len(names))
        ax.bar(positions, medians, yerr=spread, color="0.6", capsize=2, label="measured (median, IQR)")
        ax.plot(positions, [costs[k]["macs"] for k in names], "_", color="black", markersize=14,
                label="multiply-adds")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(positions, [label_of(comparison, k) for k in names], rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="× backprop", title="(d) cost of one training step")
        ax.legend(fontsize=7, frameon=False)
    else:
        ax.axis("off")
    shown = comparison.epochs(settings[0])[_index(next(iter(comparison.histories[settings[0]].values())), epoch)]
    fig.suptitle(title or f"after {shown:g} epochs ({len(comparison.seeds)} seeds)", fontsize=10)
    fig.tight_layout()
    return fig
