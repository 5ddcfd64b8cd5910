"""A small convolutional network and three ways to train it: backprop, fixed random direct feedback (DFA) and
direct feedback learned by node perturbation (the convolutional experiment of Lansdell, Prakash & Kording).

Notation (REFERENCE.md): layer ``l = 1..L`` computes ``a_l = W_l ⋆ h_{l-1} + b_l`` (``⋆`` a strided 2-d
convolution for the convolutional layers, a matrix product for the dense ones) and ``h_l = f_l(a_l)``.
The forward trace records every ``h_{l-1}``, ``a_l`` and ``h_l`` *flattened*, batch-major ``(batch, n_l)`` with
``n_l = C_l·H_l·W_l`` for a convolutional layer, so that everything written for flat activity works unchanged:
:func:`credit_tutorial.node_perturbation.estimate` (noise on ``h_l``), :func:`propagation.broadcast_direct`,
the feedback learners of :mod:`credit_tutorial.feedback_learning` and the angle metrics.

Direct feedback: the output error ``e = δ_L = ∂L/∂a_L`` reaches every hidden layer ``l`` through its own matrix
``B_l`` of shape ``(n_l, n_L)``:

    δ_l = f'(a_l) ⊙ reshape(B_l e)                                        (Nøkland 2016)

and the layer's update is then the exact *local* gradient given ``δ_l``: ``∂L/∂W_l = ⟨δ_l ⋆ h_{l-1}⟩``,
computed with ``torch.nn.grad.conv2d_weight`` (the correlation of the input patches with ``δ_l``, summed over
positions because the kernel is shared) — the same function autograd's convolution backward uses.
With learned feedback, ``B_l`` regresses the node-perturbation estimate ``λ̂_l = (L̃ − L) ξ_l / c² ≈ ∂L/∂h_l``
on ``e``: its least-squares target is ``E[∂L/∂h_l eᵀ] E[e eᵀ]⁻¹``, which is ``W_Lᵀ`` for the top hidden layer and
the (input-dependent) Jacobian ``(∂a_L/∂h_l)ᵀ`` averaged in this sense for the layers below.

The network is a single network (no ensemble dimension): ensembles of convolutional networks are not supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.grad import conv2d_input, conv2d_weight

from . import node_perturbation as np_
from . import rng
from .activations import Activation, get_activation
from .feedback_learning import RidgeFeedback, SGDFeedback
from .init import Init, as_init
from .metrics import matrix_angle, mean_angle
from .networks import Trace, trace_layers
from .objectives import Objective
from .propagation import accumulate_grad, broadcast_direct
from .rules.base import BufferList, Credit, CreditAssignmentRule, check_batch


# ---------------------------------------------------------------------------------------------------- the network
@dataclass(frozen=True)
class LayerGeometry:
    """One layer's shapes: ``kind`` ``"conv"`` (``in_shape``/``out_shape`` = (C, H, W)) or ``"dense"`` ((n,))."""

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]  # conv: (C_out, C_in, k, k); dense: (n_out, n_in)
    stride: int = 1
    padding: int = 0

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)


def _per_layer(value, n: int, name: str) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an integer or a list of {n} integers (one per convolutional layer), "
                         f"got {value!r}")
    return values


def _positive_ints(values, name: str) -> tuple[int, ...]:
    values = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{name} must list positive integers, got {values!r}")
    return values


