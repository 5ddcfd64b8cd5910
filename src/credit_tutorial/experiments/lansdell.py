"""``reproduce fig2`` and ``reproduce fig3``: the MNIST and bottleneck-autoencoder experiments of Lansdell, Prakash &
Kording at their settings (REFERENCE.md §A), plus the autoencoder helpers that chapter 6 uses.

Figure 2: 784-50-20-10 sigmoid network, linear output, squared error, SGD (η = 4e-4 on the batch *sum*, i.e. 0.0128
on the batch mean used here), batch 32, 2·10⁶ iterations; backprop, feedback alignment and learned feedback (exact
ridge, γ = 0.1, one warm-up epoch) at the noise levels c ∈ {1e-4, 1e-3, 1e-2, 1e-1}, the four noise levels trained as
one ensemble (same initial weights, data order and noise draws, only c differs).

Figure 3: the 784-200-2-200-784 autoencoder (tanh, linear bottleneck, tanh, ReLU output), squared reconstruction
error, SGD (η = 1e-4 on the batch sum, 3.2e-3 on the batch mean), batch 32, 10⁶ iterations; backprop, feedback
alignment, learned feedback (SGD on B, η_B = 8e-6 on the batch sum, c = 0.018942 on the hidden layers) and backprop
with Adam (learning rate 1.41e-4, the authors' configuration ``nodepert_ae5_adam``). The paper reports the minimum
test loss as ½·SSE per batch of 32; the result records it in that unit as well.

Deviations from the authors' code are listed in :data:`FIG2_DEVIATIONS` / :data:`FIG3_DEVIATIONS` and saved in the
result file.
"""

from __future__ import annotations

import math
import platform
import time

import torch
from torch import Tensor

from .. import __version__, reproduce
from ..checkpoint import save_json
from ..data import Dataset, load_mnist
from ..device import resolve_device
from ..experiment import TrainConfig, build
from ..metrics import compare_with_backprop, feedback_report
from ..networks import MLP
from ..node_perturbation import estimate, estimate_layerwise
from ..objectives import Objective, get_objective
from ..propagation import backprop_deltas
from ..training import fit

# ------------------------------------------------------------------------------------------------ settings
#: Figure 2 (REFERENCE.md §A, "learned W" row). ``lr`` is per batch *mean*: the authors' 4e-4 on the batch sum × 32.
FIG2 = {
    "sizes": (784, 50, 20, 10), "hidden_activation": "sigmoid", "output_activation": "identity",
    "objective": "mse", "lr": 4e-4 * 32, "batch_size": 32, "steps": 2_000_000, "n_train": 55_000,
    "noise_levels": (1e-4, 1e-3, 1e-2, 1e-1), "feedback": "ridge", "gamma": 0.1, "warmup_epochs": 1,
    "eval_every": 20_000,
}
#: Figure 3 (REFERENCE.md §A, autoencoder row; the authors' configuration ``nodepert_ae5_sgd_correctgeom``).
FIG3 = {
    "sizes": (784, 200, 2, 200, 784), "hidden_activation": ["tanh", "identity", "tanh"],
    "output_activation": "relu", "objective": "mse", "lr": 1e-4 * 32, "adam_lr": 1.411275857690097e-4,
    "batch_size": 32, "steps": 1_000_000, "n_train": 55_000, "c": 0.018942, "feedback": "sgd",
    "feedback_lr": 8e-6, "feedback_init": "random", "eval_every": 10_000,
}
#: ``--quick``: the same code paths on a few hundred samples for a few steps (a smoke test, not a result)
QUICK = {"n_train": 256, "n_test": 128, "steps": 6, "eval_every": 3, "warmup_steps": 2, "autoencoder_hidden": 16}

#: the paper's reported numbers (REFERENCE.md §A, read from the authors' saved notebook outputs)
PAPER_FIG2 = {"test_error": {"bp": 0.0265, "fa": 0.0428, "np c=0.0001": 0.0351, "np c=0.001": 0.0351,
                             "np c=0.01": 0.0364, "np c=0.1": 0.159}}
PAPER_FIG3 = {"min_test_loss_per_batch_of_32": {"np": 515, "bp": 610, "fa": 759, "adam": 538}}

