"""Learned feedback weights trained by node perturbation (Lansdell, Prakash & Kording), and plain
node-perturbation learning, the reinforcement-learning baseline."""

from __future__ import annotations

from torch import Tensor, nn

from .. import node_perturbation as np_
from ..feedback_learning import RidgeFeedback, SGDFeedback, StepCount
from ..networks import MLP, Trace
from ..objectives import Objective
from ..propagation import propagate_down
from .base import Credit, CreditAssignmentRule, check_batch
from .feedback_alignment import random_feedback

import torch


def _noise_level(rule: CreditAssignmentRule) -> tuple[Tensor, float | None]:
    """The rule's noise level: its buffer ``rule.c`` and the same c as a Python float (``None`` when one per copy).

    Reading a tensor's value is a synchronising operation (a few microseconds a step on a CPU), so the float is read
    once and again only when the buffer is replaced (``.to()``) or changed in place (``load_state_dict``; a tensor's
    ``_version`` counts its in-place changes).
    """
    c = rule.c
    cached = rule.__dict__.get("_c_cache")
    if cached is None or cached[0] is not c or cached[1] != c._version:
        cached = (c, c._version, float(c) if c.dim() == 0 else None)
        rule.__dict__["_c_cache"] = cached  # a plain attribute (nn.Module.__setattr__ costs ~1 µs)
    return c, cached[2]


def _lambdas(rule: CreditAssignmentRule, trace: Trace, target: Tensor, clean_loss: Tensor,
             layers: list[int]) -> list[Tensor | None]:
    """``λ̂_l`` for the 0-based ``layers``: one noisy pass for all of them (``rule.perturb == "together"``) or one
    per layer (``"layerwise"``): the numbers of :func:`node_perturbation.estimate` / ``estimate_layerwise``."""
    c, c_value = _noise_level(rule)
    network, objective, generator = rule.network, rule.objective, rule.generator
    if rule.perturb == "together":
        return np_.perturbation_lambdas(network, objective, trace, target, c, generator, clean_loss, layers=layers,
                                        c_value=c_value)
    lambdas: list[Tensor | None] = [None] * len(trace.layers)
    for index in layers:
        lambdas[index] = np_.perturbation_lambdas(network, objective, trace, target, c, generator, clean_loss,
                                                  layers=[index], c_value=c_value)[index]
    return lambdas


def _check_per_copy_c(network: MLP, c: Tensor) -> None:
    if c.dim() == 1 and network.ensemble_size != c.numel():
        copies = "a single network" if network.ensemble_size is None else \
            f"an ensemble of {network.ensemble_size} copies"
        raise ValueError(f"c lists {c.numel()} noise levels (one per ensemble copy) but the network is {copies}")


def _set_noise(rule: CreditAssignmentRule, c, perturb: str) -> None:
    """The options of a rule that perturbs: the noise level ``c`` becomes the buffer ``rule.c`` (one value, or one
    per ensemble copy), and ``perturb`` is ``"together"`` or ``"layerwise"``."""
    reference = rule.network.weights[0]
    rule.register_buffer("c", np_.noise_std(c, dtype=reference.dtype, device=reference.device))
    _check_per_copy_c(rule.network, rule.c)
    if perturb not in ("together", "layerwise"):
        raise ValueError(f"perturb must be 'together' or 'layerwise', got {perturb!r}")
    rule.perturb = perturb