class ConvNet(nn.Module):
    """Convolutional layers (strided, no pooling) followed by dense layers, one nonlinearity per hidden layer.

    Parameters
    ----------
    input_shape: ``(C, H, W)`` of one input image; inputs may also arrive flattened, ``(batch, C·H·W)``.
    channels: output channels of each convolutional layer, e.g. ``(8, 16, 16)``.
    kernel_size, stride, padding: one integer for all convolutional layers, or one per layer.
    hidden: widths of the dense hidden layers after the last convolution, e.g. ``(64,)``.
    n_out: number of outputs (classes).
    activation: hidden nonlinearity, or one per hidden layer (``len(channels) + len(hidden)`` names).
    output_activation: the output layer's nonlinearity (``"identity"`` for a softmax cross-entropy objective).
    init: ``"he"`` (N(0, 2/fan_in), fan-in = C_in·k·k for a convolution), ``"uniform[:s]"`` or ``"normal[:σ]"``.
    generator: a ``torch.Generator`` for the initial weights (one network; ensembles are not supported).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (8, 16, 16),
                 kernel_size: int | Sequence[int] = 3, stride: int | Sequence[int] = 2,
                 padding: int | Sequence[int] = 1, hidden: Sequence[int] = (64,), n_out: int = 10,
                 activation: str | Sequence[str] = "tanh", output_activation: str = "identity", *,
                 bias: bool = True, init: str | Init = "he", generator: rng.Generators = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        if rng.is_ensemble(generator):
            raise ValueError("generator: ConvNet is a single network; ensembles (a list of generators) are not "
                             "supported")
        input_shape = _positive_ints(input_shape, "input_shape")
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
        channels = _positive_ints(channels, "channels")
        hidden = _positive_ints(hidden, "hidden")
        if not channels:
            raise ValueError("channels must list at least one convolutional layer")
        if not (isinstance(n_out, int) and not isinstance(n_out, bool) and n_out > 0):
            raise ValueError(f"n_out must be a positive integer, got {n_out!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        kernels = _per_layer(kernel_size, len(channels), "kernel_size")
        strides = _per_layer(stride, len(channels), "stride")
        paddings = _per_layer(padding, len(channels), "padding")
        if min(kernels) < 1 or min(strides) < 1 or min(paddings) < 0:
            raise ValueError(f"kernel_size and stride must be ≥ 1 and padding ≥ 0, got {kernels}, {strides}, "
                             f"{paddings}")

        geometry: list[LayerGeometry] = []
        shape = input_shape
        for c_out, k, s, p in zip(channels, kernels, strides, paddings):
            c_in, height, width = shape
            out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
            if out_h < 1 or out_w < 1:
                raise ValueError(f"a {k}×{k} convolution with stride {s} and padding {p} does not fit a "
                                 f"{height}×{width} input; use a smaller kernel or stride, or more padding")
            geometry.append(LayerGeometry("conv", shape, (c_out, out_h, out_w), (c_out, c_in, k, k), s, p))
            shape = (c_out, out_h, out_w)
        n = math.prod(shape)
        for width in (*hidden, n_out):
            geometry.append(LayerGeometry("dense", (n,), (width,), (width, n)))
            n = width
        self.geometry = geometry
        self.input_shape = input_shape
        self.sizes = (math.prod(input_shape), *(g.n_out for g in geometry))  # flat unit counts, input first
        self.ensemble_size = None
        self.init = as_init(init)

        n_hidden = len(geometry) - 1
        names = list(activation) if isinstance(activation, (list, tuple)) else [activation] * n_hidden
        if len(names) != n_hidden:
            raise ValueError(f"activation lists {len(names)} nonlinearities but the network has {n_hidden} hidden "
                             "layers")
        self.activations: list[Activation] = [get_activation(a) for a in names] + [get_activation(output_activation)]

        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList() if bias else None
        for g in geometry:
            fan_in = math.prod(g.weight_shape[1:])
            # Init.sample reads the fan-in from the last dimension: draw (n_out, fan_in), then fold into a kernel
            w = self.init.sample((g.weight_shape[0], fan_in), generator, dtype=dtype, device=device)
            self.weights.append(nn.Parameter(w.reshape(g.weight_shape)))
            if bias:
                self.biases.append(nn.Parameter(torch.zeros(g.weight_shape[0], dtype=dtype, device=device)))

    # ------------------------------------------------------------------ structure
    @property
    def n_layers(self) -> int:
        """Number of weight layers L (convolutional and dense)."""
        return len(self.weights)

    @property
    def n_conv(self) -> int:
        return sum(g.kind == "conv" for g in self.geometry)

    @property
    def has_bias(self) -> bool:
        return self.biases is not None

    def bias(self, index: int) -> Tensor | None:
        return None if self.biases is None else self.biases[index]

    def layer_names(self) -> list[str]:
        """``conv1 (8×14×14)``, …, ``fc1 (64)``, …, ``out (10)``: one label per layer, for tables and plots."""
        names, n_conv, n_dense = [], 0, 0
        for index, g in enumerate(self.geometry):
            if g.kind == "conv":
                n_conv += 1
                names.append(f"conv{n_conv} ({'×'.join(map(str, g.out_shape))})")
            elif index == self.n_layers - 1:
                names.append(f"out ({g.n_out})")
            else:
                n_dense += 1
                names.append(f"fc{n_dense} ({g.n_out})")
        return names

    def extra_repr(self) -> str:
        acts = "/".join(a.name for a in self.activations)
        return f"input={self.input_shape}, layers={', '.join(self.layer_names())}, activations={acts}"

    # ------------------------------------------------------------------ forward passes
    def flatten_input(self, x: Tensor) -> Tensor:
        """``(batch, C, H, W)`` or ``(batch, C·H·W)`` → ``(batch, C·H·W)``, with a clear error for anything else."""
        n_in = self.sizes[0]
        if isinstance(x, Tensor) and x.dim() == 4 and tuple(x.shape[1:]) == self.input_shape:
            x = x.flatten(1)
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != n_in:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {n_in}) or (batch, {', '.join(map(str, self.input_shape))})"
                             f", got {got}")
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch: it needs at least one sample")
        return x

    def _check_input(self, x: Tensor) -> None:  # the hook rules.base.check_batch calls
        self.flatten_input(x)

    def pre_activation(self, index: int, h: Tensor) -> Tensor:
        """``a = W ⋆ h + b`` for layer ``index + 1`` (0-based), flat in and flat out: ``(batch, n_in) → (batch, n_out)``."""
        g, W, b = self.geometry[index], self.weights[index], self.bias(index)
        if g.kind == "conv":
            image = h.reshape(h.shape[0], *g.in_shape)                    # (batch, C_in, H, W)
            return nn.functional.conv2d(image, W, b, stride=g.stride, padding=g.padding).flatten(1)
        return nn.functional.linear(h, W, b)

    def trace(self, x: Tensor, noise: Sequence[Tensor | None] | None = None) -> Trace:
        """Forward pass recording flat ``h_{l-1}``, ``a_l``, ``h_l`` per layer; ``noise[l-1]`` is added to ``h_l``."""
        return self.trace_from(0, self.flatten_input(x), noise)

    def trace_from(self, start: int, h: Tensor, noise: Sequence[Tensor | None] | None = None) -> Trace:
        """Run layers ``start+1 .. L`` on the flat activity ``h = h_start`` (node perturbation starts here)."""
        return trace_layers(h, start, self.n_layers, self.pre_activation, self.activations, noise)

    def forward(self, x: Tensor) -> Tensor:
        """The output ``ŷ = h_L``, ``(batch, n_out)``."""
        h = self.flatten_input(x)
        for index in range(self.n_layers):
            h = self.activations[index](self.pre_activation(index, h))
        return h

    def derivatives(self, trace: Trace) -> list[Tensor]:
        """``f_l'(a_l)`` for every layer, flat ``(batch, n_l)``."""
        if trace.perturbed:
            return [f.derivative(r.pre_activation, f(r.pre_activation)) for f, r in zip(self.activations, trace.layers)]
        return [f.derivative(r.pre_activation, r.activity) for f, r in zip(self.activations, trace.layers)]