FIG2_DEVIATIONS = [
    "biases start at 0 (the authors' code: random, as an extra row of W)",
    "SGD on the batch-mean gradient with lr 0.0128 = 4e-4 x 32, the same step as 4e-4 on the batch sum",
    "full MNIST: the first 55,000 of the 60,000 training images in the package's fixed shuffled order "
    "(the authors used TensorFlow's 55,000/5,000/10,000 split); the embedded 8,000/2,000 subset when full MNIST "
    "is not available",
    "the four noise levels are trained as one ensemble that shares initial weights, data order and standard-normal "
    "noise draws; the authors trained them separately",
    "angles are averaged over a fixed batch of 512 test images (the authors' code used the first sample of a "
    "training batch and folded angles to [0, 90] degrees)",
]
FIG3_DEVIATIONS = [
    "200 hidden units for every rule, as the paper's text says; the authors' node-perturbation model class built "
    "784-50-2-50-784",
    "biases start at 0 (the authors: 0.1)",
    "SGD on the batch-mean gradient with lr 3.2e-3 = 1e-4 x 32 (the same step as 1e-4 on the batch sum); "
    "the feedback learning rate 8e-6 applies to the batch sum, as in the authors' code",
    "the output error of the ReLU output layer uses the derivative 0 at a = 0, as autograd",
    "full MNIST: the first 55,000 training images in the package's fixed shuffled order",
]


# ------------------------------------------------------------------------------------------------ autoencoder helpers
def autoencoding(data: Dataset) -> Dataset:
    """The same images as inputs and as regression targets (``x ↦ x``), for a squared reconstruction error."""
    return Dataset(data.x_train, data.x_train.clone(), data.x_test, data.x_test.clone(),
                   source=f"{data.source}; autoencoding (targets = inputs)")


def bottleneck_index(network: MLP) -> int:
    """0-based index of the narrowest hidden layer (the first one if several are equally narrow)."""
    hidden = network.sizes[1:-1]
    if not hidden:
        raise ValueError(f"network {'-'.join(map(str, network.sizes))} has no hidden layer, so no bottleneck")
    return min(range(len(hidden)), key=lambda i: (hidden[i], i))


@torch.no_grad()
def latent_codes(network: MLP, x: Tensor, *, layer: int | None = None) -> Tensor:
    """The activity of the bottleneck layer (or of hidden layer ``layer``, 0-based) for inputs ``x``.

    x: ``(n, n_in)``; returns ``(n, k)``, or ``(K, n, k)`` for an ensemble of K networks.
    """
    index = bottleneck_index(network) if layer is None else layer
    if not 0 <= index < network.n_layers - 1:
        raise ValueError(f"layer must be a hidden layer index in [0, {network.n_layers - 2}], got {layer!r}")
    return network.trace(x).layers[index].activity


@torch.no_grad()
def knn_accuracy(train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor,
                 *, k: int = 10) -> Tensor:
    """How well the codes separate the classes: accuracy of a ``k``-nearest-neighbour vote in code space.

    Codes are standardised per dimension with the training codes' mean and standard deviation first, so the score
    does not depend on the scale of each latent unit. Codes ``(..., n, d)`` (a leading ensemble dimension gives one
    accuracy per copy); labels ``(n,)``. Chance level is the frequency of the commonest class (about 0.1 on MNIST).
    """
    if not (isinstance(k, int) and 1 <= k <= train_codes.shape[-2]):
        raise ValueError(f"k must be an integer in [1, {train_codes.shape[-2]}] (the number of training codes), "
                         f"got {k!r}")
    if train_labels.shape[-1] != train_codes.shape[-2] or test_labels.shape[-1] != test_codes.shape[-2]:
        raise ValueError("one label per code is needed: got "
                         f"{train_labels.shape[-1]} labels for {train_codes.shape[-2]} training codes and "
                         f"{test_labels.shape[-1]} for {test_codes.shape[-2]} test codes")
    mean = train_codes.mean(dim=-2, keepdim=True)
    scale = train_codes.std(dim=-2, keepdim=True).clamp_min(1e-12)
    train, test = (train_codes - mean) / scale, (test_codes - mean) / scale
    distances = torch.cdist(test, train)                              # (..., n_test, n_train)
    neighbours = distances.topk(k, dim=-1, largest=False).indices     # (..., n_test, k)
    votes = torch.nn.functional.one_hot(train_labels[neighbours], int(train_labels.max()) + 1).sum(dim=-2)
    predicted = votes.argmax(dim=-1)                                  # ties go to the smaller label
    return (predicted == test_labels).to(train_codes.dtype).mean(dim=-1)


