"""The FLP lifetime as pure, differentiable functions of explicit weight lists (Lindsey & Litwin-Kumar 2020).

Network (REFERENCE.md §B): ReLU hidden layers, linear output, ``h_0 = x``, ``h_l = ReLU(W_l h_{l-1} + b_l)``,
``ŷ = W_L h_{L-1} + b_L``. One lifetime step on a batch ``(x, y)``, for the plastic layers (the last ones):

1. forward pass, ``h_l`` and ``ŷ``;
2. error sent back: regression ``e = y − ŷ``; classification ``e = onehot(y)``;
3. direct feedback to every plastic layer ``f_l = ReLU(B_l e + c_l)``, ``B_l`` of shape ``(n_l, n_out)``;
4. target activity ``z_l = β_l f_l + (1 − β_l) h_l`` (output layer: regression ``β_L f_L + (1 − β_L) ŷ``,
   classification ``onehot(y)``);
5. Oja's rule on the weights, with the feedforward (pre-feedback) presynaptic activity:
   ``ΔW_l = P_l ⊙ (Σ_b z_l h_{l−1}ᵀ − diag(Σ_b z_l²) W_l)``.

The gradient-based baseline (OML-style) replaces steps 2–5 with ``W_l ← W_l − η ∂ℓ/∂W_l`` on the same batch (one
fixed η in the paper's baseline; a meta-learned rate per synapse, ``η_l ⊙ ∂ℓ/∂W_l``, in Meta-SGD).
Every tensor may carry a leading ensemble dimension K (weights ``(K, n_out, n_in)``, activity ``(K, batch, n)``).
Nothing here is in-place, so autograd differentiates a whole lifetime with respect to everything it started from.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ..oja import hebb_update, oja_update
from .episode import KINDS, Episode

RULES = ("oja", "hebb")


# ------------------------------------------------------------------------------------------------ forward pass
def linear(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``a = h Wᵀ + b``: ``h (..., batch, n_in)``, ``W (..., n_out, n_in)``, ``b (..., n_out)`` (one fused kernel
    for a single network or an ensemble of equal batch dimensions)."""
    if bias is None:
        return h @ weight.mT
    if h.dim() == 2 and weight.dim() == 2:
        return torch.nn.functional.linear(h, weight, bias)
    if h.dim() == weight.dim() == 3 and h.shape[0] == weight.shape[0]:
        return torch.baddbmm(bias.unsqueeze(-2), h, weight.mT)
    return h @ weight.mT + bias.unsqueeze(-2)


def forward(weights: Sequence[Tensor], biases: Sequence[Tensor | None], x: Tensor, *,
            output_layer: bool = True) -> list[Tensor]:
    """Activities ``[h_0 = x, h_1, …]`` of the given layers: ReLU everywhere except a linear last layer when
    ``output_layer`` (pass ``False`` for a stack of hidden layers only)."""
    activities = [x]
    for index, (W, b) in enumerate(zip(weights, biases)):
        a = linear(activities[-1], W, b)
        last = output_layer and index == len(weights) - 1
        activities.append(a if last else torch.relu(a))
    return activities


def predict(weights: Sequence[Tensor], biases: Sequence[Tensor | None], x: Tensor) -> Tensor:
    """The network's output ``ŷ`` for ``x (..., batch, n_in)``."""
    return forward(weights, biases, x)[-1]


def forward_frozen(weights: Sequence[Tensor], biases: Sequence[Tensor | None], x: Tensor) -> Tensor:
    """Activity after the non-plastic hidden layers for every step at once: ``x (..., T, batch, n_in)`` →
    ``(..., T, batch, n_k)``. These layers do not change within a lifetime, so one big matrix product serves
    all T steps."""
    if not weights:
        return x
    flat = x.flatten(-3, -2)                                   # (..., T·batch, n_in)
    h = forward(weights, biases, flat, output_layer=False)[-1]
    return h.unflatten(-2, x.shape[-3:-1])


