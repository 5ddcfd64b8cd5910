"""What meta-learning optimises: the starting point of a lifetime and the knobs of its learning rule.

Three learners share one architecture (ReLU MLP, linear output) and one meta-training procedure:

- :class:`FLPLearner`: feedback and local plasticity. Meta-parameters: initial ``W`` and ``b`` of every layer;
  for each plastic layer the feedback ``B_l``, ``c_l``, the per-synapse plasticity ``P_l`` and ``β_l``.
- :class:`FeatureReuseLearner`: the same with only the readout plastic (no credit assignment to hidden layers).
- :class:`GradientLearner`: the paper's gradient-based baseline, OML-style: inner-loop SGD on the same plastic
  layers with one fixed learning rate ``η`` (not meta-learned), meta-learned initial weights;
- :class:`MetaSGDLearner`: an extra, stronger gradient-based learner that also meta-learns a learning rate per
  synapse (Meta-SGD) -- not the paper's baseline.

Constraints by parametrisation (so Adam works on unconstrained numbers and no projection step is needed):

- ``β_l = sigmoid(ρ_l) ∈ (0, 1)``: smooth, its gradient never vanishes abruptly, and ``ρ = 0`` gives the
  authors' starting value ``β = 0.5``;
- ``P_l = P₀ · softplus(π_l) / ln 2 > 0`` with ``π_l = 0`` at the start, so ``P`` starts at ``P₀`` and is measured
  in units of ``P₀`` (likewise the gradient learner's ``η_l`` in units of ``η₀``). For ``π ≫ 0`` it is linear, so
  an Adam step of size ``lr`` raises ``P`` by at most ``P₀·lr/ln 2``, as with the raw ``P`` the authors trained with
  a meta learning rate of 1e-8; for ``π ≪ 0`` it is ``≈ P₀ e^π/ln 2``, so a useless plasticity can shrink towards 0
  geometrically. We tried ``P = exp(π)`` first: Adam then multiplies ``P`` by up to ``e^lr`` per step, and
  meta-training ran into lifetimes where Oja's decay term ``P Σ_b z²`` exceeds 2 and the weights blow up. The
  price of any positive parametrisation: ``P = 0`` exactly is out of reach (the authors start at 0, where a
  multiplicative parametrisation has no gradient), so lifetimes start from a small ``P₀ > 0``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import torch
from torch import Tensor, nn

from .. import rng
from ..init import Init
from .episode import Episode
from .lifetime import (Observer, _check_step_inputs, error_rate, flp_step, predict, run_lifetime, sgd_step,
                       task_loss)

_HE = Init("he")


def _check_sizes(sizes: Sequence[int], plastic_layers: int) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
        raise ValueError(f"sizes must list at least two positive integer layer widths, got {sizes!r}")
    n_layers = len(sizes) - 1
    if not isinstance(plastic_layers, int) or isinstance(plastic_layers, bool) or not 1 <= plastic_layers <= n_layers:
        raise ValueError(f"plastic_layers must be an integer in [1, {n_layers}] (the network has {n_layers} weight "
                         f"layers), got {plastic_layers!r}")
    return sizes


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _per_layer(name: str, value, n_layers: int) -> list[float]:
    """A positive number, or one per plastic layer (lowest first), as a list of n_layers floats."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{name} must be a number or a list of {n_layers} numbers (one per plastic layer), "
                         f"got {value!r}")
    return [_positive(name, v) for v in values]


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (scale >= 0 and math.isfinite(scale)):
        raise ValueError(f"plasticity_scale must be a finite number >= 0, got {scale!r}")
    return float(scale)


def positive_rate(raw: Tensor, unit: float) -> Tensor:
    """``unit · softplus(raw) / ln 2``: a positive rate equal to ``unit`` at ``raw = 0`` (see the module docstring)."""
    return torch.nn.functional.softplus(raw) * (unit / math.log(2.0))