# ---------------------------------------------------------------------------------------------------- shared maths
def transpose_layer(network: ConvNet, index: int, delta: Tensor) -> Tensor:
    """``W_lᵀ δ_l`` — the adjoint of layer ``index + 1``'s linear map applied to its error: ``∂L/∂h_{l-1}``.

    For a convolution this is the transposed convolution (``torch.nn.grad.conv2d_input``): the weight transport
    that backprop needs and the brain is not thought to have. Flat ``(batch, n_l) → (batch, n_{l-1})``.
    """
    g, W = network.geometry[index], network.weights[index]
    if g.kind == "conv":
        image = delta.reshape(delta.shape[0], *g.out_shape)
        return conv2d_input((delta.shape[0], *g.in_shape), W, image, stride=g.stride, padding=g.padding).flatten(1)
    return delta @ W


def backprop_deltas(network: ConvNet, trace: Trace, output_delta: Tensor) -> list[Tensor]:
    """Backprop's ``[δ_1, …, δ_L]``: ``δ_l = f'(a_l) ⊙ (W_{l+1}ᵀ δ_{l+1})`` with transposed convolutions."""
    derivatives = network.derivatives(trace)
    deltas = [output_delta]
    for index in range(network.n_layers - 1, 0, -1):
        deltas.append(derivatives[index - 1] * transpose_layer(network, index, deltas[-1]))
    return deltas[::-1]


