"""Learned feedback weights trained by node perturbation (Lansdell, Prakash & Kording), and plain
node-perturbation learning, the reinforcement-learning baseline."""

from __future__ import annotations

from torch import Tensor, nn

from .. import node_perturbation as np_
from ..feedback_learning import RidgeFeedback, SGDFeedback
from ..networks import MLP, Trace
from ..objectives import Objective
from ..propagation import propagate_down
from .base import Credit, CreditAssignmentRule
from .feedback_alignment import random_feedback

import torch


def _check_per_copy_c(network: MLP, c: Tensor) -> None:
    if c.dim() == 1 and network.ensemble_size != c.numel():
        copies = "a single network" if network.ensemble_size is None else \
            f"an ensemble of {network.ensemble_size} copies"
        raise ValueError(f"c lists {c.numel()} noise levels (one per ensemble copy) but the network is {copies}")


class LearnedFeedback(CreditAssignmentRule):
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
    """

    short_name = "np"
    requirements = {"weight transport": False, "derivative of the nonlinearity": True, "injected noise": True,
                    "global reward only": False, "meta-learned prior": False}

    def __init__(self, network: MLP, objective: str | Objective = "mse", *, generator=None, c=1e-3,
                 feedback: str = "ridge", gamma: float = 0.1, rho: float = 1.0, solve_every: int = 1,
                 feedback_lr: float | None = None, feedback_init: str = "zeros", perturb: str = "together",
                 warmup_steps: int = 0):
        super().__init__(network, objective, generator=generator)
        reference = network.weights[0]
        self.register_buffer("c", np_.noise_std(c, dtype=reference.dtype, device=reference.device))
        _check_per_copy_c(network, self.c)
        if perturb not in ("together", "layerwise"):
            raise ValueError(f"perturb must be 'together' or 'layerwise', got {perturb!r}")
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer ≥ 0, got {warmup_steps!r}")
        if feedback_init not in ("zeros", "random"):
            raise ValueError(f"feedback_init must be 'zeros' or 'random', got {feedback_init!r}")
        self.perturb, self.warmup_steps, self.feedback_kind = perturb, warmup_steps, feedback
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
        return [learner.B for learner in self.learners]

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return propagate_down(output_delta, self.feedback_matrices(), derivatives)[:-1]

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        # The base class's clean pass and errors, written out so that class labels are one-hot encoded once and the
        # per-sample clean loss is computed once, for the batch loss and for the node-perturbation baseline.
        with torch.no_grad():
            trace = self.network.trace(x)
            derivatives = self.network.derivatives(trace)
            if hasattr(self.objective, "target_matrix"):
                target = self.objective.target_matrix(trace.output, target)
            output_delta = self.output_delta(trace, target, derivatives)
            deltas = self.hidden_deltas(trace, output_delta, derivatives) + [output_delta]
            clean_loss = self.objective.per_sample(trace.output, target)     # (..., batch)
        estimator = np_.estimate if self.perturb == "together" else np_.estimate_layerwise
        result = estimator(self.network, self.objective, trace, target, self.c, self.generator, clean_loss=clean_loss)
        lambdas = result.lambdas if self.perturb == "together" else result
        return Credit(trace=trace, output_delta=output_delta, deltas=deltas, loss=clean_loss.mean(dim=-1),
                      extras={"lambda_hat": lambdas})

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        if validate:
            from .base import check_batch
            check_batch(self.network, x, target)
        credit = self.compute_credit(x, target)
        if self.warmup_steps == 0 or int(self.steps) >= self.warmup_steps:  # warm-up: B learns, W stays frozen
            self.write_gradients(credit)
        with torch.no_grad():
            self.update_feedback(credit)
        self.steps.add_(1)
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
        reference = network.weights[0]
        self.register_buffer("c", np_.noise_std(c, dtype=reference.dtype, device=reference.device))
        _check_per_copy_c(network, self.c)
        if layers not in ("all", "hidden"):
            raise ValueError(f"layers must be 'all' or 'hidden', got {layers!r}")
        if perturb not in ("together", "layerwise"):
            raise ValueError(f"perturb must be 'together' or 'layerwise', got {perturb!r}")
        self.layers, self.perturb = layers, perturb

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        with torch.no_grad():
            trace = self.network.trace(x)
            derivatives = self.network.derivatives(trace)
            output_delta = self.output_delta(trace, target, derivatives)
            estimator = np_.estimate if self.perturb == "together" else np_.estimate_layerwise
            result = estimator(self.network, self.objective, trace, target, self.c, self.generator,
                               layers=self.layers)
            lambdas = result.lambdas if self.perturb == "together" else result
            deltas = [f_prime * lam if lam is not None else torch.zeros_like(f_prime)
                      for f_prime, lam in zip(derivatives, lambdas)]
            if self.layers == "hidden":
                deltas[-1] = output_delta
            loss = self.objective(trace.output, target)
        return Credit(trace=trace, output_delta=output_delta, deltas=deltas, loss=loss,
                      extras={"lambda_hat": lambdas})

    def divergence_hint(self) -> str:
        return f", or the noise level c (now {self.c.tolist()})"
