"""Grading the book's assignments (``book/assignments/``): a student's function against the package's reference.

Each ``check_*`` function runs the student's function and the package's reference on several cases (shapes,
seeds, dtypes, ensembles, edge cases) and compares what they return. On success it returns a
:class:`CheckReport` (its text lists the cases that passed); on the first disagreement it raises
:class:`CheckFailed` (an ``AssertionError``, so pytest and autograders count it as a failure) whose message names
the case, what was compared, the expected and the returned values, and a hint where a common mistake is
recognised. A function that still raises ``NotImplementedError`` gives :class:`NotImplementedYet`, "not
implemented yet".

:func:`grade` runs every task of one assignment (named in :data:`ASSIGNMENTS`) and summarises them all.

The references: :func:`credit_tutorial.node_perturbation.estimate`,
:class:`credit_tutorial.feedback_learning.RidgeFeedback`, :func:`credit_tutorial.rules.qagrel.four_factor_update`
and the :class:`~credit_tutorial.rules.qagrel.QAGREL` rule, :func:`credit_tutorial.oja.oja_update`,
:func:`credit_tutorial.flp.lifetime.flp_step` and the :class:`~credit_tutorial.rules.backprop.Backprop` rule.
Every case runs on the CPU in a few milliseconds and uses its own seeded generators.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from . import rng

__all__ = [
    "ASSIGNMENTS", "CheckFailed", "CheckReport", "GradeReport", "NotImplementedYet", "Task",
    "check_accumulate_sums", "check_backprop_by_hand", "check_flp_step", "check_four_factor_update",
    "check_learned_feedback", "check_noisy_estimate", "check_oja_update", "check_perturbation_estimate",
    "check_qagrel_update", "check_solve_feedback", "grade",
]


# ================================================================================================= results
class CheckFailed(AssertionError):
    """A student's function disagreed with the reference. ``check`` and ``case`` name where; the message says how."""

    def __init__(self, message: str, *, check: str | None = None, case: str | None = None):
        super().__init__(message)
        self.check, self.case = check, case


class NotImplementedYet(CheckFailed):
    """The student's function still raises ``NotImplementedError``."""


@dataclass(frozen=True)
class CheckReport:
    """What passed: the check's name and the descriptions of its cases (all passed)."""

    check: str
    cases: tuple[str, ...]
    note: str = ""

    def __str__(self) -> str:
        lines = [f"{self.check}: all {len(self.cases)} cases passed"]
        lines += [f"  ✓ {case}" for case in self.cases]
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)

    __repr__ = __str__


# ================================================================================================= the harness
_TOLERANCES = {  # (rtol, atol relative to the largest expected magnitude) by dtype
    torch.float64: (1e-7, 1e-9),
    torch.float32: (2e-4, 2e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}
_INVERSES = {"linalg_inv", "linalg_inv_ex", "inverse", "linalg_pinv", "pinverse", "cholesky_inverse"}


class _TorchCalls(TorchFunctionMode):
    """Records the names of the torch functions called inside the ``with`` block (to spot an explicit inverse)."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def _preview(t: Tensor, n: int = 5) -> str:
    values = t.flatten()[:n].tolist()
    more = ", …" if t.numel() > n else ""
    return "[" + ", ".join(f"{v:.5g}" for v in values) + more + "]"


def _clone(value):
    """A deep copy of the inputs, so a function that changes its arguments in place cannot change the reference's."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value)
    return value


def _innermost_code(err: BaseException):
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame.f_code


class _Check:
    """One check in progress: calls the student's function case by case and compares its results."""

    def __init__(self, name: str, *functions: Callable):
        for fn in functions:
            if not callable(fn):
                raise TypeError(f"{name}: pass your function itself, e.g. {name}(my_function) -- got a "
                                f"{type(fn).__name__}, not a function")
        self.name = name
        self.functions = functions
        self.passed: list[str] = []
        self.case = ""
        self.hint = ""

    # -------------------------------------------------------------------------------------------- cases
    def start(self, case: str, hint: str = "") -> None:
        """Begin a case; ``hint`` is added to any failure in it."""
        self.case, self.hint = case, hint

    def done(self) -> None:
        self.passed.append(self.case)

    def report(self, note: str = "") -> CheckReport:
        return CheckReport(self.name, tuple(self.passed), note)

    def fail(self, detail: str, hints: Sequence[str] = (), *, case_hint: bool = True) -> None:
        __tracebackhide__ = True
        hints = [h for h in (*hints, self.hint if case_hint else "") if h]
        lines = [f"{self.name} failed on case \"{self.case}\" ({len(self.passed)} earlier case(s) passed):",
                 *[f"  {line}" for line in detail.splitlines()],
                 *[f"  hint: {h}" for h in hints]]
        raise CheckFailed("\n".join(lines), check=self.name, case=self.case)

    # -------------------------------------------------------------------------------------------- calls
    def call(self, fn: Callable, *args, **kwargs):
        """Run the student's ``fn`` on copies of the inputs; turn its exceptions into clear failures."""
        __tracebackhide__ = True
        name = getattr(fn, "__name__", "your function")
        try:
            return fn(*_clone(args), **{k: _clone(v) for k, v in kwargs.items()})
        except NotImplementedError as err:
            code = _innermost_code(err)
            stubs = [f for f in self.functions if getattr(f, "__code__", None) is code]
            if stubs:
                stub = getattr(stubs[0], "__name__", "your function")
                raise NotImplementedYet(
                    f"{self.name}: `{stub}` is not implemented yet (it raised NotImplementedError on case "
                    f"\"{self.case}\"). Replace its `raise NotImplementedError(...)` line with your code, run "
                    "that cell, then run this check again.", check=self.name, case=self.case) from None
            self._raised(name, err)
        except CheckFailed:
            raise
        except Exception as err:  # noqa: BLE001 - any error in the student's code is reported with the case
            self._raised(name, err)

    def _raised(self, name: str, err: Exception) -> None:
        __tracebackhide__ = True
        hints = [h for h in (self.hint,) if h]
        message = "\n".join([f"{self.name} failed on case \"{self.case}\" ({len(self.passed)} earlier case(s) "
                             f"passed):", f"  `{name}` raised {type(err).__name__}: {err}",
                             *[f"  hint: {h}" for h in hints],
                             "  (the traceback above this message shows the line of your code that raised it)"])
        raise CheckFailed(message, check=self.name, case=self.case) from err

    # -------------------------------------------------------------------------------------------- comparisons
    def sequence(self, what: str, got, length: int) -> list:
        """``got`` must be a list or tuple of ``length`` items."""
        __tracebackhide__ = True
        if not isinstance(got, (list, tuple)):
            self.fail(f"{what}: expected a list of {length} tensors, got {type(got).__name__}")
        if len(got) != length:
            self.fail(f"{what}: expected a list of {length} entries, got {len(got)}")
        return list(got)

    def compare(self, what: str, expected: Tensor, got, *, mistakes: Sequence[tuple[str, Tensor]] = (),
                hints: Sequence[str] = (), extra_atol: float = 0.0, tolerance_of: torch.dtype | None = None) -> None:
        """``got`` must be a tensor of ``expected``'s shape, dtype and device, equal within the dtype's tolerance
        (or that of ``tolerance_of``, e.g. float32 inputs summed into float64).

        ``mistakes``: (description, tensor) pairs: what a known wrong formula gives on this case; when ``got``
        matches one of them, its description becomes a hint.
        """
        __tracebackhide__ = True
        expected = expected.detach()
        if not isinstance(got, Tensor):
            kind = type(got).__name__
            extra = " (a NumPy array: compute with torch operations on the input tensors)" if kind == "ndarray" else ""
            self.fail(f"{what}: expected a torch.Tensor of shape {tuple(expected.shape)}, got a {kind}{extra}",
                      hints)
        got = got.detach()
        if got.shape != expected.shape:
            shape_hints = list(hints)
            if expected.dim() >= 2 and got.shape == expected.mT.shape:
                shape_hints.insert(0, "it has the transposed shape: check the order of your matrix product "
                                      "(batch-major activity (batch, n) times W.mT, weights (n_out, n_in))")
            if got.shape == expected.shape[1:]:
                shape_hints.insert(0, f"the leading dimension of size {expected.shape[0]} is missing: an "
                                      "ensemble (or a sweep) carries one copy per entry of the first dimension; "
                                      "reduce over dim=-2 (samples), never dim=0")
            self.fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}", shape_hints)
        if got.dtype != expected.dtype:
            self.fail(f"{what} has dtype {got.dtype}, expected {expected.dtype}",
                      [*hints, "new tensors should take the dtype of the inputs (torch.zeros_like, dtype=x.dtype, "
                               ".to(other.dtype))"])
        if got.device != expected.device:
            self.fail(f"{what} is on device {got.device}, expected {expected.device}", hints)
        if bool(torch.isfinite(expected).all()) and not bool(torch.isfinite(got).all()):
            self.fail(f"{what} contains NaN or inf values; expected finite values like {_preview(expected)}", hints)
        tolerance_dtype = tolerance_of or expected.dtype
        rtol, atol = _TOLERANCES.get(tolerance_dtype, (1e-4, 1e-5))
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        allowed = atol * max(scale, 1e-30) + extra_atol + rtol * expected.abs()
        excess = (got - expected).abs() - allowed
        if not bool((excess > 0).any()):
            return
        worst = int(excess.flatten().argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), expected.shape))
        e, g = float(expected.flatten()[worst]), float(got.flatten()[worst])
        n_bad = int((excess > 0).sum())
        digits = 6 if abs(e - g) > 1e-5 * max(abs(e), abs(g)) else 15  # enough digits to see the difference
        detail = (f"{what} has wrong values: {n_bad} of {expected.numel()} entries differ by more than the "
                  f"tolerance (rtol {rtol:g} for {_label(tolerance_dtype)})\n"
                  f"worst entry, at index {index}: expected {e:.{digits}g}, got {g:.{digits}g}\n"
                  f"expected: {_preview(expected)}\n"
                  f"got:      {_preview(got)}")
        self.fail(detail, [*self._diagnose(expected, got, allowed, mistakes), *hints])

    @staticmethod
    def _diagnose(expected: Tensor, got: Tensor, allowed: Tensor, mistakes) -> list[str]:
        """Hints from the shape of the error: a known wrong formula, a flipped sign, a constant factor."""
        found = [text for text, wrong in mistakes
                 if wrong.shape == got.shape and bool(((got - wrong.to(got.dtype)).abs() <= allowed).all())]
        norm = float(expected.square().sum())
        if not found and norm > 0:
            ratio = float((got * expected).sum()) / norm
            if bool(((got - ratio * expected).abs() <= allowed + 1e-6 * abs(ratio) * expected.abs().max()).all()):
                if abs(ratio + 1) < 1e-3:
                    found.append("your result is the expected one with its sign flipped")
                elif abs(ratio) > 1e-12 and abs(ratio - 1) > 1e-4:
                    found.append(f"your result is the expected one times {ratio:.5g}: a constant factor is wrong "
                                 "or missing")
        return found