def local_gradients(network: ConvNet, trace: Trace, deltas: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Batch-mean ``(∂L/∂W_l, ∂L/∂b_l)`` of every layer *given* its error ``δ_l`` (any rule's): exact and local.

    Convolution: ``∂L/∂W_l = conv2d_weight(h_{l-1}, δ_l) / batch`` — each kernel entry correlates its input
    patch with ``δ_l`` and sums over all positions (the kernel is shared); ``∂L/∂b_l`` sums ``δ_l`` over positions.
    Dense: ``⟨δ_l h_{l-1}ᵀ⟩`` and ``⟨δ_l⟩``.
    """
    grads = []
    for g, W, record, delta in zip(network.geometry, network.weights, trace.layers, deltas):
        batch = delta.shape[0]
        if g.kind == "conv":
            h = record.presynaptic.reshape(batch, *g.in_shape)          # (batch, C_in, H_in, W_in)
            d = delta.reshape(batch, *g.out_shape)                      # (batch, C_out, H_out, W_out)
            grad_w = conv2d_weight(h, W.shape, d, stride=g.stride, padding=g.padding) / batch
            grad_b = d.sum(dim=(-2, -1)).mean(dim=0)
        else:
            grad_w = delta.mT @ record.presynaptic / batch              # (n_l, batch) @ (batch, n_{l-1})
            grad_b = delta.mean(dim=0)
        grads.append((grad_w, grad_b))
    return grads


# ---------------------------------------------------------------------------------------------------- the rules
class ConvolutionalRule(CreditAssignmentRule):
    """Base class of the rules for :class:`ConvNet`: :class:`rules.base.CreditAssignmentRule` on a convolutional
    network (one network, not an ensemble), so that :func:`credit_tutorial.training.fit` trains it unchanged. The
    forward pass and the errors are the base class's; only the local gradients differ (convolutions share their
    weights over positions). Subclasses give :meth:`hidden_deltas` (flat ``δ_l``, ``(batch, n_l)``).
    """

    short_name = "cnn-rule"
    network_type = ConvNet

    def __init__(self, network: ConvNet, objective: str | Objective = "cross_entropy", *,
                 generator: rng.Generators = None):
        if rng.is_ensemble(generator):
            raise ValueError("generator: rules for ConvNet take one torch.Generator (ensembles are not supported)")
        super().__init__(network, objective, generator=generator)

    def write_gradients(self, credit: Credit) -> None:
        """Accumulate every layer's local gradient given its ``δ_l`` into ``.grad`` (autograd's sign, batch mean)."""
        for index, (grad_w, grad_b) in enumerate(local_gradients(self.network, credit.trace, credit.deltas)):
            accumulate_grad(self.network.weights[index], grad_w)
            if self.network.has_bias:
                accumulate_grad(self.network.biases[index], grad_b)

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        """One batch (images or flat inputs): compute the credit, write ``.grad``, learn the feedback."""
        return super().step(self.network.flatten_input(x), target, validate=validate)


class ConvBackprop(ConvolutionalRule):
    """Backprop through the convolutions: ``δ_l = f'(a_l) ⊙ (W_{l+1}ᵀ δ_{l+1})`` (transposed convolutions)."""

    short_name = "cnn-bp"

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return backprop_deltas(self.network, trace, output_delta)[:-1]