# ----------------------------------------------------------------------------------------------- losses, errors
def one_hot(labels: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype)


def task_loss(output: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-copy loss averaged over the batch: regression mean squared error (averaged over outputs too),
    classification softmax cross-entropy. ``output (..., batch, n_out)`` → ``(...)``."""
    if kind == "regression":
        return (output - target).square().mean(dim=(-2, -1))
    picked = output.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(output, dim=-1) - picked).mean(dim=-1)


def error_rate(output: Tensor, labels: Tensor) -> Tensor:
    """Fraction of arg-max mistakes, ``(...)``."""
    return (output.argmax(dim=-1) != labels).to(output.dtype).mean(dim=-1)


def output_gradient(output: Tensor, target: Tensor, kind: str) -> Tensor:
    """``∂ℓ/∂ŷ`` of :func:`task_loss` for each sample of the batch, ``(..., batch, n_out)``."""
    batch = output.shape[-2]
    if kind == "regression":
        return 2.0 * (output - target) / (batch * output.shape[-1])
    return (torch.softmax(output, dim=-1) - one_hot(target, output.shape[-1], output.dtype)) / batch


def error_signal(output: Tensor, target: Tensor, kind: str) -> Tensor:
    """What the output sends back: ``e = y − ŷ`` (regression) or ``onehot(y)`` (classification)."""
    if kind == "regression":
        return target - output
    return one_hot(target, output.shape[-1], output.dtype)


# ------------------------------------------------------------------------------------------------ the FLP step
class FLPStep(NamedTuple):
    """What one FLP step computed: the new weights of every layer given, and the intermediate quantities."""

    weights: list[Tensor]    # W_l + ΔW_l for the plastic layers, W_l unchanged for the others
    output: Tensor           # ŷ before the update, (..., batch, n_out)
    error: Tensor            # e, (..., batch, n_out)
    feedback: list[Tensor]   # f_l for each plastic layer, (..., batch, n_l)
    targets: list[Tensor]    # z_l for each plastic layer
    updates: list[Tensor]    # ΔW_l for each plastic layer


def _check_step_inputs(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind, rule) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    n_layers = len(weights)
    if n_layers == 0 or len(biases) != n_layers:
        raise ValueError(f"weights and biases must be non-empty lists of equal length, got {n_layers} and "
                         f"{len(biases)}")
    n_plastic = len(plasticity)
    if not 1 <= n_plastic <= n_layers:
        raise ValueError(f"plasticity must list one tensor per plastic layer (1 to {n_layers}), got {n_plastic}")
    if not (len(feedback) == len(feedback_bias) == len(beta) == n_plastic):
        raise ValueError(f"feedback ({len(feedback)}), feedback_bias ({len(feedback_bias)}), plasticity "
                         f"({n_plastic}) and beta ({len(beta)}) must each list one entry per plastic layer")
    if x.shape[-1] != weights[0].shape[-1]:
        raise ValueError(f"x has {x.shape[-1]} features but the first layer expects {weights[0].shape[-1]}")
    for lower, upper in zip(weights[:-1], weights[1:]):
        if upper.shape[-1] != lower.shape[-2]:
            raise ValueError(f"consecutive weights do not chain: {tuple(lower.shape)} then {tuple(upper.shape)}")
    n_out = weights[-1].shape[-2]
    if kind == "regression" and y.shape[-1] != n_out:
        raise ValueError(f"y must have shape (..., batch, {n_out}) for regression, got {tuple(y.shape)}")
    if kind == "classification":
        if y.dtype != torch.int64:
            raise ValueError(f"y must hold int64 class labels for classification, got {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_out):
            raise ValueError(f"labels must lie in [0, {n_out - 1}], got values in [{int(y.min())}, {int(y.max())}]")
    for index, (W, B, c, P, b_l) in enumerate(zip(weights[-n_plastic:], feedback, feedback_bias, plasticity, beta)):
        layer = n_layers - n_plastic + index + 1
        if B.shape[-2:] != (W.shape[-2], n_out):
            raise ValueError(f"feedback B of plastic layer {layer} must have shape (..., {W.shape[-2]}, {n_out}), "
                             f"got {tuple(B.shape)}")
        if c.shape[-1] != W.shape[-2]:
            raise ValueError(f"feedback_bias c of plastic layer {layer} must have {W.shape[-2]} entries, "
                             f"got shape {tuple(c.shape)}")
        try:
            torch.broadcast_shapes(P.shape, W.shape)
        except RuntimeError:
            raise ValueError(f"plasticity P of plastic layer {layer} has shape {tuple(P.shape)}, which does not "
                             f"broadcast against its weight {tuple(W.shape)}") from None
        if bool((P.detach() < 0).any()):
            raise ValueError(f"plasticity P of plastic layer {layer} must be >= 0, got a minimum of "
                             f"{float(P.detach().min()):.4g}")
        b_values = torch.as_tensor(b_l).detach()
        if bool(((b_values < 0) | (b_values > 1)).any()):
            raise ValueError(f"beta of plastic layer {layer} must lie in [0, 1], got values in "
                             f"[{float(b_values.min()):.4g}, {float(b_values.max()):.4g}]")


def flp_step(weights: Sequence[Tensor], biases: Sequence[Tensor | None], feedback: Sequence[Tensor],
             feedback_bias: Sequence[Tensor], plasticity: Sequence[Tensor], beta: Sequence[Tensor | float],
             x: Tensor, y: Tensor, *, kind: str = "regression", rule: str = "oja",
             validate: bool = True) -> FLPStep:
    """One FLP lifetime step on the batch ``(x, y)`` (steps 1–5 of the module docstring).

    weights, biases: the layers to run, ``W_l (..., n_l, n_{l−1})``; the last ``len(plasticity)`` are plastic.
    feedback ``B_l (..., n_l, n_out)``, feedback_bias ``c_l (..., n_l)``, plasticity ``P_l`` (broadcasting
    against ``W_l``, ≥ 0) and beta ``β_l`` (a number or a tensor broadcasting against ``(..., batch, n_l)``, in
    [0, 1]): one per plastic layer, lowest first. For classification the output's target is clamped to
    ``onehot(y)`` and its ``B``, ``c``, ``β`` are not used. ``rule="hebb"`` drops Oja's decay term.
    x: ``(..., batch, n_in)``; y: ``(..., batch, n_out)`` floats or ``(..., batch)`` labels.
    """
    if validate:
        _check_step_inputs(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind, rule)
    n_layers, n_plastic = len(weights), len(plasticity)
    first = n_layers - n_plastic
    activities = forward(weights, biases, x)                    # [h_0, …, h_{L−1}, ŷ]
    output = activities[-1]
    error = error_signal(output, y, kind)                       # (..., batch, n_out)
    update = oja_update if rule == "oja" else hebb_update
    new_weights = list(weights[:first])
    signals, targets, updates = [], [], []
    for index in range(n_plastic):
        layer = first + index                                   # 0-based index of W in `weights`
        W, h_pre, h_post = weights[layer], activities[layer], activities[layer + 1]
        f = torch.relu(linear(error, feedback[index], feedback_bias[index]))   # f_l = ReLU(B_l e + c_l)
        if layer == n_layers - 1 and kind == "classification":
            z = error                                           # output clamped to onehot(y)
        else:
            z = torch.lerp(h_post, f, beta[index])             # z_l = β f + (1 − β) h (or ŷ)
        delta = update(W, h_pre, z, plasticity[index], validate=False)
        new_weights.append(W + delta)
        signals.append(f)
        targets.append(z)
        updates.append(delta)
    return FLPStep(new_weights, output, error, signals, targets, updates)


# ------------------------------------------------------------------------------------ the gradient-based step
class GradientStep(NamedTuple):
    weights: list[Tensor]   # W_l − η_l ⊙ ∂ℓ/∂W_l for the plastic layers
    output: Tensor          # ŷ before the update
    gradients: list[Tensor]  # ∂ℓ/∂W_l of the plastic layers
    updates: list[Tensor]   # −η_l ⊙ ∂ℓ/∂W_l


def weight_gradients(weights: Sequence[Tensor], biases: Sequence[Tensor | None], x: Tensor, y: Tensor, *,
                     kind: str, n_layers: int) -> tuple[Tensor, list[Tensor]]:
    """Output and the exact ``∂ℓ/∂W_l`` of :func:`task_loss` for the last ``n_layers`` layers, by explicit backprop
    (``δ_L = ∂ℓ/∂ŷ``, ``δ_l = ReLU'(a_l) ⊙ (δ_{l+1} W_{l+1})``, ``∂ℓ/∂W_l = δ_lᵀ h_{l−1}``); differentiable."""
    activities = forward(weights, biases, x)
    output = activities[-1]
    delta = output_gradient(output, y, kind)                     # (..., batch, n_L)
    grads = []
    for layer in range(len(weights) - 1, len(weights) - 1 - n_layers, -1):
        grads.append(delta.mT @ activities[layer])              # (..., n_l, batch) @ (..., batch, n_{l−1})
        if layer > len(weights) - n_layers:
            delta = (delta @ weights[layer]) * (activities[layer] > 0).to(delta.dtype)
    return output, grads[::-1]


def sgd_step(weights: Sequence[Tensor], biases: Sequence[Tensor | None], learning_rates: Sequence[Tensor],
             x: Tensor, y: Tensor, *, kind: str = "regression") -> GradientStep:
    """One inner SGD step on the last ``len(learning_rates)`` layers, per-synapse rates ``η_l`` (≥ 0)."""
    n_plastic = len(learning_rates)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 1 <= n_plastic <= len(weights):
        raise ValueError(f"learning_rates must list one tensor per plastic layer (1 to {len(weights)}), "
                         f"got {n_plastic}")
    output, grads = weight_gradients(weights, biases, x, y, kind=kind, n_layers=n_plastic)
    first = len(weights) - n_plastic
    updates = [-eta * g for eta, g in zip(learning_rates, grads)]
    new = list(weights[:first]) + [W + u for W, u in zip(weights[first:], updates)]
    return GradientStep(new, output, grads, updates)


# --------------------------------------------------------------------------------------------- whole lifetime
StepFunction = Callable[[list, list, Tensor, Tensor], "FLPStep | GradientStep"]
Observer = Callable[[int, list, Tensor, Tensor, "FLPStep | GradientStep"], None]


def _step_target(y: Tensor, kind: str) -> list[Tensor]:
    return list(y.unbind(-3 if kind == "regression" else -2))


def run_lifetime(step: StepFunction, weights: Sequence[Tensor], biases: Sequence[Tensor | None], n_plastic: int,
                 episode: Episode, *, observe: Observer | None = None) -> list[Tensor]:
    """Apply ``step(plastic_weights, plastic_biases, h, y)`` to every training batch of ``episode`` in order and
    return the final weights (the non-plastic ones unchanged).

    The non-plastic layers are run once on all T batches (:func:`forward_frozen`), so each step only touches the
    plastic tail. ``observe(t, plastic_weights_before, h, y, result)``, if given, sees every step: the plastic
    weights before it, their input ``h``, the targets ``y`` and what the step computed (for analyses).
    """
    first = len(weights) - n_plastic
    frozen = forward_frozen(weights[:first], biases[:first], episode.x_train)   # (..., T, batch, n_first)
    plastic, plastic_biases = list(weights[first:]), list(biases[first:])
    for t, (h, y) in enumerate(zip(frozen.unbind(-3), _step_target(episode.y_train, episode.kind))):
        result = step(plastic, plastic_biases, h, y)
        if observe is not None:
            observe(t, plastic, h, y, result)
        plastic = result.weights
    return list(weights[:first]) + plastic
