"""What a meta-learned learner does inside a lifetime (Lindsey & Litwin-Kumar 2020, Fig. 2B–D).

- :func:`update_statistics`: per step and plastic layer, the size of the weight update and its cosine with the
  negative gradient of the inner loss on the same batch at the same weights (Fig. 2C, 2D);
- :func:`interference`: in a continual episode, how much the outputs on earlier sub-tasks change while the network
  learns the next one (Fig. 2B).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .episode import Episode
from .learners import MetaLearner
from .lifetime import predict, task_loss, weight_gradients


def _flat(t: Tensor) -> Tensor:
    return t.flatten(start_dim=-2)


@torch.no_grad()
def update_statistics(learner: MetaLearner, episode: Episode, **lifetime_options) -> dict[str, Tensor]:
    """Run one lifetime and record, for every step t and plastic layer l (lowest first):

    ``update_norm`` ``‖ΔW_l‖_F``, ``gradient_norm`` ``‖∂ℓ/∂W_l‖_F`` and ``cosine`` ``cos(ΔW_l, −∂ℓ/∂W_l)`` with
    ``ℓ`` the task loss of the step's batch; each ``(T, ..., n_plastic)``. Also ``batch_loss`` ``(T, ...)``.
    """
    records = {"update_norm": [], "gradient_norm": [], "cosine": [], "batch_loss": []}
    biases = learner._fit(learner.biases, episode)[-learner.n_plastic:]

    def observe(t, weights, h, y, result):
        output, grads = weight_gradients(weights, biases, h, y, kind=episode.kind, n_layers=learner.n_plastic)
        updates = [_flat(u) for u in result.updates]
        negative = [-_flat(g) for g in grads]
        u_norm = torch.stack([u.norm(dim=-1) for u in updates], dim=-1)
        g_norm = torch.stack([g.norm(dim=-1) for g in negative], dim=-1)
        dots = torch.stack([(u * g).sum(dim=-1) for u, g in zip(updates, negative)], dim=-1)
        records["update_norm"].append(u_norm)
        records["gradient_norm"].append(g_norm)
        records["cosine"].append(dots / (u_norm * g_norm).clamp_min(1e-30))
        records["batch_loss"].append(task_loss(output, y, episode.kind))

    learner.lifetime(episode, observe=observe, **lifetime_options)
    return {key: torch.stack(values) for key, values in records.items()}


def _blocks(task_train: Tensor) -> list[tuple[int, int]]:
    """``(first_step, task)`` at every change of sub-task; the same for every copy, else an error."""
    flat = task_train.reshape(-1, task_train.shape[-1])
    if not bool((flat == flat[:1]).all()):
        raise ValueError("interference needs the same sub-task order in every copy (use continual episodes)")
    order = flat[0].tolist()
    starts = [0] + [t for t in range(1, len(order)) if order[t] != order[t - 1]]
    tasks = [order[t] for t in starts]
    if len(set(tasks)) != len(tasks):
        raise ValueError("interference needs each sub-task in one contiguous block (continual order)")
    return list(zip(starts, tasks))


@torch.no_grad()
def interference(learner: MetaLearner, episode: Episode, **lifetime_options) -> Tensor:
    """Mean squared change of the outputs on the test points of all earlier sub-tasks, from just before to just
    after the network trains on sub-task k, for k = 2, 3, … (continual episodes); ``(..., n_tasks − 1)``."""
    blocks = _blocks(episode.task_train)
    starts = {start for start, _ in blocks}
    snapshots = {}
    n_frozen = learner.n_layers - learner.n_plastic
    biases = learner._fit(learner.biases, episode)

    def observe(t, weights, h, y, result):
        if t in starts:
            snapshots[t] = list(weights)

    final = learner.lifetime(episode, observe=observe, **lifetime_options)
    frozen = final[:n_frozen]
    boundaries = [snapshots[start] for start, _ in blocks] + [final[n_frozen:]]
    outputs = [predict(frozen + plastic, biases, episode.x_test) for plastic in boundaries]  # (..., n_test, n_out)
    changes = []
    for index in range(1, len(blocks)):
        earlier = torch.zeros_like(episode.task_test, dtype=torch.bool)
        for _, task in blocks[:index]:
            earlier |= episode.task_test == task
        squared = (outputs[index + 1] - outputs[index]).square().mean(dim=-1)               # (..., n_test)
        weight = earlier.to(squared.dtype)
        changes.append((squared * weight).sum(dim=-1) / weight.sum(dim=-1))
    return torch.stack(changes, dim=-1)