def _random_direct_feedback(network: ConvNet, init: str | Init | None, generator: rng.Generators) -> BufferList:
    """``B_l`` of shape ``(n_l, n_L)`` for every hidden layer, drawn like a dense weight ``(n_L, n_l)`` (same
    scheme as ``W``) and transposed; a convolutional layer's ``B_l`` has one row per unit (channel × position)."""
    scheme = network.init if init is None else as_init(init)
    reference = network.weights[0]
    n_out = network.sizes[-1]
    matrices = BufferList()
    for n in network.sizes[1:-1]:
        matrices.append(scheme.sample((n_out, n), generator, dtype=reference.dtype, device=reference.device)
                        .mT.contiguous())
    return matrices


class ConvDirectFeedback(ConvolutionalRule):
    """Direct feedback alignment: ``δ_l = f'(a_l) ⊙ reshape(B_l e)`` with fixed random ``B_l`` (Nøkland 2016).

    ``generator`` draws ``B``; ``init`` its scheme (default: the network's). ``feedback`` may give the matrices
    instead (e.g. a Jacobian, to test the exact case).
    """

    short_name = "cnn-dfa"

    def __init__(self, network: ConvNet, objective: str | Objective = "cross_entropy", *,
                 generator: rng.Generators = None, init: str | Init | None = None,
                 feedback: Sequence[Tensor] | None = None):
        super().__init__(network, objective, generator=generator)
        if feedback is None:
            self.feedback = _random_direct_feedback(network, init, generator)
        else:
            feedback = list(feedback)
            shapes = [(n, network.sizes[-1]) for n in network.sizes[1:-1]]
            if [tuple(B.shape) for B in feedback] != shapes:
                raise ValueError(f"feedback must hold one matrix per hidden layer with shapes {shapes} "
                                 f"(n_l, n_L), got {[tuple(B.shape) for B in feedback]}")
            self.feedback = BufferList([B.detach().clone() for B in feedback])

    def feedback_matrices(self) -> list[Tensor]:
        return list(self.feedback)

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        # δ_l = f'(a_l) ⊙ (e @ B_lᵀ): (batch, n_L) @ (n_L, n_l), flat; reshaping to (C, H, W) is only a view
        return broadcast_direct(output_delta, self.feedback_matrices(), derivatives[:-1])[:-1]


