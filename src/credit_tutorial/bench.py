"""What one training step of each rule costs next to backprop, measured in one interleaved run (issue 8).

``python -m credit_tutorial bench`` times one step of every rule -- ``optimizer.zero_grad``, ``rule.step`` and
``optimizer.step``, what :func:`credit_tutorial.training.fit` does per batch, with the batch already on the
device -- and one step of :class:`~credit_tutorial.rules.Backprop` on the same network, batch and device.

The cases are *interleaved*: every round runs each case once (a block of a few steps, the cases in a shuffled
order), so a burst of load from elsewhere on a shared machine slows a rule and its backprop reference alike; the
first rounds are warm-up and are not kept. A rule's cost relative to backprop is the median over rounds of the
paired ratio (rule's time per step / backprop's time per step *in the same round*); the spread is the
interquartile range of those ratios. Absolute times come with their median and interquartile range too.

On a machine shared with other work, use ``--threads 1 --clock cpu``: the process's CPU time leaves out the time
other processes hold the core, and with one thread it is the work done. (With more threads than free cores, every
small operation waits for a preempted OpenMP thread and the timings say nothing about the rules.)

Rows (``--rules``; backprop on each network is always timed as the reference):

- ``bp``, ``autograd`` (the same step by ``loss.backward()``), ``fa``, ``dfa``, ``np-sgd`` (learned feedback,
  SGD on B), ``np-ridge`` (ridge B solved every step), ``np-ridge-k`` (ridge B solved every k steps),
  ``reinforce`` (plain node perturbation) and ``ensemble`` (K copies of backprop as one batched computation)
  on 784-50-20-10 sigmoid;
- ``qagrel`` against backprop on 784-300-100-10 ReLU;
- ``flp-step`` (one FLP lifetime step, every layer plastic) and ``flp-meta`` (one meta-step: a lifetime of T
  steps, the test loss, its gradient through the whole lifetime, one Adam step) against backprop (softmax
  cross-entropy, FLP's classification loss) on 784-50-20-10 ReLU.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import __version__, rng
from .data import Dataset, load_embedded_mnist
from .device import resolve_device
from .experiment import TrainConfig, build, stream

Step = Callable[[], None]


# ------------------------------------------------------------------------------------------------ what is timed
@dataclass(frozen=True)
class Network:
    """A network the rules are timed on, with the objective its backprop reference descends."""

    sizes: tuple[int, ...]
    activation: str
    objective: str = "mse"

    @property
    def name(self) -> str:
        return f"{'-'.join(map(str, self.sizes))} {self.activation}"


SIGMOID = Network((784, 50, 20, 10), "sigmoid")
RELU_WIDE = Network((784, 300, 100, 10), "relu")            # Q-AGREL's network (Pozzi et al.)
RELU_CE = Network((784, 50, 20, 10), "relu", "cross_entropy")  # FLP needs ReLU; its classification loss is CE

ENSEMBLE_TARGET_COPIES = 20  # issue 8: a sweep of 20 copies should cost at most 5 times one network
LEARNING_RATE = 0.05  # any small stable value: the cost of a step does not depend on it


@dataclass
class Settings:
    """Options of the rules that have them, and of the ensemble and FLP rows."""

    feedback_lr: float = 1e-3      # η_B of learned feedback with SGD on B
    solve_every: int = 10          # k of the ridge row that re-solves B every k steps
    ensemble_sizes: tuple[int, ...] = (20,)
    lifetime_steps: int = 10       # T of the FLP meta-step
    seed: int = 0


@dataclass
class Setup:
    """Everything a case needs to build its step: network, batch size, device, data, settings."""

    network: Network
    batch: int
    device: torch.device
    data: Dataset
    settings: Settings
    copies: int | None = None      # the ensemble row's K

    def pool(self, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` different batches, cycled through by the step (so no two consecutive steps see the same)."""
        b = self.batch
        return [(self.data.x_train[i * b:(i + 1) * b].contiguous(), self.data.y_train[i * b:(i + 1) * b].contiguous())
                for i in range(count)]

    def config(self, rule: str, **options) -> TrainConfig:
        net = self.network
        return TrainConfig(rule=rule, sizes=net.sizes, hidden_activation=net.activation, objective=net.objective,
                           lr=LEARNING_RATE, batch_size=self.batch, seed=self.settings.seed,
                           device=str(self.device), rule_options=options)


