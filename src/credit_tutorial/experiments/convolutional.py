"""``reproduce cnn``: the convolutional experiment of Lansdell, Prakash & Kording (later version), at its settings.

The paper's network (REFERENCE.md §A; read in the authors' script ``cifar10_conv_np.py``): three 5×5 tanh
convolutions with 96, 128 and 256 channels, each followed by a 3×3/2 max-pool, then dense tanh layers of
2048 and 2048 units and a linear output; the output error ``e = softmax(ŷ) − y`` reaches every hidden layer
through a direct feedback matrix ``B_l``; Adam with learning rate 4.8e-6 for ``W``; ``B_l`` learned by SGD with
η_B = 8.3e-6 on the batch sum; node-perturbation noise c = 0.067; batch 128; 200 epochs. Reported: 75.1 % test
accuracy on CIFAR-10 (best of a random search).

Here the same network is trained with backprop, fixed random direct feedback and learned direct feedback, from
the same initial weights. CIFAR-10 cannot be downloaded in this project's environment, so the default data are
MNIST (full MNIST when it is in the cache or ``--data-root`` holds its IDX files, else the embedded subset);
``--data-root`` pointing at the CIFAR-10 *python version* directory (``data_batch_1`` … ``test_batch``) runs on
CIFAR-10. Deviations from the authors' script are listed in :data:`DEVIATIONS` and recorded in the result.
"""

from __future__ import annotations

import math
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__, reproduce
from ..checkpoint import save_json
from ..convolutional import CONV_RULES, ConvNet, angle_metric
from ..data import Dataset, load_mnist
from ..device import resolve_device
from ..experiment import stream
from ..training import fit

#: the paper's settings (REFERENCE.md §A, CIFAR-10 CNN row; architecture from the authors' script)
PAPER = {
    "channels": (96, 128, 256), "kernel_size": 5, "stride": 2, "padding": 2, "hidden": (2048, 2048),
    "activation": "tanh", "objective": "cross_entropy", "optimizer": "adam", "lr": 4.8e-6,
    "feedback": "sgd", "feedback_lr": 8.3e-6, "feedback_init": "random", "c": 0.067, "perturb": "together",
    "batch_size": 128, "epochs": 200,
}
#: ``--quick``: the same code path on a small network and a small subset, a few steps
QUICK = {"channels": (4, 8, 8), "hidden": (16, 16), "n_train": 256, "n_test": 128, "steps": 4}
RULE_ORDER = ("bp", "dfa", "np")

DEVIATIONS = [
    "stride-2 convolutions (5x5, padding 2) in place of 5x5 stride-1 convolutions followed by 3x3/2 max-pooling: "
    "the layer sizes (28->14->7->4 on MNIST, 32->16->8->4 on CIFAR-10) match the paper's, 4x4x256 = 4096 inputs to fc1",
    "no dropout (the authors used 0.5) and biases start at 0 (the authors used 0.1)",
    "lambda-hat is computed from the same loss the network descends (softmax cross-entropy), consistent with the "
    "output error e = softmax(y_hat) - y; the authors' script sent e = softmax - y but computed lambda-hat from "
    "1/2 ||softmax - y||^2",
    "every hidden layer's B_l regresses the noise of that same layer's activity; in the authors' script fc1's "
    "feedback was never learned and fc2's B regressed the noise on fc1's activity",
    "Adam epsilon 1e-8 on batch-mean gradients (the authors: 1e-5)",
    "MNIST by default: CIFAR-10 cannot be downloaded here (pass --data-root with the CIFAR-10 python version)",
]


# ---------------------------------------------------------------------------------------------------- CIFAR-10
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = "test_batch"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch file but refuses every global except numpy's array reconstruction."""

    def find_class(self, module, name):
        allowed = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch file")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, whatever its module is called
        if module == "_codecs":  # bytes in a protocol-2 pickle written by Python 3
            import codecs
            return codecs.encode
        return getattr(np, name)


