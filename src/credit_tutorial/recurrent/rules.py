"""Credit assignment through time: truncated BPTT, feedback alignment and learned feedback through time.

Within a window of T steps (truncated BPTT: the state entering the window is a constant) the per-sample loss is
``L = Σ_t ½‖ŷ_t − y_t‖²``. With output errors ``e_t = ŷ_t − y_t`` the error of the hidden pre-activation,
``δ_t = ∂L/∂a_t``, obeys the backward recursion

    δ_t = tanh'(a_t) ⊙ (Vᵀ e_t + Wᵀ δ_{t+1}),      δ_T = 0,

and the gradients are sums over the window of local products (batch mean):
``∂L/∂V = Σ_t e_t h_tᵀ``, ``∂L/∂U = Σ_t δ_t x_tᵀ``, ``∂L/∂W = Σ_t δ_t h_{t−1}ᵀ``, ``∂L/∂b = Σ_t δ_t``.
Every rule here runs that recursion with two matrices in place of the transports ``Vᵀ`` (n_h, n_out) and ``Wᵀ``
(n_h, n_h): BPTT uses the transposes, feedback alignment fixed random ones, and learned feedback regresses
node-perturbation estimates of ``∂L/∂h_t`` on the errors that ``h_t`` affects, ``(e_t, δ_{t+1})``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import rng
from ..feedback_learning import RidgeFeedback, SGDFeedback
from ..node_perturbation import noise_std
from .network import RNN, RecurrentTrace, _glorot, add_product


@dataclass
class RecurrentCredit:
    """What a rule computed for one window.

    output_errors ``e_t = ∂L/∂ŷ_t (..., T, batch, n_out)``; deltas: the rule's ``δ_t (..., T, batch, n_h)``;
    loss: batch-mean window loss, detached, ``()`` or ``(K,)``.
    """

    trace: RecurrentTrace
    output_errors: Tensor
    deltas: Tensor
    loss: Tensor
    extras: dict[str, Any] = field(default_factory=dict)


def step_losses(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-sample, per-step losses ``ℓ_t = ½‖ŷ_t − y_t‖²``, ``(..., T, batch)``."""
    return 0.5 * (outputs - targets).square().sum(dim=-1)


def window_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-sample window loss ``L = Σ_t ℓ_t``, ``(..., batch)``."""
    return step_losses(outputs, targets).sum(dim=-2)


def backward_through_time(output_errors: Tensor, derivatives: Tensor, readout_feedback: Tensor,
                          recurrent_feedback: Tensor) -> Tensor:
    """``δ_t = f'(a_t) ⊙ (B_out e_t + B_rec δ_{t+1})`` from ``t = T−1`` down to 0, with ``δ_T = 0``.

    output_errors ``(..., T, batch, n_out)``, derivatives ``(..., T, batch, n_h)``; readout_feedback ``B_out``
    ``(..., n_h, n_out)`` (in place of ``Vᵀ``), recurrent_feedback ``B_rec`` ``(..., n_h, n_h)`` (in place of ``Wᵀ``).
    Returns ``δ (..., T, batch, n_h)``.
    """
    direct = (output_errors @ readout_feedback.mT.unsqueeze(-3)).unbind(dim=-3)  # B_out e_t: T × (..., batch, n_h)
    slopes = derivatives.unbind(dim=-3)
    B_rec = recurrent_feedback.mT
    deltas = [None] * len(slopes)
    delta = None
    for t in reversed(range(len(slopes))):
        incoming = direct[t] if delta is None else add_product(direct[t], delta, B_rec)  # B_out e_t + B_rec δ_{t+1}
        delta = slopes[t] * incoming  # (..., batch, n_h)
        deltas[t] = delta
    return torch.stack(deltas, dim=-3)


def weight_gradients(trace: RecurrentTrace, output_errors: Tensor, deltas: Tensor) -> dict[str, Tensor]:
    """Batch-mean window gradients implied by errors ``e`` and ``δ``, keyed by the RNN's parameter names."""
    batch = deltas.shape[-2]

    def outer_sum(post: Tensor, pre: Tensor) -> Tensor:  # Σ_t ⟨post_t pre_tᵀ⟩: (..., n_post, n_pre)
        # steps and samples merged into one axis: one matrix product (..., n_post, T·batch) @ (..., T·batch, n_pre)
        post = post.reshape(*post.shape[:-3], -1, post.shape[-1])
        pre = pre.reshape(*pre.shape[:-3], -1, pre.shape[-1])
        return post.mT @ pre / batch

    return {
        "input_weight": outer_sum(deltas, trace.inputs),
        "recurrent_weight": outer_sum(deltas, trace.previous_hidden),
        "hidden_bias": deltas.sum(dim=-3).mean(dim=-2),
        "readout_weight": outer_sum(output_errors, trace.hidden),
        "readout_bias": output_errors.sum(dim=-3).mean(dim=-2),
    }