def _training_step(rule, optimizer, pool) -> Step:
    """One step as :func:`~credit_tutorial.training.fit` takes it (without the data indexing)."""
    batches = itertools.cycle(pool)

    def step() -> None:
        x, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        rule.step(x, y, validate=False)
        optimizer.step()
    return step


def _rule(name: str, options: Callable[[Settings], dict] = lambda s: {}) -> Callable[[Setup], Step]:
    def make(setup: Setup) -> Step:
        rule, optimizer, _ = build(setup.config(name, **options(setup.settings)), device=setup.device)
        return _training_step(rule, optimizer, setup.pool())
    return make


def _autograd(setup: Setup) -> Step:
    """Backprop by ``loss.backward()`` on the same network, loss and optimizer: what Backprop should cost."""
    rule, optimizer, _ = build(setup.config("bp"), device=setup.device)
    network, objective, batches = rule.network, rule.objective, itertools.cycle(setup.pool())

    def step() -> None:
        x, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        objective(network(x), y).backward()
        optimizer.step()
    return step


def _ensemble(setup: Setup) -> Step:
    """K copies of backprop (seeds 0..K−1) as one batched computation, each copy on its own batch, like a sweep."""
    copies = setup.copies
    rule, optimizer, data_gen = build(setup.config("bp"), seeds=list(range(copies)), device=setup.device)
    n = setup.data.n_train
    pool = []
    for _ in range(2):  # two batches per copy: (K, batch, n_in), drawn as fit draws them
        indices = rng.permutation(n, data_gen, device=setup.device)[..., :setup.batch]
        pool.append((setup.data.x_train[indices], setup.data.y_train[indices]))
    return _training_step(rule, optimizer, pool)


def _flp_learner(setup: Setup):
    from .flp.learners import FLPLearner  # FLP is optional for the bench: a missing piece skips its rows

    net = setup.network
    return FLPLearner(net.sizes, plastic_layers=len(net.sizes) - 1,
                      generator=stream(setup.settings.seed, "init", setup.device), device=setup.device)


def _flp_step(setup: Setup) -> Step:
    """One FLP lifetime step (forward pass, direct feedback, Oja updates of every layer), no autograd."""
    from .flp.lifetime import flp_step

    learner = _flp_learner(setup)
    with torch.no_grad():
        weights = [w.detach() for w in learner.weights]
        biases = [b.detach() for b in learner.biases]
        meta = dict(feedback=[B.detach() for B in learner.feedback],
                    feedback_bias=[c.detach() for c in learner.feedback_bias],
                    plasticity=[P.detach() for P in learner.plasticity()], beta=[b.detach() for b in learner.beta()])
    batches = itertools.cycle(setup.pool())

    def step() -> None:  # every call starts from the same initial weights: a step's cost, not a long lifetime
        x, y = next(batches)
        with torch.no_grad():
            flp_step(weights, biases, x=x, y=y, kind="classification", rule=learner.rule, validate=False, **meta)
    return step


def _flp_meta(setup: Setup) -> Step:
    """One meta-step: a lifetime of T FLP steps, the test loss, backprop through the lifetime, one Adam step."""
    from .flp.episode import Episode
    from .flp.meta import meta_optimizer

    learner = _flp_learner(setup)
    optimizer = meta_optimizer(learner)
    steps, b, data = setup.settings.lifetime_steps, setup.batch, setup.data
    labels = data.y_train[:steps * b].reshape(steps, b)
    episode = Episode(x_train=data.x_train[:steps * b].reshape(steps, b, -1), y_train=labels,
                      x_test=data.x_test[:b], y_test=data.y_test[:b],
                      task_train=torch.zeros(steps, dtype=torch.long, device=setup.device),
                      task_test=data.y_test[:b], kind="classification", n_outputs=setup.network.sizes[-1])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        learner.episode_loss(episode).sum().backward()
        optimizer.step()
    return step


