"""Solution of book/assignments/a4_flp_oja.ipynb. Instructors only."""

import torch


def oja_update(weight, pre, post, plasticity):
    """ΔW = P ⊙ (yᵀx − diag(Σ_b y²) W), summed over the batch."""
    decay = post.square().sum(dim=-2).unsqueeze(-1) * weight  # Σ_b y_bi² W_ij
    return plasticity * (post.mT @ pre - decay)


def flp_step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind):
    """One FLP lifetime step: the new weights [W_1, …, W_L]."""
    h = [x]
    for l, (W, b) in enumerate(zip(weights, biases)):
        a = h[-1] @ W.mT + b.unsqueeze(-2)
        h.append(a if l == len(weights) - 1 else torch.relu(a))
    output = h[-1]
    if kind == "regression":
        e = y - output
    else:
        e = torch.nn.functional.one_hot(y, output.shape[-1]).to(output.dtype)
    first = len(weights) - len(plasticity)
    new = list(weights[:first])
    for i, l in enumerate(range(first, len(weights))):
        f = torch.relu(e @ feedback[i].mT + feedback_bias[i].unsqueeze(-2))   # f_l = ReLU(B_l e + c_l)
        if l == len(weights) - 1 and kind == "classification":
            z = e                                                             # clamped to onehot(y)
        else:
            z = beta[i] * f + (1 - beta[i]) * h[l + 1]                        # z_l = β f + (1 − β) h
        new.append(weights[l] + oja_update(weights[l], h[l], z, plasticity[i]))
    return new
