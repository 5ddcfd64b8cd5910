"""Q-AGREL (Pozzi, Bohté & Roelfsema 2018): learning by trial and error with a reward-prediction error and
attentional feedback from the chosen action.

A ReLU network computes linear Q-values ``Q = h_L``. Per sample (REFERENCE.md §C, the paper's eqs. 6-14):

1. action selection (max-Boltzmann): ``s = argmax Q`` with probability ``1 − ε``, otherwise ``s ~ softmax(Q / T)``;
2. reward ``r = 1`` if ``s`` is the label, else ``0``; reward-prediction error ``δ = r − Q_s`` (a global scalar);
3. only the selected unit sends feedback: ``fb_L = z = one_hot(s)``, ``fb_{L−1} = W′_L z`` and
   ``fb_l = W′_{l+1} (g_{l+1} ⊙ fb_{l+1})`` below, where ``g_l = ReLU′(a_l) ∈ {0, 1}`` gates the feedback units;
4. every synapse changes by four local factors, ``ΔW_l[j, i] = α · δ · h_{l−1, i} · g_{l, j} · fb_{l, j}``, and
   its feedback synapse ``W′_l[i, j]`` by the same amount.

With ``W′ = Wᵀ`` this is exactly gradient descent on ``½ δ²`` through the selected output only:
``δ_l = ∂(½δ²)/∂a_l = −δ · g_l ⊙ fb_l`` (proved by induction over layers in chapter 9). The rule writes
``∂(½δ²)/∂θ = −Δθ / α`` into ``.grad`` (autograd's sign), so an optimizer applies ``α``.

Feedback modes: ``"symmetric"`` (``W′ = Wᵀ`` at all times), ``"learned"`` (``W′`` drawn independently and changed
by the same four-factor rule: ``W′`` are ``nn.Parameter`` s whose ``.grad`` the rule sets to ``(∂/∂W)ᵀ``, so the
optimizer that updates ``W`` gives ``W′`` the same change with the same learning rate -- true for SGD, momentum
and Adam, which treat both alike; weight decay shrinks ``W′ − Wᵀ`` geometrically, the Kolen-Pollack mechanism) and
``"fixed"`` (random ``W′`` that never change: feedback alignment).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor, nn

from .. import rng
from ..init import Init
from ..networks import MLP, Trace
from ..objectives import Objective
from .base import Credit, CreditAssignmentRule, check_batch
from .feedback_alignment import random_feedback

FEEDBACK_MODES = ("symmetric", "learned", "fixed")
_FOLD_EVERY = 256  # steps between summing the kept rewards into the running totals (bounds the memory they hold)


# ---------------------------------------------------------------------------------------------------- pieces
def rewards(actions: Tensor, labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``r = 1`` where the chosen action is the label, else ``0``: ``(..., batch)``."""
    return (actions == labels).to(dtype)