def check_window(network: RNN, x: Tensor, target: Tensor, h0: Tensor | None) -> None:
    """Clear errors for a bad window: shapes, dtype, NaN/inf."""
    network.check_inputs(x, h0)
    if not isinstance(target, Tensor) or target.shape[-3:] != (*x.shape[-3:-1], network.sizes[2]):
        got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must have shape (T, batch, {network.sizes[2]}) like x's steps and streams "
                         f"{tuple(x.shape[-3:-1])}, got {got}")
    for name, value in (("x", x), ("target", target), ("h0", h0)):
        if value is not None and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or inf values")


class ThroughTimeRule(nn.Module):
    """Base class: subclasses give the two matrices used in place of ``Vᵀ`` and ``Wᵀ`` (:meth:`feedback`)."""

    short_name = "rule"

    def __init__(self, network: RNN, *, generator: rng.Generators = None):
        super().__init__()
        if not isinstance(network, RNN):
            raise TypeError(f"network must be a credit_tutorial.recurrent.RNN, got {type(network).__name__}")
        self.network = network
        self.generator = generator

    def feedback(self) -> tuple[Tensor, Tensor]:
        """``(B_out (..., n_h, n_out), B_rec (..., n_h, n_h))``, standing in for ``(Vᵀ, Wᵀ)``."""
        raise NotImplementedError

    def update_feedback(self, credit: RecurrentCredit) -> None:
        """Learn the feedback from this window (no-op for fixed feedback)."""

    def divergence_hint(self) -> str:
        return ""

    @torch.no_grad()
    def errors(self, trace: RecurrentTrace, target: Tensor) -> tuple[Tensor, Tensor]:
        """``(e, δ)`` for a clean trace: the output errors and the rule's hidden errors through time."""
        output_errors = trace.outputs - target
        deltas = backward_through_time(output_errors, self.network.derivatives(trace), *self.feedback())
        return output_errors, deltas

    def compute_credit(self, x: Tensor, target: Tensor, h0: Tensor | None = None) -> RecurrentCredit:
        """Forward pass and error signals for one window; writes nothing."""
        with torch.no_grad():
            trace = self.network.trace(x, h0)
            output_errors, deltas = self.errors(trace, target)
            loss = window_loss(trace.outputs, target).mean(dim=-1)
        return RecurrentCredit(trace=trace, output_errors=output_errors, deltas=deltas, loss=loss)

    def write_gradients(self, credit: RecurrentCredit) -> None:
        """Add the implied batch-mean gradients to ``.grad`` (autograd's sign and accumulation)."""
        grads = weight_gradients(credit.trace, credit.output_errors, credit.deltas)
        for name, value in grads.items():
            parameter = getattr(self.network, name)
            if parameter.grad is None:
                parameter.grad = value.detach().expand_as(parameter).contiguous()
            else:
                parameter.grad.add_(value.detach())

    def step(self, x: Tensor, target: Tensor, h0: Tensor | None = None, *, validate: bool = True) -> RecurrentCredit:
        """One window: compute the credit, write ``.grad``, learn the feedback. Call ``optimizer.step()`` after."""
        if validate:
            check_window(self.network, x, target, h0)
        credit = self.compute_credit(x, target, h0)
        self.write_gradients(credit)
        with torch.no_grad():
            self.update_feedback(credit)
        return credit


def transposed_weights(network: RNN) -> tuple[Tensor, Tensor]:
    """``(Vᵀ, Wᵀ)``: the weight transport that BPTT's backward pass uses."""
    return network.readout_weight.detach().mT, network.recurrent_weight.detach().mT


class BPTT(ThroughTimeRule):
    """Truncated backpropagation through time: ``B_out = Vᵀ``, ``B_rec = Wᵀ`` (weight transport)."""

    short_name = "bptt"

    def feedback(self) -> tuple[Tensor, Tensor]:
        return transposed_weights(self.network)