class MetaLearner(nn.Module):
    """Initial weights ``W_l`` (He normal) and biases ``b_l`` (zero) of a ReLU MLP, and the plumbing every learner
    shares. ``generator``: one ``torch.Generator``, or a list of K for an ensemble of K independent learners
    (copy k equals the single learner built with generator k)."""

    short_name = "meta"

    def __init__(self, sizes: Sequence[int], plastic_layers: int, *, generator: rng.Generators = None,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.sizes = _check_sizes(sizes, plastic_layers)
        self.n_plastic = plastic_layers
        self.ensemble_size = len(generator) if rng.is_ensemble(generator) else None
        if self.ensemble_size == 0:
            raise ValueError("generator: an ensemble needs at least one generator")
        self._lead = () if self.ensemble_size is None else (self.ensemble_size,)
        self._factory = {"dtype": dtype, "device": device}
        self.weights = nn.ParameterList(
            nn.Parameter(_HE.sample((n_out, n_in), generator, dtype=dtype, device=device))
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(*self._lead, n_out, dtype=dtype, device=device))
                                       for n_out in self.sizes[1:])

    # ----------------------------------------------------------------------------------------------- structure
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def plastic_shapes(self) -> list[tuple[int, int]]:
        """``(n_l, n_{l−1})`` of each plastic layer, lowest first."""
        return [(n_out, n_in) for n_in, n_out in zip(self.sizes[-1 - self.n_plastic:-1], self.sizes[-self.n_plastic:])]

    def _full(self, shape, value: float) -> nn.Parameter:
        return nn.Parameter(torch.full((*self._lead, *shape), value, **self._factory))

    def extra_repr(self) -> str:
        lead = "" if self.ensemble_size is None else f", ensemble of {self.ensemble_size}"
        return f"sizes={'-'.join(map(str, self.sizes))}, plastic_layers={self.n_plastic}{lead}"

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Meta-parameters by role, for per-role meta learning rates: ``weights`` (initial W and b) and the
        learner's own groups."""
        return {"weights": list(self.weights) + list(self.biases)}

    # ----------------------------------------------------------------------------------------------- lifetime
    def lifetime(self, episode: Episode, *, observe: Observer | None = None, **options) -> list[Tensor]:
        """Final weights after the training stream of ``episode``; differentiable w.r.t. every meta-parameter."""
        raise NotImplementedError

    def _check_episode(self, episode: Episode) -> None:
        if episode.n_inputs != self.sizes[0]:
            raise ValueError(f"the episode has {episode.n_inputs} input features but the network expects "
                             f"{self.sizes[0]}")
        if episode.n_outputs != self.sizes[-1]:
            raise ValueError(f"the episode needs {episode.n_outputs} outputs but the network has {self.sizes[-1]}")
        lead = episode.lead_shape
        if lead[:len(self._lead)] != self._lead or len(lead) > len(self._lead) + 1:
            expected = "(K,) or (K, M)" if self._lead else "() or (M,)"
            raise ValueError(f"the episode's leading shape {lead} does not fit this learner: expected {expected} "
                             f"with K = {self.ensemble_size} copies and M episodes per copy")

    def _fit(self, tensors: Sequence[Tensor], episode: Episode) -> list[Tensor]:
        """Meta-parameters shaped for ``episode``: with a meta-batch of M episodes per copy, insert a singleton
        dimension after the ensemble one so that they broadcast over the M lifetimes."""
        if len(episode.lead_shape) == len(self._lead):
            return list(tensors)
        return [t.unsqueeze(len(self._lead)) for t in tensors]

    def _per_copy(self, values: Tensor, episode: Episode) -> Tensor:
        """Average a per-lifetime value ``(K, M)`` over the meta-batch, giving one value per copy."""
        return values if len(episode.lead_shape) == len(self._lead) else values.mean(dim=len(self._lead))

    def test_output(self, weights: Sequence[Tensor], episode: Episode) -> Tensor:
        """The network's output on the episode's test inputs, for final (or any) weights."""
        return predict(weights, self._fit(self.biases, episode), episode.x_test)

    def forward(self, episode: Episode, **options) -> Tensor:
        """A learner's forward pass is its meta-objective, :meth:`episode_loss`."""
        return self.episode_loss(episode, **options)

    def episode_loss(self, episode: Episode, **options) -> Tensor:
        """The meta-objective: test loss after the lifetime, one value per ensemble copy (meta-batch averaged)."""
        weights = self.lifetime(episode, **options)
        loss = task_loss(self.test_output(weights, episode), episode.y_test, episode.kind)
        return self._per_copy(loss, episode)

    @torch.no_grad()
    def evaluate(self, episode: Episode, **options) -> dict[str, Tensor]:
        """Test ``loss`` (and ``error`` for classification) after each lifetime, ``episode.lead_shape``, no
        gradients."""
        weights = self.lifetime(episode, **options)
        output = self.test_output(weights, episode)
        result = {"loss": task_loss(output, episode.y_test, episode.kind)}
        if episode.kind == "classification":
            result["error"] = error_rate(output, episode.y_test)
        return result