class ConvLearnedDirectFeedback(ConvolutionalRule):
    """Direct feedback learned by node perturbation: ``B_l`` regresses ``λ̂_l = (L̃ − L) ξ_l / c²`` on ``e``.

    Each step: the clean pass gives ``e`` and ``δ_l = f'(a_l) ⊙ (B_l e)`` with the current ``B_l``; one noisy pass
    (``ξ_l ~ N(0, c²)`` on every hidden activity at once, or one pass per layer with ``perturb="layerwise"``)
    gives ``λ̂_l ≈ ∂L/∂h_l``; then every ``B_l`` learns from the pairs ``(λ̂_l, e)``.

    Options
    -------
    c: noise standard deviation (REFERENCE.md, CIFAR-10 CNN: 0.067).
    feedback: ``"sgd"`` (``B ← B − η_B Σ_b (B e_b − λ̂_b) e_bᵀ``, option ``feedback_lr``; ``feedback_init``
        ``"zeros"`` or ``"random"``, the DFA draw) or ``"ridge"`` (exact running least squares, options ``gamma``,
        ``rho``, ``solve_every``; starts at ``B = 0``).
    warmup_steps: the first steps learn ``B`` only; ``W`` gets no gradient.
    """

    short_name = "cnn-np"

    def __init__(self, network: ConvNet, objective: str | Objective = "cross_entropy", *,
                 generator: rng.Generators = None, c: float = 0.067, feedback: str = "ridge", gamma: float = 0.1,
                 rho: float = 1.0, solve_every: int = 1, feedback_lr: float | None = None,
                 feedback_init: str = "zeros", perturb: str = "together", warmup_steps: int = 0):
        super().__init__(network, objective, generator=generator)
        reference = network.weights[0]
        if isinstance(c, (list, tuple)) or (isinstance(c, Tensor) and c.dim() > 0):
            raise ValueError(f"c (the noise standard deviation) must be one positive number for a ConvNet, got {c!r}")
        self.register_buffer("c", np_.noise_std(c, dtype=reference.dtype, device=reference.device))
        if perturb not in ("together", "layerwise"):
            raise ValueError(f"perturb must be 'together' or 'layerwise', got {perturb!r}")
        if not (isinstance(warmup_steps, int) and not isinstance(warmup_steps, bool) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer ≥ 0, got {warmup_steps!r}")
        if feedback_init not in ("zeros", "random"):
            raise ValueError(f"feedback_init must be 'zeros' or 'random', got {feedback_init!r}")
        self.perturb, self.warmup_steps, self.feedback_kind = perturb, warmup_steps, feedback
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=reference.device))
        n_out = network.sizes[-1]
        options = dict(dtype=reference.dtype, device=reference.device)
        if feedback == "ridge":
            if feedback_init != "zeros":
                raise ValueError("feedback 'ridge' starts from B = 0; feedback_init applies to 'sgd' only")
            learners = [RidgeFeedback(n, n_out, gamma=gamma, rho=rho, solve_every=solve_every, **options)
                        for n in network.sizes[1:-1]]
        elif feedback == "sgd":
            if feedback_lr is None:
                raise ValueError("feedback 'sgd' needs feedback_lr (η_B), e.g. 1e-4")
            initial = _random_direct_feedback(network, None, generator) if feedback_init == "random" else None
            learners = [SGDFeedback(n, n_out, lr=feedback_lr, initial=None if initial is None else initial[i],
                                    **options) for i, n in enumerate(network.sizes[1:-1])]
        else:
            raise ValueError(f"feedback must be 'ridge' or 'sgd', got {feedback!r}")
        self.learners = nn.ModuleList(learners)

    def feedback_matrices(self) -> list[Tensor]:
        return [learner.B for learner in self.learners]

    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        return broadcast_direct(output_delta, self.feedback_matrices(), derivatives[:-1])[:-1]

    def compute_credit(self, x: Tensor, target: Tensor) -> Credit:
        credit = super().compute_credit(x, target)
        estimator = np_.estimate if self.perturb == "together" else np_.estimate_layerwise
        result = estimator(self.network, self.objective, credit.trace, target, self.c, self.generator)
        credit.extras["lambda_hat"] = result.lambdas if self.perturb == "together" else result
        return credit

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        x = self.network.flatten_input(x)
        if validate:
            check_batch(self.network, x, target)
        credit = self.compute_credit(x, target)
        if int(self.steps) >= self.warmup_steps:  # warm-up: B learns while W stays frozen
            self.write_gradients(credit)
        with torch.no_grad():
            self.update_feedback(credit)
        self.steps.add_(1)
        return credit

    def update_feedback(self, credit: Credit) -> None:
        for index, learner in enumerate(self.learners):  # B_l regresses λ̂_l on e = δ_L
            learner.update(credit.extras["lambda_hat"][index], credit.output_delta)

    def divergence_hint(self) -> str:
        return f", or the noise level c (now {self.c.item():g})"

    def extra_repr(self) -> str:
        return f"c={self.c.item():g}, feedback={self.feedback_kind}, perturb={self.perturb}"