# ================================================================================================= helpers
def _generator(seed: int) -> torch.Generator:
    return rng.make_generator(seed)


def _generators(seed: int, k: int | None):
    return _generator(seed) if k is None else [_generator(seed + i) for i in range(k)]


def _randn(shape, seed: int, dtype=torch.float64) -> Tensor:
    return torch.randn(tuple(shape), generator=_generator(seed), dtype=dtype)


def _label(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _mlp(sizes, hidden, output="identity", *, dtype, seed, k=None, bias=True, init="he"):
    from .networks import MLP
    return MLP(sizes, hidden, output, bias=bias, init=init, generator=_generators(seed, k), dtype=dtype)


# ================================================================================================= node perturbation
def _np_case(sizes, hidden, *, dtype, c, batch, seed, k=None, sweep=None, objective="mse", baseline=True):
    """A network, a batch and the reference estimate (with the noise it drew). ``k``: an ensemble of k networks;
    ``sweep``: one network and ``sweep`` noise levels (one generator each)."""
    from .node_perturbation import estimate
    from .objectives import get_objective
    net = _mlp(sizes, hidden, dtype=dtype, seed=seed, k=k)
    x = _randn((batch, sizes[0]), seed + 100, dtype)
    target = torch.randint(0, sizes[-1], (batch,), generator=_generator(seed + 200))
    objective = get_objective(objective)
    noise_gen = _generators(seed + 300, k or sweep)
    with torch.no_grad():
        result = estimate(net, objective, net.trace(x), target, c, noise_gen, baseline=baseline)
    return net, objective, x, target, result


def check_perturbation_estimate(perturbation_estimate: Callable) -> CheckReport:
    """Node perturbation's per-sample estimator ``λ̂_l = (L̃ − L) ξ_l / c²`` (Lansdell et al.; REFERENCE.md §A).

    The student's ``perturbation_estimate(clean_loss, noisy_loss, noise, c)`` gets the per-sample losses
    ``(..., batch)``, the noise ``ξ_l`` of one layer ``(..., batch, n_l)`` and ``c`` (a float, or a tensor of
    shape ``(K,)``: one noise level per ensemble copy); it must return ``λ̂_l``, ``(..., batch, n_l)``. Compared
    with :func:`credit_tutorial.node_perturbation.estimate` on the same noise.
    """
    check = _Check("check_perturbation_estimate", perturbation_estimate)
    per_copy_hint = ("c holds one noise level per copy, shape (K,): reshape it to (K, 1, 1) so that it "
                     "broadcasts against the noise (K, batch, n)")
    cases = [
        ("one network, batch of 8, c = 0.1 (float32)", dict(sizes=(5, 6, 4, 3), hidden="sigmoid",
                                                            dtype=torch.float32, c=0.1, batch=8, seed=0), ""),
        ("tanh network, c = 0.001 (float64)", dict(sizes=(4, 7, 5, 2), hidden="tanh", dtype=torch.float64,
                                                   c=1e-3, batch=6, seed=1), ""),
        ("a batch of one sample (float32)", dict(sizes=(5, 6, 4, 3), hidden="sigmoid", dtype=torch.float32,
                                                 c=0.05, batch=1, seed=2), ""),
        ("ensemble of 3 networks, one c per copy: c of shape (3,) (float64)",
         dict(sizes=(5, 4, 3, 2), hidden="sigmoid", dtype=torch.float64, c=[0.05, 0.1, 0.2], batch=5, seed=3, k=3),
         per_copy_hint),
        ("one network, a sweep of 4 noise levels: c of shape (4,), clean loss (batch,), noisy loss (4, batch)",
         dict(sizes=(5, 6, 2), hidden="sigmoid", dtype=torch.float32, c=[0.01, 0.03, 0.1, 0.3], batch=7, seed=4,
              sweep=4), per_copy_hint),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        *_, result = _np_case(**setup)
        *_, no_baseline = _np_case(**setup, baseline=False)
        c = setup["c"]
        c_arg = torch.tensor(c, dtype=setup["dtype"]) if isinstance(c, list) else c
        for layer, (xi, expected) in enumerate(zip(result.noise, result.lambdas), start=1):
            if xi is None:
                continue
            got = check.call(perturbation_estimate, result.clean_loss, result.noisy_loss, xi, c_arg)
            c_column = torch.tensor(c, dtype=xi.dtype).view(-1, 1, 1) if isinstance(c, list) else c
            mistakes = [("you left out the baseline: subtract the clean loss L from the noisy loss L̃ "
                         "(the mean is the same, the variance far larger)", no_baseline.lambdas[layer - 1]),
                        ("divide by c², not by c", expected * c_column)]
            check.compare(f"λ̂ of hidden layer {layer}", expected, got, mistakes=mistakes)
        check.done()
    return check.report()


def check_noisy_estimate(noisy_estimate: Callable) -> CheckReport:
    """A whole node-perturbation estimate: the clean pass, noise ``ξ_l ~ N(0, c²)`` added after the nonlinearity of
    every hidden layer, the noisy pass, and ``λ̂_l`` for ``l = 1 … L−1``.

    The student's ``noisy_estimate(network, objective, x, target, c, generator)`` must draw the noise with
    ``credit_tutorial.rng.normal`` from ``generator``, layer 1 first, each ``ξ_l`` shaped like ``h_l`` (an
    ensemble: one generator per copy), and return ``[λ̂_1, …, λ̂_{L−1}]``. The reference,
    :func:`credit_tutorial.node_perturbation.estimate`, runs with an identically seeded generator, so both see
    the same noise.
    """
    check = _Check("check_noisy_estimate", noisy_estimate)
    draw_hint = ("draw ξ_l = rng.normal(shape, generator, std=c, dtype=h.dtype, device=h.device) for l = 1 … L−1 in "
                 "that order, shaped like h_l, and nothing else from the generator")
    cases = [
        ("sigmoid 6-8-5-3, squared error to class labels, c = 0.05 (float32)",
         dict(sizes=(6, 8, 5, 3), hidden="sigmoid", dtype=torch.float32, c=0.05, batch=8, seed=10)),
        ("tanh 5-6-6-4-2 with three hidden layers, c = 0.001 (float64)",
         dict(sizes=(5, 6, 6, 4, 2), hidden="tanh", dtype=torch.float64, c=1e-3, batch=6, seed=11)),
        ("softmax cross-entropy objective, c = 0.01 (float64)",
         dict(sizes=(6, 8, 5, 3), hidden="sigmoid", dtype=torch.float64, c=0.01, batch=8, seed=12,
              objective="cross_entropy")),
        ("a batch of one sample, c = 0.1 (float32)",
         dict(sizes=(6, 8, 5, 3), hidden="sigmoid", dtype=torch.float32, c=0.1, batch=1, seed=13)),
        ("ensemble of 3 networks with a list of 3 generators, c = 0.01 (float64)",
         dict(sizes=(6, 8, 5, 3), hidden="sigmoid", dtype=torch.float64, c=0.01, batch=4, seed=14, k=3)),
    ]
    for description, setup in cases:
        ensemble = "k" in setup
        check.start(description, ("an ensemble's activity is (K, batch, n) and copy k draws from generator k: draw "
                                  "ξ_l with shape h_l.shape[1:] when rng.is_ensemble(generator); rng.normal then "
                                  "stacks the K draws") if ensemble else "")
        net, objective, x, target, result = _np_case(**setup)
        *_, no_baseline = _np_case(**setup, baseline=False)
        generator = _generators(setup["seed"] + 300, setup.get("k"))
        got = check.call(noisy_estimate, net, objective, x, target, setup["c"], generator)
        hidden = net.n_layers - 1
        got = check.sequence("the returned list [λ̂_1, …, λ̂_(L−1)] (one entry per hidden layer)", got, hidden)
        # replay the reference's draws to know the state its generator ends in: if the student's generator ends
        # elsewhere, the student drew a different amount of noise (a likelier culprit than the formula)
        replay = _generators(setup["seed"] + 300, setup.get("k"))
        with torch.no_grad():
            for record in net.trace(x).layers[:-1]:
                shape = record.activity.shape[1:] if ensemble else record.activity.shape
                rng.normal(shape, replay, std=1.0, dtype=record.activity.dtype)
        ends = [g.get_state() for g in (replay if ensemble else [replay])]
        states = [g.get_state() for g in (generator if ensemble else [generator])]
        drawn_hint = []
        if any(not torch.equal(a, b) for a, b in zip(states, ends)):
            drawn_hint = ["your function drew a different amount of random numbers from the generator than the "
                          "reference, so its noise differs: " + draw_hint]
        for layer in range(hidden):
            check.compare(f"λ̂ of hidden layer {layer + 1}", result.lambdas[layer], got[layer],
                          mistakes=[("you left out the baseline: λ̂ = (L̃ − L) ξ / c² needs the clean loss too",
                                     no_baseline.lambdas[layer])],
                          hints=drawn_hint)
        check.done()
    return check.report()


# ================================================================================================= ridge feedback
def _ridge_reference(D: Tensor, S: Tensor, *, gamma: float = 0.1, rho: float = 1.0):
    """A :class:`RidgeFeedback` holding the sums ``D`` and ``S`` (their dtype for the sums and for ``B``)."""
    from .feedback_learning import RidgeFeedback
    n_receiving, n_sending = S.shape[-2], S.shape[-1]
    ridge = RidgeFeedback(n_receiving, n_sending, gamma=gamma, rho=rho, lead=tuple(S.shape[:-2]), dtype=S.dtype,
                          sum_dtype=S.dtype)
    with torch.no_grad():
        ridge.D.copy_(D)
        ridge.S.copy_(S)
    return ridge


def _teacher_batches(n_receiving, n_sending, *, batches, batch, lead=(), dtype=torch.float64, seed=0,
                     noise=0.5):
    """Pairs (``λ̂ = δ W + noise``, ``δ``): node-perturbation-like estimates of ``Wᵀ δ`` for a teacher ``W``
    ``(…, n_sending, n_receiving)``; returns ``W`` and the list of pairs."""
    g = _generator(seed)
    W = torch.randn(*lead, n_sending, n_receiving, generator=g, dtype=torch.float64)
    pairs = []
    for _ in range(batches):
        deltas = torch.randn(*lead, batch, n_sending, generator=g, dtype=torch.float64)
        lambdas = deltas @ W + noise * torch.randn(*lead, batch, n_receiving, generator=g, dtype=torch.float64)
        pairs.append((lambdas.to(dtype), deltas.to(dtype)))
    return W, pairs


def check_accumulate_sums(accumulate_sums: Callable) -> CheckReport:
    """The running sums of the ridge regression of ``λ̂`` on ``δ`` (Lansdell et al.'s learned feedback):
    ``D ← ρ D + Σ_b δ_b δ_bᵀ`` and ``S ← ρ S + Σ_b λ̂_b δ_bᵀ``.

    The student's ``accumulate_sums(D, S, lambdas, deltas, rho)`` gets ``D (..., n_{l+1}, n_{l+1})`` and
    ``S (..., n_l, n_{l+1})`` (float64), a batch ``lambdas (..., batch, n_l)``, ``deltas (..., batch, n_{l+1})``
    and ``ρ ∈ (0, 1]``, and returns the new ``(D, S)`` in the dtype of ``D``. Several batches are fed in turn, each
    time with the sums the student's function returned. Reference: :meth:`RidgeFeedback.update`.
    """
    check = _Check("check_accumulate_sums", accumulate_sums)
    cases = [
        ("ρ = 1 (plain sums), 3 batches of 16, n_l = 6, n_(l+1) = 4 (float64 batches)",
         dict(n=(6, 4), rho=1.0, batches=3, batch=16, dtype=torch.float64, seed=20), ""),
        ("ρ = 0.9 (forgetting old batches), 4 batches of 8 (float64 batches)",
         dict(n=(5, 3), rho=0.9, batches=4, batch=8, dtype=torch.float64, seed=21),
         "forgetting shrinks the old sums, then adds the new batch: D ← ρ D + Σ δδᵀ (the new batch is not shrunk)"),
        ("float32 batches added to float64 sums, ρ = 0.95",
         dict(n=(6, 4), rho=0.95, batches=3, batch=16, dtype=torch.float32, seed=22),
         "the sums stay float64: cast lambdas and deltas to D.dtype before the products, as the package does"),
        ("ensemble of 2 copies: D (2, 4, 4), S (2, 6, 4), batches (2, 10, n)",
         dict(n=(6, 4), rho=0.9, batches=3, batch=10, dtype=torch.float64, seed=23, lead=(2,)),
         "sum over the samples with batched products (deltas.mT @ deltas), which keep the leading dimension"),
        ("a batch of one sample, ρ = 0.5",
         dict(n=(3, 5), rho=0.5, batches=2, batch=1, dtype=torch.float64, seed=24), ""),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        n_receiving, n_sending = setup["n"]
        lead = setup.get("lead", ())
        _, pairs = _teacher_batches(n_receiving, n_sending, batches=setup["batches"], batch=setup["batch"],
                                    lead=lead, dtype=setup["dtype"], seed=setup["seed"])
        g = _generator(setup["seed"] + 1)
        start = torch.randn(*lead, n_sending, 2 * n_sending, generator=g, dtype=torch.float64)
        D = start @ start.mT  # a symmetric positive definite starting sum, as after earlier batches
        S = torch.randn(*lead, n_receiving, n_sending, generator=g, dtype=torch.float64)
        reference = _ridge_reference(D, S, rho=setup["rho"])
        mine_D, mine_S = D, S
        for t, (lambdas, deltas) in enumerate(pairs, start=1):
            previous_D, previous_S = reference.D.clone(), reference.S.clone()
            reference.update(lambdas, deltas)
            got = check.call(accumulate_sums, mine_D, mine_S, lambdas, deltas, setup["rho"])
            got = check.sequence(f"after batch {t}: the returned pair (D, S)", got, 2)
            l64, d64 = lambdas.double(), deltas.double()
            check.compare(f"D after batch {t}", reference.D, got[0], tolerance_of=deltas.dtype, mistakes=[
                ("ρ multiplies the old sum only: D ← ρ D + Σ δδᵀ, not ρ (D + Σ δδᵀ)",
                 setup["rho"] * (previous_D + d64.mT @ d64)),
                ("the new batch is added: D ← ρ D + Σ δδᵀ (did you forget the old sum?)", d64.mT @ d64)])
            check.compare(f"S after batch {t}", reference.S, got[1], tolerance_of=deltas.dtype, mistakes=[
                ("ρ multiplies the old sum only: S ← ρ S + Σ λ̂δᵀ, not ρ (S + Σ λ̂δᵀ)",
                 setup["rho"] * (previous_S + l64.mT @ d64))])
            mine_D, mine_S = got
        check.done()
    return check.report()


def check_solve_feedback(solve_feedback: Callable) -> CheckReport:
    """The ridge solution ``B = S (γI + D)⁻¹``, solved without forming an inverse.

    The student's ``solve_feedback(D, S, gamma)`` gets ``D (..., n, n)`` (symmetric, positive semi-definite),
    ``S (..., m, n)`` and ``γ ≥ 0`` and returns ``B (..., m, n)`` in the dtype of ``S``. Reference:
    :meth:`RidgeFeedback.solve` (a Cholesky solve of ``V Bᵀ = Sᵀ``). Calling an explicit inverse
    (``torch.linalg.inv``, ``.inverse()``, ``pinv``, ``cholesky_inverse``) fails the check even when the values
    are right: solving is cheaper and more accurate.
    """
    check = _Check("check_solve_feedback", solve_feedback)
    cases = [
        ("square B: n_l = n_(l+1) = 4, γ = 0.1, D from 40 samples (float64)",
         dict(n=(4, 4), gamma=0.1, samples=40, dtype=torch.float64, seed=30), ""),
        ("B of shape (7, 3), γ = 0.1 (float64)", dict(n=(7, 3), gamma=0.1, samples=40, dtype=torch.float64, seed=31),
         "B = S V⁻¹ multiplies from the right: solve V Bᵀ = Sᵀ (V is symmetric), then transpose back"),
        ("strong ridge, γ = 10 (float64)", dict(n=(5, 4), gamma=10.0, samples=12, dtype=torch.float64, seed=32), ""),
        ("no ridge, γ = 0, full-rank D (plain least squares, float64)",
         dict(n=(5, 3), gamma=0.0, samples=30, dtype=torch.float64, seed=33), ""),
        ("ensemble of 3 copies: D (3, 4, 4), S (3, 6, 4) (float64)",
         dict(n=(6, 4), gamma=0.5, samples=20, dtype=torch.float64, seed=34, lead=(3,)),
         "torch.linalg.solve and torch.cholesky_solve work on batches of matrices: keep the leading dimension"),
        ("float32 sums (as on Apple's MPS, which has no float64)",
         dict(n=(6, 4), gamma=1.0, samples=30, dtype=torch.float32, seed=35), ""),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        n_receiving, n_sending = setup["n"]
        lead = setup.get("lead", ())
        W, pairs = _teacher_batches(n_receiving, n_sending, batches=1, batch=setup["samples"], lead=lead,
                                    seed=setup["seed"])
        lambdas, deltas = pairs[0]
        D, S = (deltas.mT @ deltas).to(setup["dtype"]), (lambdas.mT @ deltas).to(setup["dtype"])
        reference = _ridge_reference(D, S, gamma=setup["gamma"])
        expected = reference.solve().clone()
        with _TorchCalls() as calls:
            got = check.call(solve_feedback, D, S, setup["gamma"])
        V = D + setup["gamma"] * torch.eye(n_sending, dtype=D.dtype)
        check.compare("B", expected, got, mistakes=[
            ("B = S V⁻¹, not V⁻¹ S: solve V Bᵀ = Sᵀ and transpose", torch.linalg.solve(V, S) if
             n_receiving == n_sending else torch.full_like(S, float("nan"))),
            ("add the ridge γI to D before solving: V = γI + D", S @ torch.linalg.pinv(D)),
        ])
        used = sorted(calls.names & _INVERSES)
        if used:
            check.fail(f"B is right, but you formed an explicit inverse ({', '.join(used)}): solve the linear system "
                       "instead (torch.linalg.solve, or torch.linalg.cholesky + torch.cholesky_solve for a "
                       "symmetric positive definite V), which is cheaper and more accurate", case_hint=False)
        check.done()
    return check.report()


def check_learned_feedback(accumulate_sums: Callable, solve_feedback: Callable) -> CheckReport:
    """Both pieces together, batch after batch, on estimates ``λ̂ = Wᵀδ + noise`` from a teacher ``W``: after every
    batch the student's ``B`` must equal :class:`RidgeFeedback`'s, and it learns ``Wᵀ`` (the report says how well).
    """
    check = _Check("check_learned_feedback", accumulate_sums, solve_feedback)
    cases = [
        ("20 batches of 16, ρ = 1, γ = 0.1, n_l = 6, n_(l+1) = 4 (float64)",
         dict(n=(6, 4), rho=1.0, gamma=0.1, batches=20, batch=16, dtype=torch.float64, seed=40)),
        ("20 batches of 8, forgetting ρ = 0.95, γ = 1, ensemble of 2 copies (float64)",
         dict(n=(5, 3), rho=0.95, gamma=1.0, batches=20, batch=8, dtype=torch.float64, seed=41, lead=(2,))),
        ("10 batches of float32 estimates, ρ = 0.99, γ = 0.1",
         dict(n=(6, 4), rho=0.99, gamma=0.1, batches=10, batch=32, dtype=torch.float32, seed=42)),
    ]
    errors = []
    for description, setup in cases:
        check.start(description)
        n_receiving, n_sending = setup["n"]
        lead = setup.get("lead", ())
        W, pairs = _teacher_batches(n_receiving, n_sending, batches=setup["batches"], batch=setup["batch"],
                                    lead=lead, dtype=setup["dtype"], seed=setup["seed"])
        D = torch.zeros(*lead, n_sending, n_sending, dtype=torch.float64)
        S = torch.zeros(*lead, n_receiving, n_sending, dtype=torch.float64)
        reference = _ridge_reference(D, S, gamma=setup["gamma"], rho=setup["rho"])
        for t, (lambdas, deltas) in enumerate(pairs, start=1):
            expected = reference.update(lambdas, deltas).clone()
            sums = check.sequence(f"after batch {t}: accumulate_sums's pair (D, S)",
                                  check.call(accumulate_sums, D, S, lambdas, deltas, setup["rho"]), 2)
            D, S = sums
            B = check.call(solve_feedback, D, S, setup["gamma"])
            check.compare(f"B after batch {t}", expected, B)
        errors.append(float((B - W.mT).norm() / W.norm()))
        check.done()
    note = ("distance of your final B from the teacher's Wᵀ, ‖B − Wᵀ‖/‖W‖: "
            + ", ".join(f"{e:.1%}" for e in errors) + " (the estimates carry noise of standard deviation 0.5)")
    return check.report(note)


# ================================================================================================= Q-AGREL
def check_four_factor_update(four_factor_update: Callable) -> CheckReport:
    """Q-AGREL's change of one layer's synapses (Pozzi et al., eq. 13): ``ΔW[j, i] = α ⟨δ · pre_i · g_j · fb_j⟩``,
    the mean over the batch.

    The student's ``four_factor_update(presynaptic, gate, feedback, rpe, lr)`` gets ``presynaptic``
    ``(..., batch, n_in)``, ``gate`` ``(..., batch, n_out)`` or ``None`` (the linear output layer: ``g = 1``),
    ``feedback`` ``(..., batch, n_out)``, ``rpe`` ``(..., batch)`` and ``lr`` (a float, or a ``(K,)`` tensor: one
    ``α`` per ensemble copy) and returns ``ΔW`` ``(..., n_out, n_in)``. Reference:
    :func:`credit_tutorial.rules.qagrel.four_factor_update`.
    """
    from .rules.qagrel import four_factor_update as reference

    check = _Check("check_four_factor_update", four_factor_update)
    cases = [
        ("hidden layer: batch of 8, 6 → 5 units, α = 0.5 (float32)",
         dict(n_in=6, n_out=5, batch=8, lr=0.5, gate=True, dtype=torch.float32, seed=50), ""),
        ("output layer: gate None (the linear output has no gate), α = 1 (float32)",
         dict(n_in=5, n_out=4, batch=8, lr=1.0, gate=False, dtype=torch.float32, seed=51),
         "gate is None for the output layer: use g = 1 there"),
        ("a batch of one trial, α = 0.1 (float64)",
         dict(n_in=4, n_out=3, batch=1, lr=0.1, gate=True, dtype=torch.float64, seed=52), ""),
        ("ensemble of 3 networks, one α per copy: lr of shape (3,) (float64)",
         dict(n_in=3, n_out=4, batch=6, lr=[0.1, 0.5, 1.0], gate=True, dtype=torch.float64, seed=53, lead=(3,)),
         "lr holds one α per copy, shape (K,): reshape it to (K, 1, 1) so it scales each copy's (n_out, n_in) "
         "update"),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        lead, dtype, batch = setup.get("lead", ()), setup["dtype"], setup["batch"]
        g = _generator(setup["seed"])
        pre = torch.relu(torch.randn(*lead, batch, setup["n_in"], generator=g, dtype=dtype))
        gate = (torch.randn(*lead, batch, setup["n_out"], generator=g, dtype=dtype) > 0).to(dtype) \
            if setup["gate"] else None
        feedback = torch.randn(*lead, batch, setup["n_out"], generator=g, dtype=dtype)
        rpe = 2 * torch.rand(*lead, batch, generator=g, dtype=dtype) - 1
        lr = torch.tensor(setup["lr"], dtype=dtype) if isinstance(setup["lr"], list) else setup["lr"]
        expected = reference(pre, gate, feedback, rpe, lr)
        got = check.call(four_factor_update, pre, gate, feedback, rpe, lr)
        mistakes = [("ΔW is the mean over the batch, not the sum", expected * batch)] if batch > 1 else []
        if gate is not None:
            mistakes.append(("multiply by the gate g_j = ReLU′(a_j): a unit that is off does not learn",
                             reference(pre, None, feedback, rpe, lr)))
        check.compare("ΔW", expected, got, mistakes=mistakes)
        check.done()
    return check.report()


def check_qagrel_update(qagrel_update: Callable) -> CheckReport:
    """One Q-AGREL update of every feedforward and feedback weight for given actions (Pozzi et al., eqs. 6-14).

    The student's ``qagrel_update(weights, feedback, x, labels, actions, lr)`` gets ``weights = [W_1, …, W_L]``
    (a ReLU network without biases and a linear output of Q-values), ``feedback = [W′_2, …, W′_L]`` (``W′_l`` of the
    shape of ``W_lᵀ``), inputs ``x (..., batch, n_0)``, class ``labels (batch,)``, the chosen ``actions
    (..., batch)`` and ``α``, and returns ``(weight_changes, feedback_changes)``: ``[ΔW_1, …, ΔW_L]`` and ``[ΔW′_2,
    …, ΔW′_L]``. Reference: the :class:`~credit_tutorial.rules.qagrel.QAGREL` rule with learned feedback, given
    the same actions (its ``.grad`` is ``−ΔW/α``).
    """
    from .rules.qagrel import QAGREL

    check = _Check("check_qagrel_update", qagrel_update)
    cases = [
        ("two hidden layers 6-8-5-3, learned feedback W′ ≠ Wᵀ, batch of 10, α = 0.5 (float32)",
         dict(sizes=(6, 8, 5, 3), batch=10, lr=0.5, dtype=torch.float32, seed=60, symmetric=False), ""),
        ("symmetric feedback W′ = Wᵀ (then −ΔW/α is the gradient of ½δ²), α = 1 (float64)",
         dict(sizes=(6, 8, 5, 3), batch=10, lr=1.0, dtype=torch.float64, seed=61, symmetric=True), ""),
        ("one hidden layer 7-6-4, α = 0.2 (float64)",
         dict(sizes=(7, 6, 4), batch=12, lr=0.2, dtype=torch.float64, seed=62, symmetric=False), ""),
        ("every action correct (r = 1 on every trial) (float64)",
         dict(sizes=(6, 8, 5, 3), batch=8, lr=0.5, dtype=torch.float64, seed=63, symmetric=False, correct=True), ""),
        ("a batch of one trial (float32)",
         dict(sizes=(6, 8, 5, 3), batch=1, lr=0.5, dtype=torch.float32, seed=64, symmetric=False), ""),
        ("ensemble of 2 networks: weights (2, n_out, n_in), x (batch, n_0) shared, actions (2, batch) (float64)",
         dict(sizes=(6, 8, 5, 3), batch=6, lr=0.5, dtype=torch.float64, seed=65, symmetric=False, k=2),
         "with weights (K, n_out, n_in) every activity is (K, batch, n): gather Q_s along the last dimension and "
         "sum over samples with batched products"),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        sizes, dtype, batch, k, seed = setup["sizes"], setup["dtype"], setup["batch"], setup.get("k"), setup["seed"]
        net = _mlp(sizes, "relu", dtype=dtype, seed=seed, k=k, bias=False, init="uniform:0.5")
        rule = QAGREL(net, feedback="learned", generator=_generators(seed + 1, k), feedback_init="uniform:0.5")
        if setup["symmetric"]:
            with torch.no_grad():
                for B, W in zip(rule.feedback, net.weights[1:]):
                    B.copy_(W.mT)
        g = _generator(seed + 2)
        x = torch.randn(batch, sizes[0], generator=g, dtype=dtype)
        labels = torch.randint(0, sizes[-1], (batch,), generator=g)
        actions = labels.clone() if setup.get("correct") else torch.randint(0, sizes[-1], (batch,), generator=g)
        if k is not None:
            actions = torch.stack([actions, torch.randint(0, sizes[-1], (batch,), generator=g)][:k])
        lr = setup["lr"]

        def changes(feedback_weights):
            """The reference's [ΔW_l] and [ΔW′_l] with the given feedback weights."""
            with torch.no_grad():
                for B, value in zip(rule.feedback, feedback_weights):
                    B.copy_(value)
            rule.zero_grad()
            rule.write_gradients(rule.compute_credit(x, labels, actions=actions))
            return [-lr * W.grad for W in net.weights], [-lr * B.grad for B in rule.feedback]

        chosen_feedback = [B.detach().clone() for B in rule.feedback]
        transported, _ = changes([W.detach().mT for W in net.weights[1:]])  # what weight transport would give
        expected_w, expected_fb = changes(chosen_feedback)
        weights = [W.detach() for W in net.weights]
        feedback = [B.detach() for B in rule.feedback]
        got = check.call(qagrel_update, weights, feedback, x, labels, actions, lr)
        got = check.sequence("the returned pair (weight_changes, feedback_changes)", got, 2)
        dw = check.sequence("weight_changes [ΔW_1, …, ΔW_L]", got[0], len(expected_w))
        dfb = check.sequence("feedback_changes [ΔW′_2, …, ΔW′_L]", got[1], len(expected_fb))
        for index, (expected, mine, wrong) in enumerate(zip(expected_w, dw, transported), start=1):
            mistakes = [] if setup["symmetric"] else [
                ("the feedback must travel through the feedback weights W′ (the argument `feedback`), not Wᵀ: "
                 "that would be weight transport", wrong)]
            check.compare(f"ΔW_{index} (weight_changes[{index - 1}])", expected, mine, mistakes=mistakes)
        for index, (expected, mine) in enumerate(zip(expected_fb, dfb), start=2):
            check.compare(f"ΔW′_{index} (feedback_changes[{index - 2}])", expected, mine,
                          hints=["the feedback synapse W′_l[i, j] changes by as much as W_l[j, i]: ΔW′_l = ΔW_lᵀ"])
        check.done()
    return check.report()


# ================================================================================================= Oja and FLP
def check_oja_update(oja_update: Callable) -> CheckReport:
    """Oja's rule for a whole layer and batch: ``ΔW = P ⊙ (yᵀx − diag(Σ_b y_b²) W)``.

    The student's ``oja_update(weight, pre, post, plasticity)`` gets ``weight (..., n_post, n_pre)``, ``pre = x``
    ``(..., batch, n_pre)``, ``post = y`` ``(..., batch, n_post)`` and the plasticity ``P`` (a number or a tensor
    broadcasting against ``weight``) and returns ``ΔW`` summed over the batch. Reference:
    :func:`credit_tutorial.oja.oja_update`.
    """
    from .oja import hebb_update, oja_update as reference

    check = _Check("check_oja_update", oja_update)
    cases = [
        ("batch of 10, 5 → 4 units, P = 0.01 (float32)",
         dict(n_pre=5, n_post=4, batch=10, P="scalar", dtype=torch.float32, seed=70), ""),
        ("one plasticity per synapse, P of shape (4, 5) (float64)",
         dict(n_pre=5, n_post=4, batch=10, P="synapse", dtype=torch.float64, seed=71), ""),
        ("one plasticity per postsynaptic neuron, P of shape (4, 1) (float64)",
         dict(n_pre=5, n_post=4, batch=10, P="neuron", dtype=torch.float64, seed=72), ""),
        ("ensemble of 2 layers, P of shape (2, 1, 1) (float32)",
         dict(n_pre=5, n_post=4, batch=6, P="copy", dtype=torch.float32, seed=73, lead=(2,)),
         "sum over the samples with dim=-2 and batched products (post.mT @ pre), never dim=0"),
        ("a batch of one sample, a square layer 4 → 4 (float64)",
         dict(n_pre=4, n_post=4, batch=1, P="scalar", dtype=torch.float64, seed=74),
         "the decay term scales row i of W by Σ_b y_bi²: (post² summed over the batch) as a column, times W"),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        lead, dtype = setup.get("lead", ()), setup["dtype"]
        g = _generator(setup["seed"])
        W = 0.5 * torch.randn(*lead, setup["n_post"], setup["n_pre"], generator=g, dtype=dtype)
        pre = torch.randn(*lead, setup["batch"], setup["n_pre"], generator=g, dtype=dtype)
        post = torch.relu(torch.randn(*lead, setup["batch"], setup["n_post"], generator=g, dtype=dtype))
        P = {"scalar": 0.01,
             "synapse": 0.02 * torch.rand(setup["n_post"], setup["n_pre"], generator=g, dtype=dtype),
             "neuron": 0.02 * torch.rand(setup["n_post"], 1, generator=g, dtype=dtype),
             "copy": torch.tensor([0.01, 0.03], dtype=dtype).view(2, 1, 1)}[setup["P"]]
        expected = reference(W, pre, post, P)
        got = check.call(oja_update, W, pre, post, P)
        square = W.shape[-1] == W.shape[-2]
        mistakes = [("Oja's rule has a decay term: subtract diag(Σ_b y_b²) W from the Hebbian yᵀx",
                     hebb_update(W, pre, post, P))]
        if square:
            mistakes.append(("the decay scales the rows of W (postsynaptic neuron i), not its columns",
                             P * (post.mT @ pre - W * post.square().sum(dim=-2).unsqueeze(-2))))
        check.compare("ΔW", expected, got, mistakes=mistakes)
        check.done()
    return check.report()


def _flp_inputs(sizes, *, n_plastic, kind, dtype, batch, seed, lead=(), beta=0.5, P="scalar"):
    g = _generator(seed)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=dtype)

    weights = [randn(*lead, n_out, n_in, scale=n_in ** -0.5) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [randn(*lead, n_out, scale=0.1) for n_out in sizes[1:]]
    n_out = sizes[-1]
    plastic_sizes = sizes[-n_plastic:]
    feedback = [randn(*lead, n, n_out, scale=0.5) for n in plastic_sizes]
    feedback_bias = [randn(*lead, n, scale=0.1) for n in plastic_sizes]
    shapes = [W.shape for W in weights[-n_plastic:]]
    if P == "scalar":
        plasticity = [torch.tensor(0.05, dtype=dtype) for _ in shapes]
    elif P == "synapse":
        plasticity = [0.1 * torch.rand(*shape, generator=g, dtype=dtype) for shape in shapes]
    else:  # one per ensemble copy
        plasticity = [torch.tensor([0.02, 0.08], dtype=dtype).view(2, 1, 1) for _ in shapes]
    if beta == "copy":
        betas = [torch.tensor([0.3, 0.7], dtype=dtype).view(2, 1, 1) for _ in shapes]
    else:
        betas = [beta for _ in shapes]
    x = randn(*lead, batch, sizes[0])
    y = (randn(*lead, batch, n_out) if kind == "regression"
         else torch.randint(0, n_out, (*lead, batch), generator=g))
    return weights, biases, feedback, feedback_bias, plasticity, betas, x, y


def check_flp_step(flp_step: Callable) -> CheckReport:
    """One lifetime step of FLP (Lindsey & Litwin-Kumar): forward pass, error, feedback ``f_l = ReLU(B_l e + c_l)``,
    target ``z_l = β_l f_l + (1 − β_l) h_l`` (a classification output: ``onehot(y)``), Oja's rule on the plastic
    (last) layers with the feedforward presynaptic activity.

    The student's ``flp_step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind)`` takes the
    arguments of :func:`credit_tutorial.flp.lifetime.flp_step` (the reference) and returns the new weights
    ``[W_1, …, W_L]`` (unchanged for the layers that are not plastic). Compared: ``ΔW_l``, your new ``W_l`` minus the
    old one.
    """
    from .flp.lifetime import flp_step as reference

    check = _Check("check_flp_step", flp_step)
    cases = [
        ("regression 3-8-6-2, only the output layer plastic, β = 0.5 (float32)",
         dict(sizes=(3, 8, 6, 2), n_plastic=1, kind="regression", dtype=torch.float32, batch=5, seed=80), ""),
        ("regression, the last two layers plastic (float64)",
         dict(sizes=(3, 8, 6, 2), n_plastic=2, kind="regression", dtype=torch.float64, batch=5, seed=81),
         "for the output layer (regression) the target is z_L = β f_L + (1 − β) ŷ"),
        ("classification 4-7-5-3: the output's target is clamped to onehot(y), two plastic layers (float64)",
         dict(sizes=(4, 7, 5, 3), n_plastic=2, kind="classification", dtype=torch.float64, batch=6, seed=82),
         "classification: the error sent back is e = onehot(y), and the output layer's target is onehot(y) itself"),
        ("β = 0 (no feedback: Oja on the layer's own activity), three plastic layers (float64)",
         dict(sizes=(3, 6, 5, 2), n_plastic=3, kind="regression", dtype=torch.float64, batch=4, seed=83, beta=0.0),
         ""),
        ("β = 1 (the feedback alone sets the target) (float64)",
         dict(sizes=(3, 6, 5, 2), n_plastic=2, kind="regression", dtype=torch.float64, batch=4, seed=84, beta=1.0),
         ""),
        ("ensemble of 2 learners: weights (2, n_out, n_in), P and β of shape (2, 1, 1) (float32)",
         dict(sizes=(3, 8, 6, 2), n_plastic=2, kind="regression", dtype=torch.float32, batch=5, seed=85, lead=(2,),
              beta="copy", P="copy"), "reduce over samples with dim=-2 and use batched products (.mT, @)"),
        ("a batch of one sample, per-synapse plasticity (float64)",
         dict(sizes=(3, 8, 6, 2), n_plastic=2, kind="regression", dtype=torch.float64, batch=1, seed=86,
              P="synapse"), ""),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        kind = setup["kind"]
        inputs = _flp_inputs(setup["sizes"], n_plastic=setup["n_plastic"], kind=kind, dtype=setup["dtype"],
                             batch=setup["batch"], seed=setup["seed"], lead=setup.get("lead", ()),
                             beta=setup.get("beta", 0.5), P=setup.get("P", "scalar"))
        weights = inputs[0]
        expected = reference(*inputs, kind=kind, rule="oja")
        hebb = reference(*inputs, kind=kind, rule="hebb")
        got = check.call(flp_step, *inputs, kind)
        got = check.sequence("the returned new weights [W_1, …, W_L]", got, len(weights))
        first_plastic = len(weights) - setup["n_plastic"]
        for index, (W, new, mine, wrong) in enumerate(zip(weights, expected.weights, got, hebb.weights), start=1):
            plastic = index > first_plastic
            if isinstance(mine, Tensor) and mine.shape == W.shape and mine.dtype == W.dtype:
                mine = mine - W
            rounding = 8 * torch.finfo(W.dtype).eps * float(W.abs().max())  # W + ΔW is rounded to W's precision
            what = f"ΔW_{index} (your new W_{index} minus the old one)" + ("" if plastic else ", a frozen layer")
            check.compare(what, new - W, mine, extra_atol=rounding,
                          mistakes=[("Oja's rule subtracts the decay diag(Σ_b z²) W from the Hebbian term",
                                     wrong - W)] if plastic else [],
                          hints=[] if plastic else ["only the last len(plasticity) layers are plastic: return the "
                                                    "other weights unchanged"])
        check.done()
    return check.report()


# ================================================================================================= backprop by hand
def check_backprop_by_hand(backprop_by_hand: Callable) -> CheckReport:
    """Backprop's batch-mean gradients of ``½‖ŷ − y‖²`` for sigmoid hidden layers and a linear output (chapter 1).

    The student's ``backprop_by_hand(weights, biases, x, y_onehot)`` returns ``[(∂L/∂W_1, ∂L/∂b_1), …,
    (∂L/∂W_L, ∂L/∂b_L)]``. Reference: the :class:`~credit_tutorial.rules.backprop.Backprop` rule (its ``.grad``).
    """
    from .rules.backprop import Backprop

    check = _Check("check_backprop_by_hand", backprop_by_hand)
    cases = [
        ("two hidden layers 6-8-5-3, batch of 10 (float32)", dict(sizes=(6, 8, 5, 3), batch=10,
                                                                   dtype=torch.float32, seed=90), ""),
        ("one hidden layer 4-7-2 (float64)", dict(sizes=(4, 7, 2), batch=9, dtype=torch.float64, seed=91), ""),
        ("three hidden layers 5-6-6-4-3 (float64)", dict(sizes=(5, 6, 6, 4, 3), batch=7, dtype=torch.float64,
                                                          seed=92), ""),
        ("a batch of one sample (float64)", dict(sizes=(6, 8, 5, 3), batch=1, dtype=torch.float64, seed=93), ""),
        ("ensemble of 3 networks: weights (3, n_out, n_in), biases (3, n_out), x (batch, n_0) shared (float64)",
         dict(sizes=(6, 8, 5, 3), batch=5, dtype=torch.float64, seed=94, k=3),
         "ensemble-ready code uses .mT (not .T), the batch size x.shape[-2] (not len(x)) and means over dim=-2 "
         "(not dim 0)"),
    ]
    for description, setup, hint in cases:
        check.start(description, hint)
        sizes, dtype, batch = setup["sizes"], setup["dtype"], setup["batch"]
        net = _mlp(sizes, "sigmoid", dtype=dtype, seed=setup["seed"], k=setup.get("k"))
        with torch.no_grad():  # non-zero biases, so that a gradient ignoring them would show
            for b in net.biases:
                b.copy_(0.1 * torch.randn(b.shape, generator=_generator(setup["seed"] + b.shape[-1]), dtype=dtype))
        g = _generator(setup["seed"] + 1)
        x = torch.randn(batch, sizes[0], generator=g, dtype=dtype)
        y = torch.nn.functional.one_hot(torch.randint(0, sizes[-1], (batch,), generator=g), sizes[-1]).to(dtype)
        net.zero_grad()
        Backprop(net, "mse").step(x, y)
        weights = [W.detach() for W in net.weights]
        biases = [b.detach() for b in net.biases]
        got = check.call(backprop_by_hand, weights, biases, x, y)
        got = check.sequence("the returned list of (∂L/∂W_l, ∂L/∂b_l) pairs", got, len(weights))
        for index, (W, b, pair) in enumerate(zip(net.weights, net.biases, got), start=1):
            pair = check.sequence(f"entry {index - 1} of the list, the pair (∂L/∂W_{index}, ∂L/∂b_{index})", pair, 2)
            check.compare(f"∂L/∂W_{index}", W.grad, pair[0],
                          mistakes=[("average over the batch: ∂L/∂W = δᵀ h / batch", W.grad * batch)]
                          if batch > 1 else [])
            check.compare(f"∂L/∂b_{index}", b.grad, pair[1])
        check.done()
    return check.report()


# ================================================================================================= grading
@dataclass(frozen=True)
class Task:
    """One graded task: its title, the names of the student's functions it needs, and the check."""

    title: str
    functions: tuple[str, ...]
    check: Callable[..., CheckReport]


#: Every assignment in ``book/assignments/``, by name: its tasks in order.
ASSIGNMENTS: dict[str, tuple[Task, ...]] = {
    "backprop_by_hand": (
        Task("Backprop by hand", ("backprop_by_hand",), check_backprop_by_hand),
    ),
    "node_perturbation": (
        Task("The node-perturbation estimator λ̂ = (L̃ − L) ξ / c²", ("perturbation_estimate",),
             check_perturbation_estimate),
        Task("A noisy forward pass", ("noisy_estimate",), check_noisy_estimate),
    ),
    "ridge_feedback": (
        Task("Running sums with forgetting", ("accumulate_sums",), check_accumulate_sums),
        Task("Solving for B without an inverse", ("solve_feedback",), check_solve_feedback),
        Task("Learning feedback, batch after batch", ("accumulate_sums", "solve_feedback"), check_learned_feedback),
    ),
    "qagrel": (
        Task("The four-factor update of one layer", ("four_factor_update",), check_four_factor_update),
        Task("One Q-AGREL update of every weight", ("qagrel_update",), check_qagrel_update),
    ),
    "flp_oja": (
        Task("Oja's rule for a layer", ("oja_update",), check_oja_update),
        Task("One FLP lifetime step", ("flp_step",), check_flp_step),
    ),
}


@dataclass(frozen=True)
class GradeReport:
    """The outcome of every task of an assignment: ``(title, status, detail)`` with status ``"passed"``, ``"not
    implemented yet"`` or ``"failed"``."""

    assignment: str
    results: tuple[tuple[str, str, str], ...]

    @property
    def passed(self) -> int:
        return sum(status == "passed" for _, status, _ in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    def __str__(self) -> str:
        marks = {"passed": "✓", "not implemented yet": "·", "failed": "✗"}
        lines = [f"assignment {self.assignment!r}: {self.passed} of {self.total} tasks passed"]
        for number, (title, status, detail) in enumerate(self.results, start=1):
            lines.append(f"  {marks[status]} task {number}, {title}: {status}")
            if status == "failed":
                lines += [f"      {line}" for line in detail.splitlines()]
        return "\n".join(lines)

    __repr__ = __str__


def grade(assignment: str, functions: Mapping[str, Any]) -> GradeReport:
    """Run every check of ``assignment`` on the student's functions, looked up by name in ``functions`` (in a
    notebook: ``grade("qagrel", globals())``). Returns the report when every task passes; otherwise raises
    :class:`CheckFailed` (:class:`NotImplementedYet` when nothing failed but some tasks are not done) whose message
    is the whole report."""
    __tracebackhide__ = True
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {sorted(ASSIGNMENTS)}, got {assignment!r}")
    results = []
    for task in ASSIGNMENTS[assignment]:
        missing = [name for name in task.functions if not callable(functions.get(name))]
        if missing:
            results.append((task.title, "failed", f"define {', '.join(missing)} (and run its cell) first"))
            continue
        try:
            task.check(*(functions[name] for name in task.functions))
        except NotImplementedYet as err:
            results.append((task.title, "not implemented yet", str(err)))
        except CheckFailed as err:
            results.append((task.title, "failed", str(err)))
        else:
            results.append((task.title, "passed", ""))
    report = GradeReport(assignment, tuple(results))
    if report.passed < report.total:
        statuses = {status for _, status, _ in report.results if status != "passed"}
        error = NotImplementedYet if statuses == {"not implemented yet"} else CheckFailed
        raise error(str(report), check="grade", case=assignment)
    return report