class FLPLearner(MetaLearner):
    """Feedback and local plasticity: plastic layers learn by Oja's rule on feedback-nudged targets."""

    short_name = "flp"

    def __init__(self, sizes: Sequence[int], plastic_layers: int = 2, *,
                 init_plasticity: float | Sequence[float] = 1e-3, init_beta: float = 0.5, rule: str = "oja",
                 generator: rng.Generators = None, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(sizes, plastic_layers, generator=generator, dtype=dtype, device=device)
        units = _per_layer("init_plasticity", init_plasticity, plastic_layers)
        if not (isinstance(init_beta, (int, float)) and 0 < init_beta < 1):
            raise ValueError(f"init_beta must lie in (0, 1) (β = sigmoid(ρ) never reaches 0 or 1), got {init_beta!r}")
        if rule not in ("oja", "hebb"):
            raise ValueError(f"rule must be 'oja' or 'hebb', got {rule!r}")
        self.rule = rule
        n_out = self.sizes[-1]
        self.feedback = nn.ParameterList(
            nn.Parameter(_HE.sample((n_l, n_out), generator, dtype=dtype, device=device))  # B_l: (n_l, n_out)
            for n_l, _ in self.plastic_shapes)
        self.feedback_bias = nn.ParameterList(self._full((n_l,), 0.0) for n_l, _ in self.plastic_shapes)
        self.init_plasticity = units                                          # P₀ per plastic layer, the unit of P
        self.plasticity_raw = nn.ParameterList(self._full(shape, 0.0) for shape in self.plastic_shapes)
        self.beta_logit = nn.ParameterList(self._full((1, 1), math.log(init_beta / (1 - init_beta)))
                                           for _ in self.plastic_shapes)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {**super().parameter_groups(), "feedback": list(self.feedback) + list(self.feedback_bias),
                "plasticity": list(self.plasticity_raw), "beta": list(self.beta_logit)}

    def plasticity(self, scale: float = 1.0) -> list[Tensor]:
        """``P_l = scale · P₀ softplus(π_l)/ln 2``, one ``(..., n_l, n_{l−1})`` tensor per plastic layer."""
        scale = _check_scale(scale)
        return [scale * positive_rate(p, unit) for p, unit in zip(self.plasticity_raw, self.init_plasticity)]

    def beta(self, value: float | None = None) -> list[Tensor]:
        """``β_l = sigmoid(ρ_l)``, or ``value`` for every plastic layer when given (must lie in [0, 1])."""
        if value is None:
            return [torch.sigmoid(r) for r in self.beta_logit]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"beta must lie in [0, 1], got {value!r}")
        return [torch.full_like(r, float(value)) for r in self.beta_logit]

    def lifetime(self, episode: Episode, *, observe: Observer | None = None, beta: float | None = None,
                 plasticity_scale: float = 1.0) -> list[Tensor]:
        """Run the FLP lifetime; ``beta`` (one value for every layer) and ``plasticity_scale`` (multiplies the
        meta-learned ``P``) override the meta-learned values, for exploring what was learned."""
        self._check_episode(episode)
        fit = partial(self._fit, episode=episode)
        meta = dict(feedback=fit(self.feedback), feedback_bias=fit(self.feedback_bias),
                    plasticity=fit(self.plasticity(plasticity_scale)), beta=fit(self.beta(beta)))
        weights, biases = fit(self.weights), fit(self.biases)
        first_y = episode.y_train[..., 0, :, :] if episode.kind == "regression" else episode.y_train[..., 0, :]
        _check_step_inputs(weights, biases, x=episode.x_train[..., 0, :, :], y=first_y, kind=episode.kind,
                           rule=self.rule, **meta)
        step = partial(_flp_tail_step, meta=meta, kind=episode.kind, rule=self.rule)
        return run_lifetime(step, weights, biases, self.n_plastic, episode, observe=observe)