class ReadoutOnly(ThroughTimeRule):
    """No credit through time: ``B_out = B_rec = 0``, so only the readout ``V, c`` learns (a random "reservoir").

    The control every rule must beat: what a fixed random recurrent network offers a trained readout.
    """

    short_name = "readout"

    def feedback(self) -> tuple[Tensor, Tensor]:
        V, W = self.network.readout_weight.detach(), self.network.recurrent_weight.detach()
        return torch.zeros_like(V.mT), torch.zeros_like(W)


def _random_feedback(network: RNN, generator: rng.Generators, std: float | None = None) -> tuple[Tensor, Tensor]:
    """Random ``(B_out, B_rec)`` (drawn in the order ``B_rec``, ``B_out``) with the initial variance of ``(V, W)``,
    or with ``N(0, std²)`` entries when ``std`` is given."""
    n_in, n_h, n_out = network.sizes
    options = dict(dtype=network.recurrent_weight.dtype, device=network.recurrent_weight.device)

    def draw(shape):
        return _glorot(shape, generator, **options) if std is None else \
            rng.normal(shape, generator, std=std, **options)

    recurrent = draw((n_h, n_h))
    readout = draw((n_h, n_out))
    return readout, recurrent


class FeedbackAlignmentThroughTime(ThroughTimeRule):
    """Fixed random ``B_out`` and ``B_rec`` (same variance as ``V`` and ``W`` at initialisation).

    transport_readout: use the exact ``Vᵀ`` for the readout (as the authors' script did) and a random matrix for
    the recurrence only.
    feedback_std: draw the entries from ``N(0, feedback_std²)`` instead (the authors' script: 1).
    """

    short_name = "fa"

    def __init__(self, network: RNN, *, generator: rng.Generators = None, transport_readout: bool = False,
                 feedback_std: float | None = None):
        super().__init__(network, generator=generator)
        if feedback_std is not None and not (isinstance(feedback_std, (int, float)) and 0 < feedback_std < math.inf):
            raise ValueError(f"feedback_std must be a positive number or None, got {feedback_std!r}")
        readout, recurrent = _random_feedback(network, generator, feedback_std)
        self.transport_readout = bool(transport_readout)
        self.register_buffer("readout_feedback", readout)
        self.register_buffer("recurrent_feedback", recurrent)

    def feedback(self) -> tuple[Tensor, Tensor]:
        readout = self.network.readout_weight.detach().mT if self.transport_readout else self.readout_feedback
        return readout, self.recurrent_feedback


class FixedFeedbackSweep(ThroughTimeRule):
    """BPTT, feedback alignment and the readout-only control as *one* ensemble: copy k uses ``kinds[k]``.

    The three rules differ only in the matrices of the backward pass (the transposes, fixed random matrices, or
    zeros), so an ensemble can give each copy its own: ``kinds = ["bptt", "fa", "readout", ...]``, one per copy.
    Copy k then equals the single rule of that kind run with generator k (tested), at a fraction of the cost of
    separate runs.
    """

    short_name = "sweep"
    KINDS = ("bptt", "fa", "readout")

    def __init__(self, network: RNN, *, generator: rng.Generators = None, kinds=()):
        super().__init__(network, generator=generator)
        kinds = list(kinds)
        if network.ensemble_size is None or len(kinds) != network.ensemble_size or \
                any(kind not in self.KINDS for kind in kinds):
            raise ValueError(f"kinds must list one of {self.KINDS} per ensemble copy "
                             f"({network.ensemble_size or 'no'} copies), got {kinds!r}")
        self.kinds = kinds
        readout, recurrent = _random_feedback(network, generator)  # drawn for every copy, as FA would
        self.register_buffer("readout_feedback", readout)
        self.register_buffer("recurrent_feedback", recurrent)
        device = network.recurrent_weight.device
        self.register_buffer("transport", torch.tensor([k == "bptt" for k in kinds], device=device).view(-1, 1, 1))
        self.register_buffer("silent", torch.tensor([k == "readout" for k in kinds], device=device).view(-1, 1, 1))

    def feedback(self) -> tuple[Tensor, Tensor]:
        out = []
        for exact, random in zip(transposed_weights(self.network), (self.readout_feedback, self.recurrent_feedback)):
            out.append(torch.where(self.transport, exact, torch.where(self.silent, 0.0, random)))
        return out[0], out[1]


@dataclass
class PerturbationThroughTime:
    """A node-perturbation estimate for one window.

    lambdas: ``λ̂_t = (L̃ − L) ξ_t / σ²`` with ``σ²`` the per-unit variance of the added noise, ``(..., T, batch,
    n_h)``; noise ``ξ`` likewise; clean and noisy window losses per sample ``(..., batch)``.
    """

    lambdas: Tensor
    noise: Tensor
    clean_loss: Tensor
    noisy_loss: Tensor
    noisy_trace: RecurrentTrace