def selected_values(q: Tensor, actions: Tensor) -> Tensor:
    """``Q_s`` for each sample: ``q (..., batch, n_actions)``, ``actions (..., batch)`` → ``(..., batch)``."""
    return q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _per_copy(value: Tensor, like: Tensor, trailing: int) -> Tensor:
    """A scalar or ``(K,)`` option as a tensor that broadcasts against ``like`` with ``trailing`` extra dims."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.view(*value.shape, *([1] * trailing)) if value.dim() else value


def select_actions(q: Tensor, epsilon: float | Sequence[float] | Tensor = 0.025,
                   temperature: float | Sequence[float] | Tensor = 1.0,
                   generator: rng.Generators = None) -> tuple[Tensor, Tensor]:
    """Max-Boltzmann action selection (Wiering & Schmidhuber 1997; eq. 6 of Pozzi et al.).

    With probability ``1 − ε`` a sample takes the greedy action ``argmax Q``; otherwise (it *explores*) the action
    is drawn from ``softmax(Q / T)``. ``q`` is ``(..., batch, n_actions)``; ``epsilon`` and ``temperature`` are
    floats or one value per ensemble copy (``(K,)``). One uniform number ``u`` is drawn per trial, always (also for
    ``ε = 0``), through :mod:`credit_tutorial.rng`, so copy k of an ensemble draws exactly what a single network
    with generator k draws: the trial explores if ``u < ε`` and then samples with ``u/ε``, uniform on ``[0, 1)``
    given ``u < ε``. Returns ``(actions, explored)``, both ``(..., batch)`` (long, bool).
    """
    check_exploration(epsilon, temperature)
    if rng.is_ensemble(generator) and (q.dim() < 3 or q.shape[0] != len(generator)):
        raise ValueError(f"generator lists {len(generator)} generators but q has shape {tuple(q.shape)}; "
                         "an ensemble needs q of shape (K, batch, n_actions) with K = len(generator)")
    return _max_boltzmann(q, epsilon, temperature, generator)


def _max_boltzmann(q: Tensor, epsilon, temperature, generator: rng.Generators) -> tuple[Tensor, Tensor]:
    """:func:`select_actions` without the argument checks (the rule checks them once, at construction)."""
    shape = q.shape[1:-1] if rng.is_ensemble(generator) else q.shape[:-1]  # per copy: (batch,)
    u = rng.uniform(shape, generator, dtype=q.dtype, device=q.device)  # one uniform number per trial: (..., batch)
    eps = epsilon if isinstance(epsilon, float) else _per_copy(epsilon, q, 1)
    explored = u < eps  # explore with probability ε: (..., batch)
    if not (isinstance(temperature, float) and temperature == 1.0):
        q = q / (temperature if isinstance(temperature, float) else _per_copy(temperature, q, 2))
    # Given u < ε, u/ε is again uniform on [0, 1): it draws the Boltzmann sample by inverse CDF, without
    # normalising -- the number of actions whose cumulative weight exp(Q_a/T − max) stays below u/ε times the total
    # (never all of them: the last cumulative weight is the total). Trials that do not explore ignore it.
    cumulative = (q - q.amax(dim=-1, keepdim=True)).exp_().cumsum(dim=-1)  # (..., batch, n_actions)
    threshold = (u / eps).unsqueeze(-1) * cumulative[..., -1:]  # (..., batch, 1)
    sampled = (cumulative < threshold).sum(dim=-1)
    actions = torch.where(explored, sampled, q.argmax(dim=-1))
    return actions, explored


def _one_hot(actions: Tensor, n_actions: int, like: Tensor) -> Tensor:
    """``z``: ``(..., batch)`` actions → ``(..., batch, n_actions)`` rows with a single 1 (no range check)."""
    return torch.zeros(*actions.shape, n_actions, dtype=like.dtype, device=like.device).scatter_(
        -1, actions.unsqueeze(-1), 1.0)


def feedback_signals(actions: Tensor, feedback: Sequence[Tensor], gates: Sequence[Tensor],
                     n_actions: int) -> list[Tensor]:
    """Activity of the feedback units, ``[fb_1, …, fb_L]``, started by the selected action alone.

    ``fb_L = one_hot(s)``; ``fb_{L−1} = W′_L fb_L`` (column ``s`` of ``W′_L``: only the winner sends);
    ``fb_l = W′_{l+1} (g_{l+1} ⊙ fb_{l+1})`` below it (eqs. 10, 12, 14 of the paper).

    actions: ``(..., batch)``; feedback: ``[W′_2, …, W′_L]``, ``W′_{l+1}`` of shape ``(..., n_l, n_{l+1})``
    (the shape of ``W_{l+1}ᵀ``); gates: ``[g_1, …, g_{L−1}]``, ``(..., batch, n_l)`` (0/1, float or bool).
    """
    if len(feedback) != len(gates):
        raise ValueError(f"need one feedback matrix per hidden layer: got {len(feedback)} matrices and "
                         f"{len(gates)} gates")
    like = feedback[-1] if feedback else (gates[0] if gates else torch.empty(0))
    signals, _ = _feedback_pass(actions, actions.unsqueeze(-1), [B.mT for B in feedback], gates, n_actions,
                                like)
    return signals


def _feedback_pass(actions: Tensor, chosen: Tensor, backward: Sequence[Tensor], gates: Sequence[Tensor],
                   n_actions: int, like: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """:func:`feedback_signals` with the feedback matrices given in the forward shape, ``W′_{l+1}ᵀ`` (``W_{l+1}``
    itself for symmetric feedback, so no transpose is needed), the ``actions (..., batch)`` and the same as a
    column, ``chosen (..., batch, 1)``. Returns ``[fb_1, …, fb_L]`` and the gated activity ``[g_1 ⊙ fb_1, …,
    g_{L−1} ⊙ fb_{L−1}]`` (each product is formed once: it is what the feedback unit passes down, and three of
    the four factors of its synapses' update)."""
    z = torch.zeros(*chosen.shape[:-1], n_actions, dtype=like.dtype, device=like.device).scatter_(
        -1, chosen, 1.0)  # fb_L = z: (..., batch, n_L)
    signals, gated = [z], []
    if backward:
        top = backward[-1]  # W′_Lᵀ: (..., n_L, n_{L−1})
        # only the winner sends: fb_{L−1} is row s of W′_Lᵀ for each trial (a lookup, not the product W′_L z)
        signals.append(top[actions] if top.dim() == 2 and actions.dim() == 1 else z @ top)
        for layer in range(len(backward) - 1, -1, -1):  # hidden layers L−1, …, 1 (0-based index)
            gated.append(gates[layer] * signals[-1])  # g_l ⊙ fb_l: (..., batch, n_l)
            if layer > 0:
                signals.append(gated[-1] @ backward[layer - 1])  # fb_{l−1} = W′_l (g_l ⊙ fb_l)
    return signals[::-1], gated[::-1]


def four_factor_update(presynaptic: Tensor, gate: Tensor | None, feedback: Tensor, rpe: Tensor,
                       lr: float | Tensor = 1.0) -> Tensor:
    """The Q-AGREL change of every synapse of one layer, batch mean (eq. 13 of the paper):

    ``ΔW[j, i] = α · ⟨δ · pre_i · g_j · fb_j⟩_batch``

    presynaptic: ``h_{l−1}``, ``(..., batch, n_in)``; gate: ``g_l = ReLU′(a_l)``, ``(..., batch, n_out)`` (``None``
    for the linear output layer, where ``g = 1``); feedback: ``fb_l``, ``(..., batch, n_out)``; rpe: ``δ``,
    ``(..., batch)``; lr: ``α`` (a float, or a ``(K,)`` tensor for an ensemble). Returns ``ΔW_l``, ``(..., n_out, n_in)``; the
    feedback synapse ``W′_l`` changes by its transpose.
    """
    if isinstance(lr, Tensor) and lr.dim():  # one α per ensemble copy: (K,) → (K, 1)
        lr = lr.unsqueeze(-1)
    factor = (rpe * (lr / presynaptic.shape[-2])).unsqueeze(-1)  # α δ / batch: (..., batch, 1)
    post = factor * feedback if gate is None else factor * gate * feedback  # α δ g_j fb_j / batch: (..., batch, n_out)
    return post.mT @ presynaptic  # sum over the batch: (..., n_out, batch) @ (..., batch, n_in)


def _batch_mean_outer(post: Tensor, pre: Tensor) -> Tensor:
    """``⟨post preᵀ⟩_batch``: ``(..., batch, n_out)``, ``(..., batch, n_in)`` → ``(..., n_out, n_in)``.

    The division by the batch size is applied to the small factor, before the product, sparing a pass over the
    largest matrix of the network (``weight_gradients`` divides the product instead).
    """
    return (post / pre.shape[-2]).mT @ pre


def _add_grad(parameter: nn.Parameter, value: Tensor) -> None:
    """``parameter.grad += value`` (``value`` becomes ``.grad`` when there is none): like
    :func:`~credit_tutorial.propagation.accumulate_grad` with ``owned=True`` for a fresh tensor computed without
    autograd, minus its checks — this is the hot path of every step."""
    if parameter.grad is None:
        parameter.grad = value
    else:
        parameter.grad.add_(value)


def check_labels(target: Tensor, n_actions: int, name: str = "target") -> None:
    """Q-AGREL is rewarded for choosing the label: ``target`` must be integer labels in ``[0, n_actions − 1]``."""
    if target.is_floating_point():
        raise ValueError(f"{name} must be integer class labels (Q-AGREL is rewarded for choosing the label), "
                         f"got a floating tensor of shape {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_actions):
        raise ValueError(f"{name} labels must lie in [0, {n_actions - 1}] (one action per output unit), got "
                         f"values in [{int(target.min())}, {int(target.max())}]")


def check_exploration(epsilon, temperature) -> None:
    """``ε ∈ [0, 1]`` and ``T > 0`` (floats, or one finite value per ensemble copy)."""
    for name, value, ok, allowed in (("epsilon", epsilon, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
                                     ("temperature", temperature, lambda v: 0.0 < v < math.inf, "> 0 and finite")):
        values = value.flatten().tolist() if isinstance(value, Tensor) else (
            list(value) if isinstance(value, (list, tuple)) else [value])
        if not values:
            raise ValueError(f"{name} must be a number {allowed} or a non-empty list of them, got {value!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not ok(float(v)):
                raise ValueError(f"{name} must be {allowed}, got {v!r}")


# ---------------------------------------------------------------------------------------------------- objective
class SelectedActionSquaredError(Objective):
    """``½ δ²`` with ``δ = r − Q_s``: the squared reward-prediction error of the *selected* action only.

    ``target`` holds class labels. ``actions`` (``(..., batch)``) are the selected actions; without them the greedy
    action ``argmax Q`` is used (what evaluation measures). ``r`` does not depend on ``Q`` except through the
    (piecewise constant) choice of ``s``, so ``∂(½δ²)/∂Q = −δ · one_hot(s)``.
    """

    name = "½δ² on the selected action (δ = r − Q_s, r = 1 if correct)"

    def rpe(self, output: Tensor, target: Tensor, actions: Tensor | None = None) -> Tensor:
        """``δ = r − Q_s``, ``(..., batch)``."""
        check_labels(target, output.shape[-1])
        actions = output.argmax(dim=-1) if actions is None else actions
        return rewards(actions, target, output.dtype) - selected_values(output, actions)

    def per_sample(self, output: Tensor, target: Tensor, actions: Tensor | None = None) -> Tensor:
        return 0.5 * self.rpe(output, target, actions).square()

    def output_gradient(self, output: Tensor, target: Tensor, actions: Tensor | None = None) -> Tensor:
        actions = output.argmax(dim=-1) if actions is None else actions
        rpe = self.rpe(output, target, actions)
        return -rpe.unsqueeze(-1) * _one_hot(actions, output.shape[-1], output)  # −δ z


# ---------------------------------------------------------------------------------------------------- the rule
def _per_copy_option(name: str, value, ensemble_size: int | None) -> float | list[float]:
    """A float, or a list of one float per ensemble copy (a one-element list counts as a float)."""
    values = value.flatten().tolist() if isinstance(value, Tensor) else value
    if not isinstance(values, (list, tuple)):
        return float(values)
    if len(values) == 1:
        return float(values[0])
    if ensemble_size is None or len(values) != ensemble_size:
        raise ValueError(f"{name} lists {len(values)} values, but the network has {ensemble_size or 1} "
                         "copies: give one value, or one per ensemble copy")
    return [float(v) for v in values]


class QAGREL(CreditAssignmentRule):
    """Q-AGREL: max-Boltzmann choice, reward, ``δ = r − Q_s``, feedback from the chosen unit, four-factor updates.

    Parameters
    ----------
    network: an :class:`~credit_tutorial.MLP` with ReLU hidden layers and a linear (identity) output layer.
    objective: always ``½δ²`` on the selected action; ``"mse"`` (the configuration default, a squared error),
        ``"selected_action"``, ``None`` or a :class:`SelectedActionSquaredError` all mean this.
    generator: the rule's random stream (action choices; feedback weights in the learned/fixed modes); a list
        of K generators for an ensemble network.
    epsilon: exploration rate ``ε ∈ [0, 1]`` (float or one per ensemble copy). Default 0.025.
    temperature: Boltzmann temperature ``T > 0`` for exploratory choices (paper: 1).
    feedback: ``"symmetric"`` | ``"learned"`` | ``"fixed"`` (see the module docstring).
    feedback_init: the scheme for random ``W′`` (default: the network's own, e.g. ``U[−0.05, 0.05]``).
    """

    short_name = "qagrel"

    def __init__(self, network: MLP, objective: str | Objective | None = "mse", *,
                 generator: rng.Generators = None, epsilon: float | Sequence[float] = 0.025,
                 temperature: float | Sequence[float] = 1.0, feedback: str = "symmetric",
                 feedback_init: str | Init | None = None):
        if isinstance(objective, SelectedActionSquaredError) or objective in (None, "mse", "selected_action"):
            objective = objective if isinstance(objective, SelectedActionSquaredError) else SelectedActionSquaredError()
        else:
            raise ValueError("objective: Q-AGREL descends ½δ² on the selected action; pass 'mse' (the default), "
                             f"'selected_action' or a SelectedActionSquaredError, got {objective!r}")
        super().__init__(network, objective, generator=generator)
        hidden = [f.name for f in network.activations[:-1]]
        if any(name != "relu" for name in hidden):
            raise ValueError("network: Q-AGREL gates feedback with ReLU′ ∈ {0, 1}, so the hidden activation must "
                             f"be 'relu', got {sorted(set(hidden))}")
        if network.activations[-1].name != "identity":
            raise ValueError("network: Q-AGREL's outputs are linear Q-values, so the output activation must be "
                             f"'identity', got {network.activations[-1].name!r}")
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
        check_exploration(epsilon, temperature)
        self.epsilon = _per_copy_option("epsilon", epsilon, network.ensemble_size)
        self.temperature = _per_copy_option("temperature", temperature, network.ensemble_size)
        self.feedback_mode = feedback
        self.requirements = {"weight transport": feedback == "symmetric", "derivative of the nonlinearity": True,
                             "injected noise": False, "global reward only": True, "meta-learned prior": False}
        shapes = [(W.shape[-1], W.shape[-2]) for W in network.weights[1:]]  # W′_{l+1}: (n_l, n_{l+1})
        self.feedback = None
        if feedback != "symmetric":
            matrices = random_feedback(network, shapes, feedback_init, generator)
            self.feedback = (matrices if feedback == "fixed"
                             else nn.ParameterList([nn.Parameter(B.clone()) for B in matrices]))
        lead = () if network.ensemble_size is None else (network.ensemble_size,)
        reference = network.weights[0]
        # The training reward (read and reset by pop_reward_rate): each step only keeps a reference to its rewards
        # (no tensor operation in the hot path); they are summed into the buffers every _FOLD_EVERY steps, when
        # read, and before a state_dict is taken (so checkpoints resume exactly).
        self.register_buffer("reward_total", torch.zeros(lead, dtype=reference.dtype, device=reference.device))
        self.register_buffer("trial_total", torch.zeros(lead, dtype=reference.dtype, device=reference.device))
        self._pending_rewards: list[Tensor] = []
        self.register_state_dict_pre_hook(QAGREL._before_state_dict)
        self.register_load_state_dict_pre_hook(QAGREL._before_load_state_dict)

    # ------------------------------------------------------------------ feedback weights
    def feedback_matrices(self) -> list[Tensor]:
        """``[W′_2, …, W′_L]``, each of the shape of ``W_{l+1}ᵀ`` (``Wᵀ`` itself in the symmetric mode)."""
        if self.feedback is None:
            return [W.detach().mT for W in self.network.weight_list()[1:]]
        return [B.detach() for B in self.feedback]

    def feedback_parameters(self) -> list[nn.Parameter]:
        """The learned ``W′`` (empty unless ``feedback="learned"``): give them to the same optimizer as ``W``."""
        return list(self.feedback) if isinstance(self.feedback, nn.ParameterList) else []

    # ------------------------------------------------------------------ one batch
    def hidden_deltas(self, trace: Trace, output_delta: Tensor, derivatives: list[Tensor]) -> list[Tensor]:
        raise NotImplementedError("Q-AGREL chooses an action first: use compute_credit or step")

    def compute_credit(self, x: Tensor, target: Tensor, actions: Tensor | None = None) -> Credit:
        """Forward pass, action choice, reward, ``δ`` and the feedback activity for one batch; writes nothing.

        ``actions`` (``(..., batch)``) overrides the max-Boltzmann choice (then no random numbers are drawn).
        ``deltas[l−1] = −δ · g_l ⊙ fb_l`` is the rule's ``∂(½δ²)/∂a_l``; ``output_delta = −δ · one_hot(s)``.
        ``extras``: ``actions``, ``explored``, ``rewards``, ``rpe`` (``(..., batch)``), ``gates`` and ``feedback``
        (lists per layer; gates are boolean, and the output layer's is ``None``, i.e. 1).
        """
        if target.is_floating_point():
            check_labels(target, self.network.sizes[-1])  # raises: rewards need class labels
        with torch.no_grad():
            trace = self.network.trace(x)
            q = trace.output  # (..., batch, n_actions)
            if actions is None:
                actions, explored = _max_boltzmann(q, self.epsilon, self.temperature, self.generator)
            else:
                check_labels(actions, q.shape[-1], "actions")  # given actions must name output units
                actions, explored = actions.long(), torch.zeros(actions.shape, dtype=torch.bool, device=q.device)
            if actions.shape != q.shape[:-1]:
                actions = actions.expand(q.shape[:-1])
            chosen = actions.unsqueeze(-1)  # (..., batch, 1)
            reward = rewards(actions, target, q.dtype)  # r: (..., batch)
            minus_rpe = q.gather(-1, chosen) - reward.unsqueeze(-1)  # −δ = Q_s − r: (..., batch, 1)
            rpe = minus_rpe.squeeze(-1).neg()  # δ = r − Q_s: (..., batch)
            gates = [r.pre_activation > 0 for r in trace.layers[:-1]]  # ReLU′ ∈ {0, 1} (bool): (..., batch, n_l)
            signals, gated = _feedback_pass(actions, chosen, self._backward_matrices(), gates, q.shape[-1], q)
            deltas = [minus_rpe * g for g in gated] + [minus_rpe * signals[-1]]  # ∂(½δ²)/∂a_l = −δ g_l fb_l
            loss = torch.linalg.vecdot(rpe, rpe) * (0.5 / rpe.shape[-1])  # ⟨½δ²⟩: () or (K,)
        return Credit(trace=trace, output_delta=deltas[-1], deltas=deltas, loss=loss,
                      extras={"actions": actions, "explored": explored, "rewards": reward, "rpe": rpe,
                              "gates": gates + [None], "feedback": signals})

    def _backward_matrices(self) -> list[Tensor]:
        """``[W′_2ᵀ, …, W′_Lᵀ]`` in the shape of the forward weights (``W_l`` itself when feedback is symmetric)."""
        if self.feedback is None:  # called under no_grad: the parameters themselves, no copies
            return self.network.weight_list()[1:]
        return [B.mT for B in self.feedback]

    def write_gradients(self, credit: Credit) -> None:
        """``.grad = −ΔW/α``: the batch mean of the postsynaptic factors ``−δ g fb`` (``credit.deltas``, formed in
        :meth:`compute_credit`) times the presynaptic activity — the four-factor update of :func:`four_factor_update`,
        without forming the four-fold product twice. Learned ``W′`` get the transposed, i.e. the same, change."""
        network = self.network
        feedback = list(self.feedback) if isinstance(self.feedback, nn.ParameterList) else None
        for index, (record, delta, weight, bias) in enumerate(zip(credit.trace.layers, credit.deltas,
                                                                  network.weight_list(), network.bias_list())):
            grad = _batch_mean_outer(delta, record.presynaptic)  # ⟨(−δ g fb) preᵀ⟩: (..., n_out, n_in), fresh
            if index > 0 and feedback is not None:
                _add_grad(feedback[index - 1], grad.mT.clone())  # the feedback synapse: the same change
            _add_grad(weight, grad)
            if bias is not None:  # a bias is a synapse from a unit that is always 1: ⟨−δ g fb⟩
                _add_grad(bias, delta.mean(dim=-2))

    def step(self, x: Tensor, target: Tensor, *, validate: bool = True) -> Credit:
        """One batch of trials: choose, get rewarded, write ``.grad``. Call ``optimizer.step()`` after."""
        if validate:
            check_batch(self.network, x, target)
            check_labels(target, self.network.sizes[-1])
        credit = self.compute_credit(x, target)
        self.write_gradients(credit)
        self._pending_rewards.append(credit.extras["rewards"])
        if len(self._pending_rewards) >= _FOLD_EVERY:
            self._fold_rewards()
        return credit

    def _before_state_dict(self, prefix, keep_vars) -> None:
        self._fold_rewards()

    def _before_load_state_dict(self, *args) -> None:
        self._pending_rewards.clear()

    @torch.no_grad()
    def _fold_rewards(self) -> None:
        """Add the rewards of the steps since the last fold to the running totals."""
        if self._pending_rewards:
            rewarded = torch.cat(self._pending_rewards, dim=-1)  # (..., trials)
            self.reward_total += rewarded.sum(dim=-1)
            self.trial_total += rewarded.shape[-1]
            self._pending_rewards.clear()

    def pop_reward_rate(self) -> Tensor:
        """Fraction of rewarded trials since the last call (``()`` or ``(K,)``; NaN if none), then reset."""
        self._fold_rewards()
        rate = self.reward_total / self.trial_total
        self.reward_total.zero_()
        self.trial_total.zero_()
        return rate

    def divergence_hint(self) -> str:
        return " (Q-AGREL was stable at lr 0.5-1 with uniform ±0.05 initial weights in Pozzi et al.)"

    def extra_repr(self) -> str:
        return (f"feedback={self.feedback_mode}, epsilon={self.epsilon}, temperature={self.temperature}, "
                f"objective={self.objective.name}")
