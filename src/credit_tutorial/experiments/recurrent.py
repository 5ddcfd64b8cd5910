"""``reproduce fig4``: the delayed-XOR recurrent network of Lansdell, Prakash & Kording at their settings.

Figure 4 (REFERENCE.md §A, the authors' script ``cosyneruns_rnn_np.py``): 2 inputs → 50 tanh units → 1 linear
output, squared error, truncated BPTT over windows of 7 steps, 200 parallel streams, one epoch = 10⁶ time steps
(5,000 per stream), 200 epochs; SGD with the same step for every rule, 5e-6 on the batch *sum* (1e-3 on the batch
mean used here); learned feedback by SGD on B (η_B = 5e-5 on the sum), noise std c = 0.5 on 10 % of the units, B
alone learning for the first 4 epochs. Rules: truncated BPTT, feedback alignment through time, learned feedback
through time (done right: noise at step t paired with (e_t, δ_{t+1}), divided by the variance actually added), and
the readout-only control. Three seeds (``--seed`` and the next two) train together as one ensemble.

Deviations from the authors' script are listed in :data:`FIG4_DEVIATIONS` and saved in the result file.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from .. import __version__, reproduce, rng
from ..checkpoint import save_json
from ..device import resolve_device
from ..metrics import summarize
from ..recurrent import StreamConfig, train_rule

#: Figure 4 at the authors' settings. ``lr`` is per batch *mean*: the authors' 5e-6 on the batch sum × 200 streams.
FIG4 = {
    "n_hidden": 50, "n_streams": 200, "epoch_length": 5000, "window": 7, "input_lags": (3, 2), "cue_lag": 1,
    "mean_gap": 20.0, "epochs": 200, "lr": 5e-6 * 200, "c": 0.5, "perturbed_fraction": 0.1, "feedback": "sgd",
    "feedback_lr": 5e-5, "feedback_init": "random", "warmup_epochs": 4, "n_seeds": 3,
    "eval_streams": 100, "eval_length": 1000, "rules": ("bptt", "fa", "np", "readout"),
}
#: ``--quick``: the same code path on tiny streams for a few windows (a smoke test, not a result)
QUICK = {**FIG4, "n_streams": 8, "epoch_length": 21, "epochs": 2, "warmup_epochs": 1, "eval_streams": 6,
         "eval_length": 30}

FIG4_DEVIATIONS = [
    "trials never overlap (responses at least 4 steps apart, mean gap 20 = the script's go-cue rate 0.05); the "
    "script drew go cues independently, so overlapping trials could overwrite each other's bits",
    "learned feedback pairs the noise added to h_t with (e_t, delta_(t+1)), the errors of the quantities h_t "
    "affects; the script paired it with delta_t",
    "node-perturbation estimates are divided by the variance of the noise actually added, p c^2 = 0.025; the "
    "script divided by c^2 although only 10 % of the units were perturbed",
    "the node-perturbation estimate of step t uses the loss change of steps >= t only (same mean, lower variance); "
    "the script paired each step's loss change with the noise of every earlier step separately",
    "feedback alignment and learned feedback replace both W_rec^T and the readout's V^T; the script kept V^T "
    "exact in the backward pass",
    "weights drawn from N(0, 2/(fan_in + fan_out)) (the variance of the script's Glorot-uniform initialiser), "
    "biases 0; random feedback with the variance of the weights it replaces (the script: N(0, 1))",
    "the same SGD step for every rule on the window-sum loss (the script's BPTT took a step 7 times smaller, on "
    "the mean over the window's steps); no clipping of the feedback update (the script clipped it to +-10)",
    "three seeds trained as one ensemble (the script: 10 runs one after another)",
]


def _rule_options(name: str, settings: dict, warmup_steps: int) -> dict:
    if name != "np":
        return {}
    return {"c": settings["c"], "perturbed_fraction": settings["perturbed_fraction"], "feedback": settings["feedback"],
            "feedback_lr": settings["feedback_lr"], "feedback_init": settings["feedback_init"],
            "warmup_steps": warmup_steps}


def _final(history: dict) -> dict:
    """Mean ± sd over seeds of the last evaluation (angles are None for the readout-only control: no errors)."""
    out = {}
    for key in ("test_loss", "test_accuracy", "recurrent_update_angle"):
        values = history[key][-1]
        if None in values:
            out[key] = None
            continue
        mean, sd = summarize(values)
        out[key] = {"mean": mean, "sd": sd, "per_seed": values}
    per_step = history["delta_angle"][-1]  # [seed][step]
    out["delta_angle_per_step"] = None if any(None in seed for seed in per_step) else \
        [summarize([seed[t] for seed in per_step])[0] for t in range(len(per_step[0]))]
    return out


def _train_rule(name, settings, config, seeds, evaluation, warmup_steps, device, checkpoint, checkpoint_every,
                resume, progress) -> dict:
    """One rule, the seeds as one ensemble, from the same initial weights and streams as every other rule."""
    history, _ = train_rule(name, seeds, config, epochs=settings["epochs"], lr=settings["lr"],
                            n_hidden=settings["n_hidden"], device=device, evaluation=evaluation, progress=progress,
                            progress_desc=f"fig4 {name}", checkpoint=checkpoint,
                            checkpoint_every=checkpoint_every or config.windows_per_epoch, resume=resume,
                            **_rule_options(name, settings, warmup_steps))
    return history


@reproduce.register("fig4")
def fig4(out: Path, *, device: str = "auto", seed: int = 0, resume: bool = False, progress: bool = True,
         quick: bool = False, data_root: str | None = None, checkpoint_every: int | None = None,
         command: str = "") -> dict:
    """Train BPTT, FA, learned feedback and the readout-only control on delayed XOR; write the JSON result."""
    del data_root  # the task is generated, nothing is read
    settings = QUICK if quick else FIG4
    device = resolve_device(device)
    seeds = [seed + k for k in range(settings["n_seeds"])]
    config = StreamConfig(n_streams=settings["n_streams"], epoch_length=settings["epoch_length"],
                          window=settings["window"], input_lags=settings["input_lags"], cue_lag=settings["cue_lag"],
                          mean_gap=settings["mean_gap"])
    evaluation = config.stream(rng.make_generator(seed + 3_000_009, device), length=settings["eval_length"],
                               n_streams=settings["eval_streams"], device=device)
    warmup_steps = settings["warmup_epochs"] * config.windows_per_epoch
    checkpoint = reproduce.checkpoint_path(out)
    histories, started = {}, time.time()
    threads = torch.get_num_threads()
    if device.type == "cpu":  # the matrices are tiny: one thread is fastest (and much faster on a busy machine)
        torch.set_num_threads(1)
    try:
        for name in settings["rules"]:
            histories[name] = _train_rule(name, settings, config, seeds, evaluation, warmup_steps, device,
                                          checkpoint.with_suffix(f".{name}.ckpt"), checkpoint_every, resume, progress)
    finally:
        torch.set_num_threads(threads)
    result = {
        "experiment": "fig4", "command": command, "quick": quick, "seeds": seeds, "device": str(device),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "deviations": FIG4_DEVIATIONS, "histories": histories,
        "final": {name: _final(history) for name, history in histories.items()},
        "wall_seconds": time.time() - started,
        "versions": {"credit_tutorial": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    save_json(result, out)
    return result