def cifar10_directory(root: str | Path) -> Path | None:
    """``root`` or ``root/cifar-10-batches-py`` if it holds the CIFAR-10 python-version batch files, else None."""
    for candidate in (Path(root), Path(root) / "cifar-10-batches-py"):
        if all((candidate / name).is_file() for name in [*_CIFAR_TRAIN, _CIFAR_TEST]):
            return candidate
    return None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        content = _BatchUnpickler(handle, encoding="bytes").load()
    if not isinstance(content, dict) or b"data" not in content or b"labels" not in content:
        raise ValueError(f"{path} is not a CIFAR-10 python-version batch (no 'data'/'labels' entries)")
    images, labels = np.asarray(content[b"data"]), np.asarray(content[b"labels"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072 or labels.shape != images.shape[:1]:
        raise ValueError(f"{path}: expected uint8 images of shape (n, 3072) and one label each, got "
                         f"{images.dtype} {images.shape} and {labels.shape[0]} labels")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels must lie in [0, 9]")
    return images, labels


def _standardize(images: np.ndarray) -> torch.Tensor:
    """Per-image standardisation as in the authors' script: ``(x − mean) / max(std, 1/√n)``, (n, 3072) float32."""
    x = torch.from_numpy(images.astype(np.float32))
    std = x.std(dim=1, unbiased=False, keepdim=True).clamp_min(1 / math.sqrt(x.shape[1]))
    return (x - x.mean(dim=1, keepdim=True)) / std


def load_cifar10(root: str | Path) -> Dataset:
    """CIFAR-10 from the python-version batch files in ``root``: 50,000/10,000 images, flattened (3, 32, 32)."""
    directory = cifar10_directory(root)
    if directory is None:
        raise FileNotFoundError(f"no CIFAR-10 python-version files ({', '.join(_CIFAR_TRAIN)}, {_CIFAR_TEST}) "
                                f"in {root} or {Path(root) / 'cifar-10-batches-py'}")
    train = [_read_batch(directory / name) for name in _CIFAR_TRAIN]
    test_images, test_labels = _read_batch(directory / _CIFAR_TEST)
    return Dataset(_standardize(np.concatenate([t[0] for t in train])),
                   torch.from_numpy(np.concatenate([t[1] for t in train])),
                   _standardize(test_images), torch.from_numpy(test_labels),
                   source=f"CIFAR-10 from {directory} (per-image standardised)", n_classes=10)


def load_data(data_root: str | None) -> tuple[Dataset, tuple[int, int, int]]:
    """CIFAR-10 when ``data_root`` holds it; otherwise MNIST (``load_mnist``). Returns the data and image shape."""
    if data_root is not None and cifar10_directory(data_root) is not None:
        return load_cifar10(data_root), (3, 32, 32)
    return load_mnist(root=data_root), (1, 28, 28)


# ---------------------------------------------------------------------------------------------------- the run
def _json_safe(value):
    """NaN/inf → None (an angle is NaN while a learned B is still zero); JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _rule_options(name: str, settings: dict) -> dict:
    if name != "np":
        return {}
    return {key: settings[key] for key in ("c", "feedback", "feedback_lr", "feedback_init", "perturb")}


@reproduce.register("cnn")
def reproduce_cnn(out, *, device: str, seed: int, resume: bool, progress: bool, quick: bool,
                  data_root: str | None, checkpoint_every: int | None, command: str) -> dict:
    """Backprop, fixed direct feedback and learned direct feedback on the paper's CNN; writes ``out`` (JSON)."""
    device = resolve_device(device)
    data, image_shape = load_data(data_root)
    settings = dict(PAPER)
    if quick:
        settings.update(channels=QUICK["channels"], hidden=QUICK["hidden"])
        data = data.subset(min(QUICK["n_train"], data.n_train), min(QUICK["n_test"], data.n_test))
    data = data.to(device)
    probe = (data.x_test[:256], data.y_test[:256])  # fixed batch for the angles to backprop
    steps_per_epoch = math.ceil(data.n_train / settings["batch_size"])
    length = {"steps": QUICK["steps"]} if quick else {"epochs": settings["epochs"]}
    every = checkpoint_every or steps_per_epoch
    base_checkpoint = reproduce.checkpoint_path(out)

    rules, final = {}, {}
    for name in RULE_ORDER:
        network = ConvNet(image_shape, settings["channels"], settings["kernel_size"], settings["stride"],
                          settings["padding"], settings["hidden"], data.n_classes, settings["activation"],
                          generator=stream(seed, "init", device), device=device)  # same start for every rule
        rule = CONV_RULES[name](network, settings["objective"], generator=stream(seed, "rule", device),
                                **_rule_options(name, settings))
        optimizer = torch.optim.Adam(network.parameters(), lr=settings["lr"])
        started = time.perf_counter()
        history = fit(rule, optimizer, data, **length, batch_size=settings["batch_size"],
                      generator=stream(seed, "data", device), metrics={"angles": angle_metric(*probe)},
                      progress=progress, checkpoint=base_checkpoint.with_suffix(f".{name}.ckpt"),
                      checkpoint_every=every, resume=resume)
        rules[name] = {"rule": type(rule).__name__, "options": _rule_options(name, settings),
                       "history": _json_safe(history), "wall_seconds_this_session": time.perf_counter() - started}
        final[name] = _json_safe({"test_error": history["test_error"][-1],
                                  "test_accuracy": 1.0 - history["test_error"][-1],
                                  "train_error": history["train_error"][-1],
                                  "delta_angle": history["delta_angle"][-1],
                                  "update_angle": history["update_angle"][-1]})

    result = {
        "experiment": "cnn", "command": command, "quick": quick, "seed": seed, "device": str(device),
        "data": data.source, "image_shape": list(image_shape),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "length": length, "layers": network.layer_names(),
        "deviations": DEVIATIONS,
        "paper": {"dataset": "CIFAR-10", "test_accuracy_learned_feedback": 0.751},
        "final": final, "rules": rules,
        "versions": {"credit_tutorial": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    save_json(result, out)
    return result