def _flp_tail_step(weights, biases, h, y, *, meta, kind, rule):
    return flp_step(weights, biases, x=h, y=y, kind=kind, rule=rule, validate=False, **meta)


class FeatureReuseLearner(FLPLearner):
    """The control without credit assignment: only the readout is plastic (Oja on its feedback-nudged output);
    the hidden layers are a fixed, meta-learned feature extractor ("feature reuse", Raghu et al. 2019)."""

    short_name = "feature_reuse"

    def __init__(self, sizes: Sequence[int], plastic_layers: int = 1, **options):
        if plastic_layers != 1:
            raise ValueError(f"feature reuse has exactly one plastic layer (the readout), got plastic_layers="
                             f"{plastic_layers!r}")
        super().__init__(sizes, 1, **options)


class GradientLearner(MetaLearner):
    """The paper's gradient-based baseline, OML-style (Javed & White 2019; Lindsey & Litwin-Kumar 2020 §6.2): inner
    SGD ``W_l ← W_l − η ∂ℓ/∂W_l`` on the plastic layers with ONE FIXED learning rate ``η`` (the authors'
    ``--update_lr``, 0.003 in their regression runs), not meta-learned. Meta-learned: the initial weights and biases
    of every layer -- the fixed representation layers and the plastic layers' starting point, as OML and the
    authors' baseline do. The meta-gradient is exact (second order: it differentiates through every inner gradient,
    "backpropagate through the entire learning procedure", §4.1).

    learning_rate: ``η > 0``, or one per ensemble copy (a list of K values: a learning-rate sweep as one ensemble).
    ``init_learning_rate`` is accepted as an alias (the keyword of earlier versions, when the rate was learned).
    The biases stay fixed within a lifetime, as in FLP (Oja's rule changes weights only): a like-for-like baseline.
    """

    short_name = "gradient"

    def __init__(self, sizes: Sequence[int], plastic_layers: int = 2, *,
                 learning_rate: float | Sequence[float] | None = None, init_learning_rate: float | None = None,
                 generator: rng.Generators = None, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(sizes, plastic_layers, generator=generator, dtype=dtype, device=device)
        if learning_rate is not None and init_learning_rate is not None:
            raise ValueError("give learning_rate or its alias init_learning_rate, not both")
        rate = learning_rate if learning_rate is not None else (3e-3 if init_learning_rate is None
                                                                 else init_learning_rate)
        self._set_learning_rate(rate)

    def _set_learning_rate(self, rate) -> None:
        if isinstance(rate, (list, tuple)):
            if self.ensemble_size is None or len(rate) != self.ensemble_size:
                raise ValueError(f"learning_rate: a list needs one value per ensemble copy "
                                 f"({self.ensemble_size or 'no ensemble'}), got {len(rate)} values")
            values = [_positive("learning_rate", v) for v in rate]
            self.learning_rate = list(values)
            shape = (len(values), 1, 1)                                        # (K, 1, 1): one η per copy
        else:
            self.learning_rate = _positive("learning_rate", rate)
            values, shape = [self.learning_rate], ()
        # a buffer, not a parameter: it follows .to() and is saved, but no optimizer sees it
        self.register_buffer("eta", torch.tensor(values, **self._factory).reshape(shape))

    def learning_rates(self, scale: float = 1.0) -> list[Tensor]:
        """``scale · η`` for each plastic layer (a scalar, or ``(K, 1, 1)`` per copy)."""
        scale = _check_scale(scale)
        return [scale * self.eta for _ in range(self.n_plastic)]

    def lifetime(self, episode: Episode, *, observe: Observer | None = None,
                 plasticity_scale: float = 1.0) -> list[Tensor]:
        """Run the SGD lifetime; ``plasticity_scale`` multiplies the learning rates (0: no learning)."""
        self._check_episode(episode)
        fit = partial(self._fit, episode=episode)
        rates = self.learning_rates(plasticity_scale)
        if self.eta.dim() > 0:                      # per copy: broadcast over a meta-batch as well
            rates = fit(rates)
        step = partial(_sgd_tail_step, learning_rates=rates, kind=episode.kind)
        return run_lifetime(step, fit(self.weights), fit(self.biases), self.n_plastic, episode, observe=observe)


class MetaSGDLearner(GradientLearner):
    """Gradient-based with META-LEARNED PER-SYNAPSE learning rates (Meta-SGD, Li et al. 2017): inner SGD
    ``W_l ← W_l − η_l ⊙ ∂ℓ/∂W_l`` with ``η_l = η₀ softplus(·)/ln 2 > 0`` per synapse, meta-learned with the initial
    weights. A much stronger learner than the paper's baseline (which keeps one fixed rate); kept as an explicitly
    labelled extra, because FLP's meta-learned per-synapse plasticity ``P`` is the same kind of knob."""

    short_name = "meta_sgd"

    def __init__(self, sizes: Sequence[int], plastic_layers: int = 2, *, init_learning_rate: float = 3e-3,
                 generator: rng.Generators = None, dtype: torch.dtype = torch.float32, device=None):
        _positive("init_learning_rate", init_learning_rate)
        super().__init__(sizes, plastic_layers, learning_rate=init_learning_rate, generator=generator, dtype=dtype,
                         device=device)
        self.init_learning_rate = self.learning_rate                            # η₀, the unit of η
        self.learning_rate_raw = nn.ParameterList(self._full(shape, 0.0) for shape in self.plastic_shapes)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {**super().parameter_groups(), "plasticity": list(self.learning_rate_raw)}

    def learning_rates(self, scale: float = 1.0) -> list[Tensor]:
        """``η_l = scale · η₀ softplus(·)/ln 2``, one ``(..., n_l, n_{l−1})`` tensor per plastic layer."""
        scale = _check_scale(scale)
        return [scale * positive_rate(r, self.init_learning_rate) for r in self.learning_rate_raw]

    def lifetime(self, episode: Episode, *, observe: Observer | None = None,
                 plasticity_scale: float = 1.0) -> list[Tensor]:
        self._check_episode(episode)
        fit = partial(self._fit, episode=episode)
        step = partial(_sgd_tail_step, learning_rates=fit(self.learning_rates(plasticity_scale)), kind=episode.kind)
        return run_lifetime(step, fit(self.weights), fit(self.biases), self.n_plastic, episode, observe=observe)


def _sgd_tail_step(weights, biases, h, y, *, learning_rates, kind):
    return sgd_step(weights, biases, learning_rates, h, y, kind=kind)


LEARNERS = {"flp": FLPLearner, "feature_reuse": FeatureReuseLearner, "gradient": GradientLearner,
            "meta_sgd": MetaSGDLearner}
