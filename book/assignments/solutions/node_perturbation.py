"""Solution of book/assignments/a1_node_perturbation.ipynb. Instructors only."""

import torch

from credit_tutorial import rng


def perturbation_estimate(clean_loss, noisy_loss, noise, c):
    """λ̂ = (L̃ − L) ξ / c²: losses (..., batch), noise (..., batch, n), c a float or (K,) → (..., batch, n)."""
    c = torch.as_tensor(c, dtype=noise.dtype, device=noise.device)
    if c.dim() == 1:                                          # one noise level per copy: (K,) → (K, 1, 1)
        c = c.view(-1, 1, 1)
    return (noisy_loss - clean_loss).unsqueeze(-1) * noise / c.square()


def noisy_estimate(network, objective, x, target, c, generator):
    """[λ̂_1, …, λ̂_{L−1}] from one clean and one noisy pass with noise on every hidden layer."""
    with torch.no_grad():
        clean = network.trace(x)
        noise = []
        for record in clean.layers[:-1]:                      # hidden layers 1 … L−1, in order
            h = record.activity
            shape = h.shape[1:] if rng.is_ensemble(generator) else h.shape
            noise.append(rng.normal(shape, generator, std=c, dtype=h.dtype, device=h.device))
        noisy = network.trace(x, noise=noise + [None])        # ξ_l is added after the nonlinearity
        clean_loss = objective.per_sample(clean.output, target)
        noisy_loss = objective.per_sample(noisy.output, target)
    return [perturbation_estimate(clean_loss, noisy_loss, xi, c) for xi in noise]