@dataclass(frozen=True)
class Case:
    """A row of the bench: a rule on a network, its issue-8 target for the median ratio to backprop."""

    name: str
    label: str
    network: Network
    make: Callable[[Setup], Step]
    target: float | None = None
    lifetime: bool = False          # one call runs ``lifetime_steps`` lifetime steps (the FLP meta-step)
    optional: bool = False          # a module still being written: a row that cannot run is skipped, not fatal


CASES: dict[str, Case] = {case.name: case for case in [
    Case("bp", "backprop (reference)", SIGMOID, _rule("bp")),
    Case("autograd", "backprop by autograd", SIGMOID, _autograd),
    Case("fa", "feedback alignment", SIGMOID, _rule("fa"), target=1.05),
    Case("dfa", "direct feedback alignment", SIGMOID, _rule("dfa")),
    Case("np-sgd", "learned feedback, SGD on B", SIGMOID,
         _rule("np", lambda s: {"feedback": "sgd", "feedback_lr": s.feedback_lr}), target=1.3),
    Case("np-ridge", "learned feedback, ridge B every step", SIGMOID, _rule("np", lambda s: {"feedback": "ridge"}),
         target=1.5),
    Case("np-ridge-k", "learned feedback, ridge B every k steps", SIGMOID,
         _rule("np", lambda s: {"feedback": "ridge", "solve_every": s.solve_every}), target=1.5),
    Case("reinforce", "node perturbation (REINFORCE)", SIGMOID, _rule("reinforce")),
    Case("ensemble", "ensemble of K backprop copies", SIGMOID, _ensemble, target=5.0),
    Case("qagrel", "Q-AGREL", RELU_WIDE, _rule("qagrel"), target=1.1),
    Case("flp-step", "FLP lifetime step", RELU_CE, _flp_step, optional=True),
    Case("flp-meta", "FLP meta-step (T lifetime steps)", RELU_CE, _flp_meta, lifetime=True, optional=True),
]}
RULE_NAMES = [name for name in CASES if name != "bp"]


# ------------------------------------------------------------------------------------------------ arithmetic
def multiply_adds(rule: str, sizes: Sequence[int], batch: int, settings: Settings | None = None,
                  copies: int | None = None) -> float:
    """Multiply-adds of the matrix products (and solves) in one training step of ``rule``: its arithmetic lower
    bound. Elementwise work (nonlinearities, noise, the optimizer) is left out; it is O(batch · n) per layer.

    With ``P_l = n_{l−1} n_l`` and batch ``b``: the forward pass costs ``b Σ_l P_l``; backprop adds ``b Σ_{l≥2} P_l``
    to carry δ down (nothing below layer 1) and ``b Σ_l P_l`` for the weight gradients. Feedback alignment is the
    same with ``B`` for ``Wᵀ``. Node perturbation's noisy pass starts at the first perturbed layer, so it only
    recomputes layers 2..L (``b Σ_{l≥2} P_l``); its regression of ``λ̂_l`` on ``δ_{l+1}`` costs ``2 b n_l n_{l+1}``
    per hidden layer with SGD, or ``b (n_{l+1}² + n_l n_{l+1})`` for the ridge sums plus ``n_{l+1}³/6 + n_l n_{l+1}²``
    per solve (Cholesky and two triangular solves). Q-AGREL's feedback starts from one output unit: its top layer is
    a gather, not a product. FLP's lifetime step is a forward pass, direct feedback ``B_l e`` to the hidden layers
    and Oja's ``Σ_b z hᵀ`` (its decay ``diag(Σ_b z²) W`` is elementwise); a meta-step runs T of them, scores the
    test batch and backpropagates through it all (estimated as three times the forward work, as for any autograd
    backward pass).
    """
    settings = settings or Settings()
    sizes = list(sizes)
    P = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]  # P_l = n_{l−1} n_l
    hidden = sizes[1:-1]                                                # n_1 … n_{L−1}
    forward = grads = batch * sum(P)
    above_first = batch * sum(P[1:])                                    # layers 2..L
    backprop = forward + above_first + grads
    direct = batch * sum(n * sizes[-1] for n in hidden)                 # B_l e for every hidden layer
    if rule in ("bp", "autograd", "fa"):
        return float(backprop)
    if rule == "dfa":
        return float(forward + direct + grads)
    if rule == "np-sgd":
        return float(backprop + above_first + 2 * batch * sum(P[1:]))
    if rule in ("np-ridge", "np-ridge-k"):
        every = 1 if rule == "np-ridge" else settings.solve_every
        regression = sum(batch * (m * m + n * m) + (m ** 3 / 6 + n * m * m) / every
                         for n, m in zip(sizes[1:-1], sizes[2:]))
        return float(backprop + above_first + regression)
    if rule == "reinforce":  # every layer perturbed, no propagation: λ̂ stands in for the carried error
        return float(forward + above_first + grads)
    if rule == "qagrel":     # W′_L z is column s of W′_L: a gather
        return float(forward + batch * sum(P[1:-1]) + grads)
    if rule in ("flp-step", "flp-meta"):
        step = forward + direct + grads
        if rule == "flp-step":
            return float(step)
        return float(3 * (settings.lifetime_steps * step + batch * sum(P)))  # lifetime, test batch, backward
    if rule == "ensemble":
        return float((copies or settings.ensemble_sizes[0]) * backprop)
    raise ValueError(f"rule must be one of {sorted(CASES)}, got {rule!r}")