def _choice_per_copy(value, allowed: tuple[str, str], name: str):
    """A choice between two options, or one per ensemble copy: returns the string, or a bool list (True = the
    second option) for a list of K choices."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or any(v not in allowed for v in values):
        raise ValueError(f"{name} must be {allowed[0]!r} or {allowed[1]!r} (or one of them per ensemble copy), "
                         f"got {value!r}")
    return [v == allowed[1] for v in values] if isinstance(value, (list, tuple)) else value


def _copy_mask(flags: list[bool], like: Tensor) -> Tensor:
    """``(K,)`` flags → ``(K, 1, 1, 1)`` bool tensor that broadcasts against ``(K, T, batch, n)``."""
    if like.dim() < 4 or like.shape[0] != len(flags):
        raise ValueError(f"{len(flags)} per-copy choices need an ensemble of {len(flags)} copies, got activity of "
                         f"shape {tuple(like.shape)}")
    return torch.tensor(flags, device=like.device).view(-1, 1, 1, 1)


def check_fraction(fraction) -> float:
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise ValueError(f"perturbed_fraction must lie in (0, 1], got {fraction!r}")
    return float(fraction)


@torch.no_grad()
def perturb_through_time(network: RNN, trace: RecurrentTrace, target: Tensor, c, generator: rng.Generators, *,
                         perturbed_fraction: float = 1.0, noise_scale: str = "actual",
                         causal: bool = True) -> PerturbationThroughTime:
    """Node perturbation of the hidden state at every step of a window, in one noisy pass.

    Each unit at each step receives ``ξ ~ N(0, c²)`` with probability ``perturbed_fraction`` (p), else nothing,
    so the noise actually added has per-unit variance ``σ² = p c²`` and covariance ``σ² I``. To first order
    ``L̃ − L = Σ_s ∂L/∂h_s · ξ_s``, hence ``E[(L̃ − L) ξ_t] / σ² = ∂L/∂h_t`` (the total derivative through the
    readout and every later step of the window): ``λ̂_t = (L̃ − L) ξ_t / σ²``.

    causal: the noise added at step t cannot change the losses of earlier steps, so those terms of ``L̃ − L``
        carry no information about ``∂L/∂h_t``, only variance; with ``causal=True`` (default) they are left out,
        ``λ̂_t = Σ_{s≥t} (ℓ̃_s − ℓ_s) ξ_t / σ²`` (same mean, exactly; lower variance).
    noise_scale: ``"actual"`` divides by ``σ² = p c²`` (unbiased); ``"nominal"`` divides by ``c²``, as the
        authors' script did although it perturbed only 10 % of the units (then ``E[λ̂] = p ∂L/∂h``); or a list
        with one choice per ensemble copy.
    c: noise standard deviation: a float, one per ensemble copy, or a tensor from
        :func:`credit_tutorial.node_perturbation.noise_std`.
    """
    fraction = check_fraction(perturbed_fraction)
    nominal = _choice_per_copy(noise_scale, ("actual", "nominal"), "noise_scale")
    if not isinstance(c, Tensor):
        c = noise_std(c, dtype=trace.hidden.dtype, device=trace.hidden.device)
    std = c.view(-1, 1, 1, 1) if c.dim() == 1 else c  # one level per ensemble copy: (K, 1, 1, 1)
    shape = trace.hidden.shape[1:] if rng.is_ensemble(generator) else trace.hidden.shape
    options = dict(dtype=trace.hidden.dtype, device=trace.hidden.device)
    noise = rng.normal(shape, generator, std=std, **options)
    if fraction < 1.0:
        noise = noise * (rng.uniform(shape, generator, **options) < fraction).to(noise.dtype)
    noisy = network.trace(trace.inputs, trace.initial_state, noise)
    clean_steps, noisy_steps = step_losses(trace.outputs, target), step_losses(noisy.outputs, target)  # (..., T, batch)
    change = noisy_steps - clean_steps
    if causal:  # Σ_{s≥t} (ℓ̃_s − ℓ_s): a reversed cumulative sum over the steps
        change = change.flip(-2).cumsum(dim=-2).flip(-2)
    else:
        change = change.sum(dim=-2, keepdim=True).expand_as(change)
    if isinstance(nominal, list):  # one choice per copy: p c² or c²
        variance = std.square() * torch.where(_copy_mask(nominal, noise), 1.0, fraction).to(noise.dtype)
    else:
        variance = std.square() * (1.0 if nominal == "nominal" else fraction)
    weight = change.unsqueeze(-1) / variance  # (..., T, batch, 1)
    return PerturbationThroughTime(lambdas=weight * noise, noise=noise, clean_loss=clean_steps.sum(dim=-2),
                                   noisy_loss=noisy_steps.sum(dim=-2), noisy_trace=noisy)


def regressors(output_errors: Tensor, deltas: Tensor, pairing="next") -> Tensor:
    """What ``λ̂_t`` is regressed on: ``z_t = (e_t, δ_{t+1})`` (``δ_T = 0``), ``(..., T, batch, n_out + n_h)``.

    ``h_t`` reaches the window loss through ``ŷ_t = V h_t + c`` and ``a_{t+1} = W h_t + …``, so
    ``∂L/∂h_t = Vᵀ e_t + Wᵀ δ_{t+1} = [Vᵀ Wᵀ] z_t``: the regression of ``λ̂_t`` on ``z_t`` targets ``[Vᵀ Wᵀ]``.
    ``pairing="same"`` pairs ``λ̂_t`` with ``(e_t, δ_t)`` instead, the authors' script's mistake; a list gives one
    choice per ensemble copy.
    """
    same = _choice_per_copy(pairing, ("next", "same"), "pairing (λ̂_t with δ_(t+1), or with δ_t)")
    following = torch.cat([deltas[..., 1:, :, :], torch.zeros_like(deltas[..., :1, :, :])], dim=-3)
    if isinstance(same, list):
        later = torch.where(_copy_mask(same, deltas), deltas, following)
    else:
        later = deltas if same == "same" else following
    return torch.cat([output_errors.expand(*later.shape[:-1], output_errors.shape[-1]), later], dim=-1)


class LearnedFeedbackThroughTime(ThroughTimeRule):
    """Feedback through time learned by node perturbation (Lansdell et al., Fig. 4), done as the maths says.

    Each window: the clean pass, the errors ``δ_t`` through the current ``[B_out B_rec]`` (which write the
    gradients), one noisy pass giving ``λ̂_t`` (:func:`perturb_through_time`), and a regression step of ``λ̂_t`` on
    ``z_t = (e_t, δ_{t+1})`` (:func:`regressors`) that moves ``[B_out B_rec]`` towards ``[Vᵀ Wᵀ]``. All
    ``T × batch`` pairs of the window enter one update of :class:`~credit_tutorial.feedback_learning.SGDFeedback`
    (``B ← B − η_B Σ (B z − λ̂) zᵀ``) or :class:`~credit_tutorial.feedback_learning.RidgeFeedback`.

    Options
    -------
    c: noise standard deviation (float, or one per ensemble copy). perturbed_fraction: the probability p that a
    unit receives noise at a step (the authors used c = 0.5, p = 0.1). feedback: ``"sgd"`` (``feedback_lr``;
    ``feedback_init`` ``"random"`` — the FA matrices — or ``"zeros"``) or ``"ridge"`` (``gamma``, ``rho``,
    ``solve_every``; starts at 0). warmup_steps: the first windows learn ``B`` only (no gradients are written).
    transport_readout: use the exact ``Vᵀ`` for the readout and learn ``B_rec`` alone (regressing
    ``λ̂_t − Vᵀ e_t`` on ``δ_{t+1}``). pairing, noise_scale: ``"same"`` and ``"nominal"`` reproduce the two
    defects of the authors' script, for comparison only (a list gives one choice per ensemble copy).
    """

    short_name = "np"

    def __init__(self, network: RNN, *, generator: rng.Generators = None, c=0.5, perturbed_fraction: float = 1.0,
                 feedback: str = "sgd", feedback_lr: float | None = None, feedback_init: str = "random",
                 gamma: float = 0.1, rho: float = 1.0, solve_every: int = 1, warmup_steps: int = 0,
                 transport_readout: bool = False, causal: bool = True, pairing="next", noise_scale="actual"):
        super().__init__(network, generator=generator)
        reference = network.recurrent_weight
        self.register_buffer("c", noise_std(c, dtype=reference.dtype, device=reference.device))
        self.perturbed_fraction = check_fraction(perturbed_fraction)
        for value, allowed, name in ((pairing, ("next", "same"), "pairing"),
                                     (noise_scale, ("actual", "nominal"), "noise_scale")):
            choice = _choice_per_copy(value, allowed, name)
            if isinstance(choice, list) and len(choice) != (network.ensemble_size or 0):
                raise ValueError(f"{name} lists {len(choice)} choices, one per ensemble copy, but the network has "
                                 f"{network.ensemble_size or 'no'} ensemble copies")
        if not (isinstance(warmup_steps, int) and not isinstance(warmup_steps, bool) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer ≥ 0, got {warmup_steps!r}")
        if feedback_init not in ("random", "zeros"):
            raise ValueError(f"feedback_init must be 'random' or 'zeros', got {feedback_init!r}")
        self.pairing, self.noise_scale, self.warmup_steps = pairing, noise_scale, warmup_steps
        self.causal = bool(causal)
        self.transport_readout = bool(transport_readout)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=reference.device))
        n_in, n_h, n_out = network.sizes
        n_sending = n_h if self.transport_readout else n_out + n_h  # B = [B_out B_rec]: (n_h, n_out + n_h)
        lead = () if network.ensemble_size is None else (network.ensemble_size,)
        options = dict(lead=lead, dtype=reference.dtype, device=reference.device)
        if feedback == "sgd":
            if feedback_lr is None:
                raise ValueError("feedback 'sgd' needs feedback_lr (η_B), e.g. 1e-4")
            initial = None
            if feedback_init == "random":
                readout, recurrent = _random_feedback(network, generator)
                initial = recurrent if self.transport_readout else torch.cat([readout, recurrent], dim=-1)
            self.learner = SGDFeedback(n_h, n_sending, lr=feedback_lr, initial=initial, **options)
        elif feedback == "ridge":
            if feedback_init != "zeros":
                raise ValueError("feedback 'ridge' starts from B = 0: pass feedback_init='zeros'")
            self.learner = RidgeFeedback(n_h, n_sending, gamma=gamma, rho=rho, solve_every=solve_every, **options)
        else:
            raise ValueError(f"feedback must be 'sgd' or 'ridge', got {feedback!r}")
        self.feedback_kind = feedback

    def feedback(self) -> tuple[Tensor, Tensor]:
        B = self.learner.B
        if self.transport_readout:
            return self.network.readout_weight.detach().mT, B
        n_out = self.network.sizes[2]
        return B[..., :n_out], B[..., n_out:]

    def divergence_hint(self) -> str:
        return " or the feedback learning rate / noise level c"

    def compute_credit(self, x: Tensor, target: Tensor, h0: Tensor | None = None) -> RecurrentCredit:
        credit = super().compute_credit(x, target, h0)
        credit.extras["perturbation"] = perturb_through_time(
            self.network, credit.trace, target, self.c, self.generator,
            perturbed_fraction=self.perturbed_fraction, noise_scale=self.noise_scale, causal=self.causal)
        return credit

    def write_gradients(self, credit: RecurrentCredit) -> None:
        if int(self.steps) >= self.warmup_steps:
            super().write_gradients(credit)

    @torch.no_grad()
    def update_feedback(self, credit: RecurrentCredit) -> None:
        lambdas = credit.extras["perturbation"].lambdas                    # (..., T, batch, n_h)
        z = regressors(credit.output_errors, credit.deltas, self.pairing)  # (..., T, batch, n_out + n_h)
        if self.transport_readout:
            n_out = self.network.sizes[2]
            lambdas = lambdas - credit.output_errors @ self.network.readout_weight.detach().unsqueeze(-3)
            z = z[..., n_out:]
        lead = lambdas.shape[:-3]
        self.learner.update(lambdas.reshape(*lead, -1, lambdas.shape[-1]), z.reshape(*lead, -1, z.shape[-1]))
        self.steps.add_(1)


RULES = {"bptt": BPTT, "fa": FeedbackAlignmentThroughTime, "np": LearnedFeedbackThroughTime, "readout": ReadoutOnly,
         "sweep": FixedFeedbackSweep}


def make_rule(name: str, network: RNN, *, generator: rng.Generators = None, **options) -> ThroughTimeRule:
    """A rule by short name: ``"bptt"``, ``"fa"`` or ``"np"`` (options go to its constructor)."""
    if name not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {name!r}")
    if name in ("bptt", "readout"):
        if options:
            raise ValueError(f"{name} takes no options, got {sorted(options)}")
        return RULES[name](network, generator=generator)
    return RULES[name](network, generator=generator, **options)