#: short name → rule class (these rules train a ConvNet, so they are not in rules.RULES, which builds MLPs)
CONV_RULES: dict[str, type[ConvolutionalRule]] = {
    "bp": ConvBackprop, "dfa": ConvDirectFeedback, "np": ConvLearnedDirectFeedback,
}


# ---------------------------------------------------------------------------------------------------- metrics
def compare_with_backprop(rule: ConvolutionalRule, x: Tensor, target: Tensor) -> dict[str, list[float]]:
    """Per hidden layer, the rule against backprop on the same forward pass and output error (no side effects).

    ``delta_angle``: mean per-sample angle (degrees) between the rule's ``δ_l`` and backprop's;
    ``update_angle``: angle between the weight updates ``∂L/∂W_l`` the two imply (for a convolution, after
    summing over the positions that share the kernel). The learned rule's noisy pass is not run.
    """
    with torch.no_grad():
        network = rule.network
        trace = network.trace(x)
        derivatives = network.derivatives(trace)
        output_delta = derivatives[-1] * rule.objective.output_gradient(trace.output, target)
        deltas = rule.hidden_deltas(trace, output_delta, derivatives) + [output_delta]
        exact = backprop_deltas(network, trace, output_delta)
        rule_updates = local_gradients(network, trace, deltas)
        exact_updates = local_gradients(network, trace, exact)
        hidden = range(network.n_layers - 1)
        return {
            "delta_angle": [mean_angle(deltas[i], exact[i]).item() for i in hidden],
            "update_angle": [matrix_angle(rule_updates[i][0].flatten(1), exact_updates[i][0].flatten(1)).item()
                             for i in hidden],
        }


def angle_metric(x: Tensor, target: Tensor):
    """A ``training.fit`` metric: :func:`compare_with_backprop` on a fixed batch at every evaluation."""
    def metric(rule, data) -> dict[str, list[float]]:
        return compare_with_backprop(rule, x, target)
    return metric


def least_squares_feedback(lambdas: Tensor, errors: Tensor) -> Tensor:
    """The least-squares ``B`` with ``λ ≈ B e`` over the rows given: ``(Σ λ eᵀ)(Σ e eᵀ)⁺``, shape ``(n_l, n_L)``.

    A pseudo-inverse, because a softmax error sums to zero: ``Σ e eᵀ`` is singular along ``1`` and only ``B``'s
    action on the span of ``e`` is determined (this gives the minimum-norm ``B``, on any device).
    """
    D = errors.mT @ errors                                           # (n_L, n_L)
    S = lambdas.mT @ errors                                          # (n_l, n_L)
    cutoff = torch.finfo(D.dtype).eps ** 0.5
    return S @ torch.linalg.pinv(D, rtol=cutoff, hermitian=True)


# ---------------------------------------------------------------------------------------------------- feedback quality
def activity_gradients(network: ConvNet, objective: Objective, x: Tensor, target: Tensor) -> list[Tensor]:
    """Exact per-sample ``∂L/∂h_l`` for every hidden layer (autograd through the layers above), flat ``(batch, n_l)``."""
    with torch.enable_grad():
        h, activities = network.flatten_input(x).detach(), []
        for index in range(network.n_layers):
            h = network.activations[index](network.pre_activation(index, h))
            activities.append(h)
        grads = torch.autograd.grad(objective.per_sample(h, target).sum(), activities[:-1])
    return [g.detach() for g in grads]


def output_error(network: ConvNet, objective: Objective, x: Tensor, target: Tensor) -> Tensor:
    """``e = δ_L = f_L'(a_L) ⊙ ∂L/∂ŷ``, ``(batch, n_L)``: what direct feedback sends to every layer."""
    with torch.no_grad():
        trace = network.trace(x)
        f_prime = network.derivatives(trace)[-1]
        return f_prime * objective.output_gradient(trace.output, target)