def select_copies(history: dict, copies) -> dict:
    """The part of an ensemble's history that belongs to the given copies (a list of indices, or one index).

    Every recorded value of an ensemble is a list of K floats (per-layer metrics: one such list per layer); the
    result keeps, in the same layout, only the chosen copies, so the plotting functions show just those runs.
    Scalars (``step``, ``epoch``, ``seconds``) are kept as they are.
    """
    indices = [copies] if isinstance(copies, int) else list(copies)

    def pick(value):
        if isinstance(value, list) and value and isinstance(value[0], list):
            return [pick(item) for item in value]
        if isinstance(value, list):
            if any(not 0 <= i < len(value) for i in indices):
                raise ValueError(f"copies {indices} out of range for an ensemble of {len(value)}")
            return [value[i] for i in indices]
        return value

    return {key: [pick(entry) for entry in values] for key, values in history.items()}


def single_copy(network: MLP, copy: int) -> MLP:
    """Copy ``copy`` of an ensemble network as a stand-alone network (same weights, dtype and device)."""
    size = network.ensemble_size
    if size is None:
        raise ValueError("network is not an ensemble: it has no copies to pick from")
    if isinstance(copy, bool) or not isinstance(copy, int) or not 0 <= copy < size:
        raise ValueError(f"copy must be an integer in [0, {size - 1}], got {copy!r}")
    reference = network.weights[0]
    single = MLP(network.sizes, [f.name for f in network.activations[:-1]], network.activations[-1].name,
                 bias=network.has_bias, init="normal", generator=torch.Generator(device=reference.device),
                 dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        for target, source in zip(single.parameters(), network.parameters()):
            target.copy_(source[copy])
    return single


@torch.no_grad()
def feedback_learnability(network: MLP, objective: str | Objective, x: Tensor, target: Tensor, *, c: float,
                          generator: torch.Generator, draws: int = 32, perturb: str = "together",
                          batch_size: int = 32) -> dict[str, list[float]]:
    """How hard is it to learn each feedback matrix ``B_{l+1}`` by regressing ``λ̂_l`` on ``δ_{l+1}``, here and now?

    For every hidden layer ``l`` (lists ordered l = 1..L−1), on the inputs ``x`` of a single network:

    - ``gradient_power``: ``⟨‖∂L/∂h_l‖²⟩`` over the samples (the signal the regression must find);
    - ``noise_to_signal``: ``⟨‖λ̂_l − ∂L/∂h_l‖²⟩ / ⟨‖∂L/∂h_l‖²⟩``, from ``draws`` noise draws per sample at noise
      level ``c`` (``perturb`` as in the rule: all hidden layers at once, or one at a time);
    - ``dimension``, ``effective_rank`` and ``rank99`` of the regressor: the width of ``δ_{l+1}``, the participation
      ratio ``(Σμ)²/Σμ²`` of the eigenvalues ``μ`` of ``C = ⟨δ_{l+1}δ_{l+1}ᵀ⟩`` (backprop's errors), and how many
      eigen-directions hold 99 % of its variance — assumption A3 asks for full rank;
    - ``sgd_bound``: ``2 / (batch_size · μ_max)``, the largest feedback learning rate η_B for which SGD on B
      (``B ← B − η_B Σ_b (Bδ_b − λ̂_b)δ_bᵀ``) is stable on average, and ``slowest_steps``: ``1 / (η_B μ_i)`` at
      η_B = half that bound for the direction ``rank99`` (how many steps that direction needs to be learned).
    """
    if network.ensemble_size is not None:
        raise ValueError("feedback_learnability takes a single network (use single_copy for an ensemble)")
    if perturb not in ("together", "layerwise"):
        raise ValueError(f"perturb must be 'together' or 'layerwise', got {perturb!r}")
    if not (isinstance(draws, int) and draws >= 2):
        raise ValueError(f"draws must be an integer ≥ 2, got {draws!r}")
    objective = get_objective(objective)
    trace = network.trace(x)
    derivatives = network.derivatives(trace)
    output_delta = derivatives[-1] * objective.output_gradient(trace.output, target)
    deltas = backprop_deltas(list(network.weights), derivatives, output_delta)
    hidden = range(network.n_layers - 1)
    gradients = [deltas[l + 1] @ network.weights[l + 1] for l in hidden]   # ∂L/∂h_l = W_{l+1}ᵀ δ_{l+1}, (n, n_l)
    seeds = torch.randint(0, 2**62, (draws,), generator=generator).tolist()
    generators = [torch.Generator(device=x.device).manual_seed(s) for s in seeds]
    if perturb == "together":
        lambdas = estimate(network, objective, trace, target, [c] * draws, generators).lambdas
    else:
        lambdas = estimate_layerwise(network, objective, trace, target, [c] * draws, generators)
    report: dict[str, list[float]] = {key: [] for key in ("gradient_power", "noise_to_signal", "dimension",
                                                          "effective_rank", "rank99", "sgd_bound", "slowest_steps")}
    for l in hidden:
        power = gradients[l].square().sum(dim=-1).mean()
        noise = (lambdas[l] - gradients[l]).square().sum(dim=-1).mean()
        regressor = deltas[l + 1].double()
        mu = torch.linalg.eigvalsh(regressor.mT @ regressor / regressor.shape[-2]).flip(0).clamp_min(0.0)
        share = mu.cumsum(0) / mu.sum()
        rank99 = int((share < 0.99).sum()) + 1
        bound = 2.0 / (batch_size * mu[0].item())
        report["gradient_power"].append(power.item())
        report["noise_to_signal"].append((noise / power).item())
        report["dimension"].append(regressor.shape[-1])
        report["effective_rank"].append((mu.sum() ** 2 / mu.square().sum()).item())
        report["rank99"].append(rank99)
        report["sgd_bound"].append(bound)
        report["slowest_steps"].append(1.0 / (0.5 * bound * batch_size * max(mu[rank99 - 1].item(), 1e-300)))
    return report


def alignment_metric(x: Tensor, target: Tensor):
    """A ``fit`` metric: angles of every hidden layer's error signal to backprop's on the fixed batch ``(x, target)``
    (``delta_angle``, ``update_angle``), and the feedback matrices' ``relative_error`` and ``sign_congruence``."""
    def metric(rule, data):
        values = compare_with_backprop(rule, x, target)
        values.update(feedback_report(rule))
        return values
    return metric


# ------------------------------------------------------------------------------------------------ the runs
def _json_safe(value):
    """NaN/inf → None (an angle is undefined while a learned B is still zero); JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _mnist(data_root: str | None, n_train: int, quick: bool) -> Dataset:
    data = load_mnist(root=data_root)
    if quick:
        return data.subset(QUICK["n_train"], QUICK["n_test"])
    return data.subset(n_train=min(n_train, data.n_train))


def _train(name: str, config: TrainConfig, data: Dataset, *, seeds, steps: int, eval_every: int, metric, out,
           device, progress: bool, resume: bool, checkpoint_every: int | None) -> tuple[dict, float]:
    rule, optimizer, data_gen = build(config, seeds=seeds, device=device)
    started = time.perf_counter()
    history = fit(rule, optimizer, data, steps=steps, batch_size=config.batch_size, generator=data_gen,
                  eval_every=eval_every, metrics={"alignment": metric}, progress=progress,
                  checkpoint=reproduce.checkpoint_path(out).with_suffix(f".{name}.ckpt"),
                  checkpoint_every=checkpoint_every or eval_every, resume=resume)
    return history, time.perf_counter() - started


def _record(experiment: str, command: str, quick: bool, seed: int, device, data: Dataset, settings: dict,
            deviations: list[str], paper: dict, final: dict, runs: dict) -> dict:
    return {
        "experiment": experiment, "command": command, "quick": quick, "seed": seed, "device": str(device),
        "data": data.source, "n_train": data.n_train, "n_test": data.n_test,
        "settings": _json_safe({k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}),
        "deviations": deviations, "paper": paper, "final": _json_safe(final), "runs": _json_safe(runs),
        "versions": {"credit_tutorial": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


@reproduce.register("fig2")
def reproduce_fig2(out, *, device: str, seed: int, resume: bool, progress: bool, quick: bool,
                   data_root: str | None, checkpoint_every: int | None, command: str) -> dict:
    """Figure 2: BP, FA and learned feedback at four noise levels on MNIST; writes ``out`` (JSON)."""
    device = resolve_device(device)
    settings = dict(FIG2)
    data = _mnist(data_root, settings["n_train"], quick).to(device)
    steps = QUICK["steps"] if quick else settings["steps"]
    eval_every = QUICK["eval_every"] if quick else settings["eval_every"]
    steps_per_epoch = math.ceil(data.n_train / settings["batch_size"])
    warmup = QUICK["warmup_steps"] if quick else settings["warmup_epochs"] * steps_per_epoch
    settings.update(steps=steps, eval_every=eval_every, warmup_steps=warmup)
    metric = alignment_metric(data.x_test[:512], data.y_test[:512])
    common = dict(sizes=settings["sizes"], hidden_activation=settings["hidden_activation"],
                  output_activation=settings["output_activation"], objective=settings["objective"],
                  lr=settings["lr"], batch_size=settings["batch_size"], seed=seed, device=str(device))
    levels = list(settings["noise_levels"])
    plans = {
        "bp": (TrainConfig(rule="bp", **common), None),
        "fa": (TrainConfig(rule="fa", **common), None),
        "np": (TrainConfig(rule="np", rule_options={"c": levels, "feedback": settings["feedback"],
                                                     "gamma": settings["gamma"], "warmup_steps": warmup}, **common),
               [seed] * len(levels)),
    }
    runs, final = {}, {}
    for name, (config, seeds) in plans.items():
        history, seconds = _train(name, config, data, seeds=seeds, steps=steps, eval_every=eval_every, metric=metric,
                                  out=out, device=device, progress=progress, resume=resume,
                                  checkpoint_every=checkpoint_every)
        runs[name] = {"rule_options": config.rule_options, "history": history, "wall_seconds_this_session": seconds}
        if seeds is None:
            final[name] = {key: history[key][-1] for key in ("test_error", "train_error", "delta_angle",
                                                               "relative_error", "sign_congruence")}
        else:  # one entry per noise level
            for k, c in enumerate(levels):
                final[f"np c={c:g}"] = {"test_error": history["test_error"][-1][k],
                                        "train_error": history["train_error"][-1][k],
                                        **{key: [layer[k] for layer in history[key][-1]]
                                           for key in ("delta_angle", "relative_error", "sign_congruence")}}
    result = _record("fig2", command, quick, seed, device, data, settings, FIG2_DEVIATIONS, PAPER_FIG2, final, runs)
    save_json(result, out)
    return result


@reproduce.register("fig3")
def reproduce_fig3(out, *, device: str, seed: int, resume: bool, progress: bool, quick: bool,
                   data_root: str | None, checkpoint_every: int | None, command: str) -> dict:
    """Figure 3: the bottleneck autoencoder trained by BP, FA, learned feedback and Adam; writes ``out`` (JSON)."""
    device = resolve_device(device)
    settings = dict(FIG3)
    images = _mnist(data_root, settings["n_train"], quick)
    data = autoencoding(images).to(device)
    if quick:
        hidden = QUICK["autoencoder_hidden"]
        settings["sizes"] = (784, hidden, 2, hidden, 784)
    steps = QUICK["steps"] if quick else settings["steps"]
    eval_every = QUICK["eval_every"] if quick else settings["eval_every"]
    settings.update(steps=steps, eval_every=eval_every)
    probe = data.x_test[:256]
    metric = alignment_metric(probe, probe)
    common = dict(sizes=settings["sizes"], hidden_activation=settings["hidden_activation"],
                  output_activation=settings["output_activation"], objective=settings["objective"],
                  batch_size=settings["batch_size"], seed=seed, device=str(device))
    np_options = {"c": settings["c"], "feedback": settings["feedback"], "feedback_lr": settings["feedback_lr"],
                  "feedback_init": settings["feedback_init"]}
    plans = {
        "bp": TrainConfig(rule="bp", lr=settings["lr"], **common),
        "fa": TrainConfig(rule="fa", lr=settings["lr"], **common),
        "np": TrainConfig(rule="np", lr=settings["lr"], rule_options=np_options, **common),
        "adam": TrainConfig(rule="bp", optimizer="adam", lr=settings["adam_lr"], **common),
    }
    batch = settings["batch_size"]
    runs, final = {}, {}
    for name, config in plans.items():
        history, seconds = _train(name, config, data, seeds=None, steps=steps, eval_every=eval_every, metric=metric,
                                  out=out, device=device, progress=progress, resume=resume,
                                  checkpoint_every=checkpoint_every)
        runs[name] = {"optimizer": config.optimizer, "lr": config.lr, "rule_options": config.rule_options,
                      "history": history, "wall_seconds_this_session": seconds}
        final[name] = {"test_loss": history["test_loss"][-1], "min_test_loss": min(history["test_loss"]),
                       "min_test_loss_per_batch_of_32": batch * min(history["test_loss"]),
                       "delta_angle": history["delta_angle"][-1]}
    result = _record("fig3", command, quick, seed, device, data, settings, FIG3_DEVIATIONS, PAPER_FIG3, final, runs)
    save_json(result, out)
    return result
