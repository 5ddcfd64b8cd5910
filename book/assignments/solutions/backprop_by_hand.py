"""Solution of the warm-up assignment (book/assignments/a0_backprop_by_hand.ipynb). Instructors only."""

import torch


def backprop_by_hand(weights, biases, x, y_onehot):
    """Batch-mean gradients of ½‖ŷ − y‖² for sigmoid hidden layers and a linear output; ensemble-ready."""
    h = [x]                                                   # h[l]: activity of layer l, (..., batch, n_l)
    for l, (W, b) in enumerate(zip(weights, biases)):
        a = h[-1] @ W.mT + b.unsqueeze(-2)                    # a_l = W_l h_{l-1} + b_l
        h.append(torch.sigmoid(a) if l < len(weights) - 1 else a)
    batch = x.shape[-2]
    delta = h[-1] - y_onehot                                  # δ_L = ŷ − y (linear output)
    grads = []
    for l in reversed(range(len(weights))):
        grads.insert(0, (delta.mT @ h[l] / batch, delta.mean(dim=-2)))  # ⟨δ_l h_{l-1}ᵀ⟩, ⟨δ_l⟩
        if l > 0:
            delta = (delta @ weights[l]) * h[l] * (1 - h[l])  # δ_{l-1} = f'(a_{l-1}) ⊙ W_lᵀ δ_l
    return grads