def best_direct_feedback(network: ConvNet, objective: Objective, x: Tensor, target: Tensor) -> list[Tensor]:
    """The least-squares ``B*_l`` with ``∂L/∂h_l ≈ B e`` over the samples given (exact gradients, no noise): what
    learned direct feedback converges to (for fixed ``W``). For the top hidden layer it is ``W_Lᵀ`` on the span of
    ``e``; below, the input-dependent Jacobian cannot be matched by one matrix, and ``B*`` is its best average."""
    e = output_error(network, objective, x, target)
    return [least_squares_feedback(g, e) for g in activity_gradients(network, objective, x, target)]


def signal_angles(feedback: Sequence[Tensor], network: ConvNet, objective: Objective, x: Tensor,
                  target: Tensor) -> list[float]:
    """Per hidden layer, the mean per-sample angle (degrees) between ``B_l e`` and the exact ``∂L/∂h_l``."""
    e = output_error(network, objective, x, target)
    exact = activity_gradients(network, objective, x, target)
    return [mean_angle(e @ B.mT, g).item() for B, g in zip(feedback, exact)]


def feedback_learning_curve(network: ConvNet, x: Tensor, target: Tensor, *, c: float, steps: int,
                            batch_size: int, generator: torch.Generator, probe: tuple[Tensor, Tensor],
                            objective: str | Objective = "cross_entropy", every: int = 5,
                            **options) -> dict[str, list]:
    """Learn direct feedback by node perturbation with ``W`` frozen, from ``B = 0``, on random batches of
    ``(x, target)``; every ``every`` steps record :func:`signal_angles` on ``probe``. Returns ``{"step": [...],
    "angle": [[per layer], ...]}``. ``options`` go to :class:`ConvLearnedDirectFeedback` (e.g. ``perturb``)."""
    if not (isinstance(steps, int) and steps > 0 and isinstance(every, int) and every > 0):
        raise ValueError(f"steps and every must be positive integers, got {steps!r} and {every!r}")
    rule = ConvLearnedDirectFeedback(network, objective, generator=generator, c=c, warmup_steps=steps + 1,
                                     **options)
    curve = {"step": [], "angle": []}
    for step in range(1, steps + 1):
        rows = torch.randint(0, x.shape[0], (batch_size,), generator=generator, device=generator.device)
        rule.step(x[rows.to(x.device)], target[rows.to(x.device)], validate=False)
        if step % every == 0 or step == steps:
            curve["step"].append(step)
            curve["angle"].append(signal_angles(rule.feedback_matrices(), network, rule.objective, *probe))
    return curve


def reachable_fraction(feedback: Sequence[Tensor], network: ConvNet, objective: Objective, x: Tensor,
                       target: Tensor) -> list[float]:
    """Per hidden layer ``l``, the mean fraction of ``‖B_l e‖²`` inside the range of ``W_{l+1}ᵀ``.

    Backprop's ``∂L/∂h_l = W_{l+1}ᵀ δ_{l+1}`` always lies in that range (a transposed convolution's when layer
    ``l+1`` is convolutional), whatever ``δ_{l+1}`` is; so no error that backprop could deliver is closer to
    ``B_l e`` than ``arccos √fraction``. A random ``B_l`` gives about ``rank(W_{l+1}) / n_l``.
    """
    e = output_error(network, objective, x, target)
    fractions = []
    for index, B in enumerate(feedback):
        n_above = network.sizes[index + 2]
        identity = torch.eye(n_above, dtype=e.dtype, device=e.device)
        with torch.no_grad():
            rows = transpose_layer(network, index + 1, identity)             # (n_{l+1}, n_l): W_{l+1}ᵀ's columns
            U, S, _ = torch.linalg.svd(rows.mT, full_matrices=False)        # (n_l, n_{l+1})
            basis = U[:, S > S.max() * max(rows.shape) * torch.finfo(S.dtype).eps]  # orthonormal basis of the range
            v = e @ B.mT                                                     # (batch, n_l)
            inside = (v @ basis).square().sum(dim=1) / v.square().sum(dim=1)
        fractions.append(inside.mean().item())
    return fractions