def operations_per_call(step: Step) -> int | None:
    """How many tensor operations (ATen kernels, views included) one call of ``step`` dispatches.

    On a CPU each costs a few microseconds whatever its size, so for small layers this count, not the arithmetic,
    sets the cost of a step. Counted with a dispatch mode (``torch.utils._python_dispatch``; ``None`` where a
    torch version lacks it).
    """
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:  # pragma: no cover - every torch >= 2.0 has it
        return None

    class _Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with _Count() as counter:
        step()
    return counter.calls


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class _Timed:
    """One case of this run, built for one network, batch size (and ensemble size), with its block times."""

    case: Case
    batch: int
    reference: "_Timed | None"
    step: Step
    copies: int | None = None
    inner: int = 1
    wall: list[float] = field(default_factory=list)   # seconds per call, one entry per measured round
    cpu: list[float] = field(default_factory=list)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def _time_block(step: Step, inner: int, sync: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds per call of ``step``, over ``inner`` consecutive calls."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(inner):
        step()
    sync()
    return (time.perf_counter() - wall) / inner, (time.process_time() - cpu) / inner


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method), minimum and maximum."""
    values = sorted(values)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": values[0], "max": values[-1]}


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages of the machine (``None`` where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _positive_ints(name: str, values) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
    return values


def run_bench(rules: Sequence[str] | None = None, *, batch_sizes: Sequence[int] = (32, 256), repeats: int = 15,
              warmup: int = 3, device: str | torch.device = "cpu", threads: int | None = None,
              clock: str = "wall", min_block: float = 0.02, settings: Settings | None = None,
              progress: bool = False) -> dict:
    """Time every rule in ``rules`` (default: all) against backprop, interleaved; return a JSON-ready record.

    batch_sizes: every network is timed at each of them. repeats: measured rounds (after ``warmup`` rounds).
    threads: ``torch.set_num_threads`` for the run (restored afterwards). clock: ``"wall"`` (elapsed time) or
    ``"cpu"`` (this process's CPU time, all threads: on a loaded machine it leaves out the time others hold the
    cores) decides the table and the ratios; both are recorded. min_block: seconds each block of calls lasts at
    least (the number of calls per block is set from the warm-up; a block is never less than one call).
    """
    settings = settings or Settings()
    names = list(RULE_NAMES) if rules is None else list(rules)
    unknown = [name for name in names if name not in CASES]
    if unknown or not names:
        raise ValueError(f"rules must be a non-empty list of {sorted(CASES)}, got {list(rules or [])!r}")
    batch_sizes = _positive_ints("batch_sizes", batch_sizes)
    ensemble_sizes = _positive_ints("ensemble_sizes", settings.ensemble_sizes)
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if not (isinstance(min_block, (int, float)) and 0 <= min_block < math.inf):
        raise ValueError(f"min_block must be a finite number of seconds >= 0, got {min_block!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    device = resolve_device(device)
    if clock == "cpu" and device.type != "cpu":
        raise ValueError(f"clock 'cpu' measures host CPU time only; use clock 'wall' on {device}")
    data = load_embedded_mnist().to(device=device, dtype=torch.float32)
    needed = max(batch_sizes) * max(4, settings.lifetime_steps if "flp-meta" in names else 0)
    if needed > data.n_train or max(batch_sizes) > data.n_test:
        raise ValueError(f"batch_sizes × max(4, lifetime_steps) = {needed} exceeds the {data.n_train} training "
                         f"samples (or a batch the {data.n_test} test samples) of the embedded MNIST: lower the "
                         "batch size or lifetime_steps")

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    skipped: list[dict] = []
    try:
        timed = _build_cases(names, batch_sizes, ensemble_sizes, device, data, settings, skipped)
        load_before = load_average()
        _measure(timed, repeats, warmup, min_block, clock, _synchronizer(device), settings.seed, progress)
        load_after = load_average()
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    rows = [_row(t, clock, settings) for t in timed]
    for row, t in zip(rows, timed):  # after the timing: counting slows a call down
        row["operations"] = operations_per_call(t.step)
    return {"device": str(device), "threads": used_threads, "clock": clock, "repeats": repeats, "warmup": warmup,
            "min_block_s": min_block, "batch_sizes": list(batch_sizes), "load_average_before": load_before,
            "load_average_after": load_after, "settings": {"feedback_lr": settings.feedback_lr,
                                                           "solve_every": settings.solve_every,
                                                           "ensemble_sizes": list(ensemble_sizes),
                                                           "lifetime_steps": settings.lifetime_steps,
                                                           "seed": settings.seed},
            "rows": rows, "skipped": skipped,
            "versions": {"credit_tutorial": __version__, "torch": torch.__version__,
                         "python": platform.python_version()},
            "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}}


def _build_cases(names, batch_sizes, ensemble_sizes, device, data, settings, skipped) -> list[_Timed]:
    timed: list[_Timed] = []
    for batch in batch_sizes:
        references: dict[Network, _Timed] = {}
        for name in names:
            case = CASES[name]
            for copies in (ensemble_sizes if name == "ensemble" else (None,)):
                setup = Setup(case.network, batch, device, data, settings, copies)
                unavailable = (ImportError, AttributeError) + ((TypeError, ValueError) if case.optional else ())
                try:
                    step = case.make(setup)
                    step()  # one call now, so a row whose code does not run is skipped here, not mid-run
                except unavailable as error:  # a rule whose module is not ready (yet)
                    reason = f"{case.label} could not be built: {type(error).__name__}: {error}"
                    if not any(s["rule"] == name and s["reason"] == reason for s in skipped):
                        skipped.append({"rule": name, "reason": reason})
                    continue
                if case.network not in references:
                    bp = CASES["bp"]
                    label = bp.label if case.network.objective == "mse" else f"{bp.label}, {case.network.objective}"
                    reference = _Timed(Case("bp", label, case.network, bp.make), batch, None,
                                       bp.make(Setup(case.network, batch, device, data, settings)))
                    references[case.network] = reference
                    timed.append(reference)
                if name != "bp":
                    timed.append(_Timed(case, batch, references[case.network], step, copies))
    return timed


def _measure(timed: list[_Timed], repeats: int, warmup: int, min_block: float, clock: str,
             sync: Callable[[], None], seed: int, progress: bool) -> None:
    order = random.Random(seed)
    rounds = range(warmup + repeats)
    if progress:
        from tqdm.auto import tqdm
        rounds = tqdm(rounds, desc="bench rounds", unit="round", dynamic_ncols=True)
    calibrated = False
    for index in rounds:
        if index >= warmup and not calibrated:  # calls per block, from the last warm-up call (or one call)
            for t in timed:
                estimate = _time_block(t.step, 1, sync)[0 if clock == "wall" else 1]
                t.inner = max(1, min(1000, math.ceil(min_block / max(estimate, 1e-9))))
            calibrated = True
        cases = list(timed)
        order.shuffle(cases)
        for t in cases:
            wall, cpu = _time_block(t.step, t.inner if index >= warmup else 1, sync)
            if index >= warmup:
                t.wall.append(wall)
                t.cpu.append(cpu)


def _row(t: _Timed, clock: str, settings: Settings) -> dict:
    times = t.wall if clock == "wall" else t.cpu
    reference = t.reference if t.reference is not None else t
    ref_times = reference.wall if clock == "wall" else reference.cpu
    ratios = [a / b for a, b in zip(times, ref_times)]
    ratio = summary(ratios)
    steps = settings.lifetime_steps if t.case.lifetime else 1
    target = t.case.target if t.copies in (None, ENSEMBLE_TARGET_COPIES) else None  # the target is for 20 copies
    label = t.case.label.replace(" K ", f" {t.copies} ") if t.copies else t.case.label
    label = label.replace("every k", f"every {settings.solve_every}").replace("(T ", f"(T={steps} ")
    row = {"rule": t.case.name, "label": label, "network": t.case.network.name,
           "objective": t.case.network.objective, "batch": t.batch, "copies": t.copies, "steps_per_call": steps,
           "calls_per_block": t.inner, "ms": {k: 1e3 * v for k, v in summary(t.wall).items()},
           "cpu_ms": {k: 1e3 * v for k, v in summary(t.cpu).items()}, "ratio": ratio,
           "ratio_per_step": ratio["median"] / steps, "target": target,
           "arithmetic_ratio": (multiply_adds(t.case.name, t.case.network.sizes, t.batch, settings, t.copies)
                                / multiply_adds("bp", t.case.network.sizes, t.batch, settings)),
           "meets_target": None if target is None else ratio["median"] <= target}
    if t.copies:
        row["ratio_per_copy"] = ratio["median"] / t.copies
    return row


# ------------------------------------------------------------------------------------------------ reporting
def format_table(result: dict) -> str:
    """The bench record as a plain-text table (median [interquartile range]) with its conditions on top."""
    clock = result["clock"]
    times = "ms" if clock == "wall" else "cpu_ms"
    lines = ["x backprop: median ratio to backprop on the same network and batch, paired by round; MACs: the same "
             "ratio of multiply-adds (the arithmetic lower bound); ops: tensor operations dispatched per call",
             f"device {result['device']}, {result['threads']} thread(s), {clock} clock, {result['repeats']} rounds "
             f"after {result['warmup']} warm-up, load average {result['load_average_before']} -> "
             f"{result['load_average_after']}",
             f"{'rule':<42} {'network':<24} {'batch':>5}  {'ms/call [IQR]':<22} {'x backprop [IQR]':<30} "
             f"{'MACs':>6} {'ops':>5}  target"]
    for row in result["rows"]:
        ms, ratio = row[times], row["ratio"]
        cost = f"{ms['median']:.3g} [{ms['q1']:.3g}-{ms['q3']:.3g}]"
        relative = f"{ratio['median']:.2f} [{ratio['q1']:.2f}-{ratio['q3']:.2f}]"
        if row["steps_per_call"] > 1:
            relative += f" ({row['ratio_per_step']:.2f}/step)"
        target = "" if row["target"] is None else f"<= {row['target']:g} {'ok' if row['meets_target'] else 'MISSED'}"
        ops = "" if row.get("operations") is None else row["operations"]
        lines.append(f"{row['label']:<42} {row['network']:<24} {row['batch']:>5}  {cost:<22} {relative:<30} "
                     f"{row['arithmetic_ratio']:>6.2f} {ops:>5}  {target}")
    for skip in result["skipped"]:
        lines.append(f"skipped {skip['rule']}: {skip['reason']}")
    return "\n".join(lines)


def ratios(result: dict) -> dict[tuple[str, int, int | None], float]:
    """``(rule, batch, copies) → median ratio to backprop`` of every row, for quick lookups."""
    return {(row["rule"], row["batch"], row["copies"]): row["ratio"]["median"] for row in result["rows"]}


def plot_costs(result: dict, batch: int, ax=None):
    """Bars: each rule's measured cost relative to backprop (median, interquartile range as the error bar) at one
    batch size, with its arithmetic lower bound (multiply-adds relative to backprop) as a black tick."""
    import matplotlib.pyplot as plt

    rows = [row for row in result["rows"] if row["batch"] == batch and row["rule"] != "bp"
            and row["steps_per_call"] == 1 and not row["copies"]]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.2), dpi=80)
    positions = range(len(rows))
    medians = [row["ratio"]["median"] for row in rows]
    spread = [[m - row["ratio"]["q1"] for m, row in zip(medians, rows)],
              [row["ratio"]["q3"] - m for m, row in zip(medians, rows)]]
    ax.bar(positions, medians, yerr=spread, color="tab:blue", alpha=0.7, capsize=3, label="measured (median, IQR)")
    ax.scatter(positions, [row["arithmetic_ratio"] for row in rows], marker="_", s=400, color="black", zorder=3,
               label="multiply-adds (lower bound)")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(list(positions), [row["rule"] for row in rows], rotation=30, ha="right")
    ax.set_ylabel("cost per step / backprop's")
    ax.set_title(f"batch {batch}, {result['threads']} thread(s), {result['clock']} clock", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_ensemble_scaling(result: dict, batch: int, ax=None):
    """Cost of one step of an ensemble of K copies relative to one network, against K: measured, and the cost of
    training the K copies one after another (K, also their multiply-add ratio)."""
    import matplotlib.pyplot as plt

    rows = sorted((row for row in result["rows"] if row["rule"] == "ensemble" and row["batch"] == batch),
                  key=lambda row: row["copies"])
    copies = [row["copies"] for row in rows]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2), dpi=80)
    ax.plot(copies, copies, "k--", lw=1, label="one after another (= multiply-adds)")
    ax.errorbar(copies, [row["ratio"]["median"] for row in rows],
                yerr=[[row["ratio"]["median"] - row["ratio"]["q1"] for row in rows],
                      [row["ratio"]["q3"] - row["ratio"]["median"] for row in rows]],
                marker="o", capsize=3, label="one batched ensemble")
    ax.set_xlabel("copies K")
    ax.set_ylabel("cost per step / one network's")
    ax.set_title(f"784-50-20-10, batch {batch}", fontsize=10)
    ax.legend(fontsize=8)
    return ax


# ------------------------------------------------------------------------------------------------ command line
def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _rule_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in CASES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown rule(s) {unknown or text!r}; choose from {', '.join(CASES)}")
    return names


def add_bench(subparsers) -> None:
    from .cli import non_negative_int, positive_float, positive_int

    parser = subparsers.add_parser("bench", help="time one training step of each rule against backprop",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rules", type=_rule_list, default=None,
                        help=f"comma-separated rows (default: all): {', '.join(RULE_NAMES)}")
    parser.add_argument("--batch-sizes", type=_int_list, default=(32, 256), help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=positive_int, default=15, help="measured rounds")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="warm-up rounds (not kept)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads for the run")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="elapsed time, or this process's CPU time (robust to other load on a shared CPU)")
    parser.add_argument("--min-block-ms", type=positive_float, default=20.0, help="least duration of a timed block")
    parser.add_argument("--feedback-lr", type=positive_float, default=1e-3, help="eta_B of the np-sgd row")
    parser.add_argument("--solve-every", type=positive_int, default=10, help="k of the np-ridge-k row")
    parser.add_argument("--ensemble-sizes", type=_int_list, default=(20,), help="K of the ensemble rows")
    parser.add_argument("--lifetime-steps", type=positive_int, default=10, help="T of the FLP meta-step")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON record here (atomically)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=_bench)


def _bench(args, parser) -> int:
    from .checkpoint import save_json

    settings = Settings(feedback_lr=args.feedback_lr, solve_every=args.solve_every,
                        ensemble_sizes=args.ensemble_sizes, lifetime_steps=args.lifetime_steps, seed=args.seed)
    try:
        result = run_bench(args.rules, batch_sizes=args.batch_sizes, repeats=args.repeats, warmup=args.warmup,
                           device=args.device, threads=args.threads, clock=args.clock,
                           min_block=args.min_block_ms / 1e3, settings=settings, progress=not args.no_progress)
    except ValueError as error:
        parser.error(str(error))
    result["command"] = args.command_line
    print(format_table(result))
    if args.out is not None:
        save_json(result, args.out)
        print(f"wrote {args.out}")
    return 0
