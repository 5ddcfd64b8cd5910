"""Solution of book/assignments/a3_qagrel.ipynb. Instructors only."""

import torch


def four_factor_update(presynaptic, gate, feedback, rpe, lr):
    """ΔW[j, i] = α ⟨δ · pre_i · g_j · fb_j⟩ over the batch: (..., n_out, n_in)."""
    lr = torch.as_tensor(lr, dtype=presynaptic.dtype, device=presynaptic.device)
    if lr.dim() == 1:                                         # one α per copy: (K,) → (K, 1, 1)
        lr = lr.view(-1, 1, 1)
    post = rpe.unsqueeze(-1) * feedback                       # δ fb_j: (..., batch, n_out)
    if gate is not None:
        post = post * gate                                    # · g_j
    return lr * (post.mT @ presynaptic) / presynaptic.shape[-2]


def qagrel_update(weights, feedback, x, labels, actions, lr):
    """One Q-AGREL update for given actions: ([ΔW_1 … ΔW_L], [ΔW′_2 … ΔW′_L])."""
    h, gates = [x], []
    for l, W in enumerate(weights):                           # forward: ReLU hidden layers, linear Q-values
        a = h[-1] @ W.mT
        if l < len(weights) - 1:
            gates.append((a > 0).to(a.dtype))                 # g_l = ReLU′(a_l)
            a = torch.relu(a)
        h.append(a)
    q = h[-1]                                                 # (..., batch, n_actions)
    q_selected = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    rpe = (actions == labels).to(q.dtype) - q_selected        # δ = r − Q_s
    fb = [torch.nn.functional.one_hot(actions, q.shape[-1]).to(q.dtype)]  # fb_L = z
    for l in range(len(weights) - 1, 0, -1):                  # fb_{l} = W′_{l+1} (g_{l+1} ⊙ fb_{l+1})
        top = fb[0] if l == len(weights) - 1 else gates[l] * fb[0]
        fb.insert(0, top @ feedback[l - 1].mT)
    gates.append(None)                                        # the output layer has no gate
    dW = [four_factor_update(h[l], gates[l], fb[l], rpe, lr) for l in range(len(weights))]
    return dW, [d.mT for d in dW[1:]]