class LearnedFeedback(StepCount, CreditAssignmentRule):
    """``δ_l = f'(a_l) ⊙ (B_{l+1} δ_{l+1})`` with ``B_{l+1}`` learned by regressing ``λ̂_l`` on ``δ_{l+1}``.

    Each step runs the clean forward pass, carries the output error down through the current ``B`` (the top
    layer's own gradient is exact), runs one noisy pass to get ``λ̂_l = (L̃ − L) ξ_l / c²`` for every hidden
    layer, then updates every ``B_{l+1}`` from the pairs ``(λ̂_l, δ_{l+1})`` — ``δ_{l+1}`` being the error this
    rule itself delivered to layer ``l+1`` (exact for the top layer).

    Options
    -------
    c: noise standard deviation (float, or one per ensemble copy for a noise sweep).
    feedback: ``"ridge"`` (exact, running sums; options ``gamma``, ``rho``, ``solve_every``) or ``"sgd"``
        (option ``feedback_lr``, a float or one per ensemble copy; ``feedback_init`` ``"zeros"`` or ``"random"``).
    perturb: ``"together"`` (one noisy pass, all hidden layers at once) or ``"layerwise"`` (one pass per layer).
    warmup_steps: the first steps learn ``B`` only; ``W`` stays frozen (no gradients written).

    The buffer ``steps`` (steps taken) is written when the state is saved (see :class:`StepCount`).
    """

    short_name = "np"
    requirements = {"weight transport": False, "derivative of the nonlinearity": True, "injected noise": True,
                    "global reward only": False, "meta-learned prior": False}

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator=None, c=1e-3,
                 feedback: str = "ridge", gamma: float = 0.1, rho: float = 1.0, solve_every: int = 1,
                 feedback_lr: float | None = None, feedback_init: str = "zeros", perturb: str = "together",
                 warmup_steps: int = 0):
        super().__init__(network, objective, generator=generator)
        _set_noise(self, c, perturb)
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer ≥ 0, got {warmup_steps!r}")
        if feedback_init not in ("zeros", "random"):
            raise ValueError(f"feedback_init must be 'zeros' or 'random', got {feedback_init!r}")
        self.warmup_steps, self.feedback_kind = warmup_steps, feedback
        reference = network.weights[0]
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=reference.device))
        lead = () if network.ensemble_size is None else (network.ensemble_size,)
        shapes = [(W.shape[-1], W.shape[-2]) for W in network.weights[1:]]  # B_{l+1}: (n_l, n_{l+1})
        options = dict(lead=lead, dtype=reference.dtype, device=reference.device)
        if feedback == "ridge":
            if feedback_init != "zeros":
                raise ValueError("feedback 'ridge' starts from B = 0; feedback_init applies to 'sgd' only")
            learners = [RidgeFeedback(*shape, gamma=gamma, rho=rho, solve_every=solve_every, **options)
                        for shape in shapes]
        elif feedback == "sgd":
            if feedback_lr is None:
                raise ValueError("feedback 'sgd' needs feedback_lr (η_B), e.g. 1e-3")
            initial = random_feedback(network, shapes, None, generator) if feedback_init == "random" else None
            learners = [SGDFeedback(*shape, lr=feedback_lr, initial=None if initial is None else initial[i],
                                    **options) for i, shape in enumerate(shapes)]
        else:
            raise ValueError(f"feedback must be 'ridge' or 'sgd', got {feedback!r}")
        self.learners = nn.ModuleList(learners)

    def feedback_matrices(self) -> list[Tensor]:
        # B_{l+1}: (..., n_l, n_{l+1}), read as feedback_learning's per-step methods read it
        return [learner._buffers["B"] for learner in self.learners]

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return propagate_down(output_delta, self.feedback_matrices(), derivatives)[:-1]

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        # The base class's clean pass, which also returns the target rows (class labels one-hot encoded once) and the
        # clean per-sample loss L, both reused by the noisy pass: λ̂_l = (L̃ − L) ξ_l / c².
        clean = self.clean_pass(x, target)
        credit = clean.credit
        hidden = list(range(len(credit.trace.layers) - 1))
        credit.extras["lambda_hat"] = _lambdas(self, credit.trace, clean.target, clean.per_sample_loss, hidden)
        return credit

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        if validate:
            check_batch(self.network, x, target)
        with torch.no_grad():  # one context for the whole step: the pieces inside need not enter their own
            credit = self.compute_credit(x, target)
            if self._count >= self.warmup_steps:  # warm-up: B learns, W stays frozen
                self.write_gradients(credit)
            self.update_feedback(credit)
        self._advance()
        return credit

    def update_feedback(self, credit: Credit) -> None:
        lambdas = credit.extras["lambda_hat"]
        for index, learner in enumerate(self.learners):  # B_{l+1} regresses λ̂_l on δ_{l+1}
            learner.update(lambdas[index], credit.deltas[index + 1])

    def divergence_hint(self) -> str:
        return f", or the noise level c (now {self.c.tolist()})"

    def extra_repr(self) -> str:
        return f"c={self.c.tolist()}, feedback={self.feedback_kind}, perturb={self.perturb}"


class NodePerturbationLearning(CreditAssignmentRule):
    """REINFORCE with Gaussian noise as the learning rule itself: ``δ_l = f'(a_l) ⊙ λ̂_l`` for the perturbed layers.

    Every layer (the output layer too, by default) learns from the global change of the loss alone; the
    variance of ``λ̂`` grows with the number of perturbed units, which is why this learns slowly in wide networks.
    Unperturbed layers (``layers="hidden"``) get their exact local gradient from the objective (output) or none.
    """

    short_name = "reinforce"
    requirements = {"weight transport": False, "derivative of the nonlinearity": True, "injected noise": True,
                    "global reward only": True, "meta-learned prior": False}

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator=None, c=1e-2,
                 layers: str = "all", perturb: str = "together"):
        super().__init__(network, objective, generator=generator)
        _set_noise(self, c, perturb)
        if layers not in ("all", "hidden"):
            raise ValueError(f"layers must be 'all' or 'hidden', got {layers!r}")
        self.layers = layers

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        clean = self.clean_pass(x, target)  # exact δ_L, target rows, per-sample L, f'(a_l)
        credit = clean.credit
        with torch.no_grad():
            layers = np_.resolve_layers(self.network, self.layers)
            lambdas = _lambdas(self, credit.trace, clean.target, clean.per_sample_loss, layers)
            deltas = [f_prime * lam if lam is not None else torch.zeros_like(f_prime)  # δ_l = f'(a_l) ⊙ λ̂_l
                      for f_prime, lam in zip(clean.derivatives, lambdas)]
            if self.layers == "hidden":
                deltas[-1] = credit.output_delta
        credit.deltas, credit.extras["lambda_hat"] = deltas, lambdas
        return credit

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return []  # this rule's errors come from λ̂ (compute_credit), not from carrying δ_L down

    def divergence_hint(self) -> str:
        return f", or the noise level c (now {self.c.tolist()})"
