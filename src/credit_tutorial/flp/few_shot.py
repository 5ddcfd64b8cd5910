"""Online few-shot classification episodes (Lindsey & Litwin-Kumar 2020, §5), from data available offline.

An N-way k-shot episode picks N classes from a pool, labels them 0..N−1 in random order, and shows k examples
of each *one at a time*, every example once: in ``"continual"`` order all examples of class 0, then of class 1,
…; in ``"iid"`` order shuffled. The test set holds ``n_query`` unseen examples of each class. Meta-training and
meta-testing pools have disjoint classes, so a meta-tested network meets classes it has never seen.

Omniglot and Mini-ImageNet cannot be downloaded here; :func:`mnist_pools` splits the embedded MNIST digits by
class (0–4 for meta-training, 5–9 for meta-testing), and :func:`load_omniglot` reads Omniglot from a directory
the user supplies (the standard ``images_background`` / ``images_evaluation`` layout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import rng
from .episode import Episode
from .sine import ORDERS, _positive_int


@dataclass(frozen=True, eq=False)
class ClassPool:
    """Examples grouped by class: ``images (n, d)`` floats, ``labels (n,)`` int64; episodes draw from ``classes``."""

    images: Tensor
    labels: Tensor
    classes: tuple[int, ...]
    source: str
    _table: Tensor = field(init=False, repr=False)   # (n_classes, max_count) example indices, −1 padded
    _counts: Tensor = field(init=False, repr=False)  # (n_classes,) examples per class

    def __post_init__(self):
        if not isinstance(self.images, Tensor) or self.images.dim() != 2 or not self.images.is_floating_point():
            raise ValueError("images must be a 2-D floating tensor (n, n_features)")
        if not isinstance(self.labels, Tensor) or self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},)")
        classes = tuple(int(c) for c in self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must list at least two distinct class ids, got {self.classes!r}")
        object.__setattr__(self, "classes", classes)
        members = [torch.nonzero(self.labels == c).flatten() for c in classes]
        empty = [c for c, m in zip(classes, members) if m.numel() == 0]
        if empty:
            raise ValueError(f"classes {empty} have no examples in {self.source}")
        counts = torch.tensor([m.numel() for m in members])
        table = torch.full((len(classes), int(counts.max())), -1, dtype=torch.int64)
        for row, m in enumerate(members):
            table[row, :m.numel()] = m
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_counts", counts)

    @property
    def n_features(self) -> int:
        return self.images.shape[1]

    def min_count(self) -> tuple[int, int]:
        """The smallest number of examples in any class of the pool, and that class."""
        row = int(self._counts.argmin())
        return int(self._counts[row]), self.classes[row]


def mnist_pools(meta_train_classes: Sequence[int] = (0, 1, 2, 3, 4),
                meta_test_classes: Sequence[int] = (5, 6, 7, 8, 9), root=None) -> tuple[ClassPool, ClassPool]:
    """Meta-training and meta-testing pools from MNIST (the embedded subset unless ``root`` holds full MNIST): all
    images of the given, disjoint classes (training and test splits together; the split is by class)."""
    from ..data import load_mnist

    train, test = set(meta_train_classes), set(meta_test_classes)
    if train & test:
        raise ValueError(f"meta-training and meta-testing classes must be disjoint, both hold {sorted(train & test)}")
    if not train.union(test) <= set(range(10)):
        raise ValueError("MNIST classes are 0..9")
    data = load_mnist(root=root)
    images = torch.cat([data.x_train, data.x_test])
    labels = torch.cat([data.y_train, data.y_test])
    return (ClassPool(images, labels, tuple(meta_train_classes), f"{data.source}, classes {sorted(train)}"),
            ClassPool(images, labels, tuple(meta_test_classes), f"{data.source}, classes {sorted(test)}"))


def few_shot_episode(pool: ClassPool, generator: rng.Generators, *, n_way: int = 5, k_shot: int = 5,
                     n_query: int = 5, order: str = "iid", meta_batch: int | None = None,
                     dtype: torch.dtype = torch.float32, device=None) -> Episode:
    """An online N-way k-shot episode from ``pool`` (K generators: K stacked episodes; ``meta_batch=M``: M each).

    Returns ``x_train (..., N·k, 1, d)``, ``y_train (..., N·k, 1)`` labels in ``[0, N)``, ``x_test (..., N·q, d)``;
    ``task_train``/``task_test`` hold the same labels; ``info["classes"] (..., N)`` the pool classes behind them,
    ``info["train_indices"]``/``info["test_indices"]`` the rows of ``pool.images`` shown.
    """
    n_way, k_shot, n_query = (_positive_int(n, v) for n, v in (("n_way", n_way), ("k_shot", k_shot),
                                                                ("n_query", n_query)))
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if n_way > len(pool.classes):
        raise ValueError(f"n_way = {n_way} exceeds the {len(pool.classes)} classes of the pool ({pool.source})")
    smallest, which = pool.min_count()
    if k_shot + n_query > smallest:
        raise ValueError(f"k_shot + n_query = {k_shot + n_query} exceeds the {smallest} examples of class {which} "
                         f"in {pool.source}")
    prefix = () if meta_batch is None else (_positive_int("meta_batch", meta_batch),)
    per_class = k_shot + n_query
    draw = dict(dtype=torch.float64)
    # N classes without replacement: the first N of a random permutation of the pool's classes
    rows = rng.uniform(prefix + (len(pool.classes),), generator, **draw).argsort(dim=-1)[..., :n_way]   # (..., N)
    # k + q distinct examples of each: sort random keys, padding slots (index −1) sorted last
    keys = rng.uniform(prefix + (n_way, pool._table.shape[1]), generator, **draw)
    table = pool._table[rows]                                                   # (..., N, max_count)
    keys = keys.masked_fill(table < 0, 2.0)
    picks = table.gather(-1, keys.argsort(dim=-1)[..., :per_class])            # (..., N, k + q)
    labels = torch.arange(n_way).unsqueeze(-1).expand(picks.shape)             # label = position among the N
    train_idx, test_idx = picks[..., :k_shot].flatten(-2), picks[..., k_shot:].flatten(-2)
    train_lab, test_lab = labels[..., :k_shot].flatten(-2), labels[..., k_shot:].flatten(-2)
    if order == "iid":
        perm = rng.uniform(prefix + (n_way * k_shot,), generator, **draw).argsort(dim=-1)
        train_idx, train_lab = train_idx.gather(-1, perm), train_lab.gather(-1, perm)
    classes = torch.tensor(pool.classes)[rows]
    info = {"classes": classes, "train_indices": train_idx, "test_indices": test_idx}   # rows of pool.images
    episode = Episode(x_train=pool.images[train_idx].unsqueeze(-2), y_train=train_lab.unsqueeze(-1),
                      x_test=pool.images[test_idx], y_test=test_lab.clone(), task_train=train_lab.clone(),
                      task_test=test_lab.clone(), kind="classification", n_outputs=n_way, info=info)
    return episode.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------------ Omniglot
OMNIGLOT_SPLITS = {"background": "images_background", "evaluation": "images_evaluation"}


def _read_image(path: Path, size: int, invert: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return 1.0 - pixels if invert else pixels


def load_omniglot(root: str | os.PathLike, *, image_size: int = 28, invert: bool = True) -> dict[str, ClassPool]:
    """Omniglot from a directory the user supplies, in the standard layout
    ``root/images_background/<alphabet>/<character>/*.png`` (and ``images_evaluation``).

    Every character is a class. Returns a :class:`ClassPool` per split present: ``"background"`` (meta-training)
    and ``"evaluation"`` (meta-testing), with images resized to ``image_size × image_size``, flattened, in [0, 1]
    and, with ``invert``, strokes = 1 on a 0 background (like MNIST). Class ids run over both splits.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Omniglot directory not found (or not a directory): {root}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 4 <= image_size <= 256:
        raise ValueError(f"image_size must be an integer in [4, 256], got {image_size!r}")
    present = {name: root / folder for name, folder in OMNIGLOT_SPLITS.items() if (root / folder).is_dir()}
    if not present:
        raise FileNotFoundError(f"{root} holds neither images_background/ nor images_evaluation/ (expected "
                                "root/images_background/<alphabet>/<character>/*.png)")
    pools, next_class = {}, 0
    for name, folder in present.items():
        characters = sorted(c for alphabet in sorted(folder.iterdir()) if alphabet.is_dir()
                            for c in sorted(alphabet.iterdir()) if c.is_dir())
        images, labels, classes = [], [], []
        for character in characters:
            files = sorted(character.glob("*.png"))
            if not files:
                continue
            images.extend(_read_image(f, image_size, invert) for f in files)
            labels.extend([next_class] * len(files))
            classes.append(next_class)
            next_class += 1
        if len(classes) < 2:
            raise ValueError(f"{folder} must hold at least two character folders with .png images, found "
                             f"{len(classes)}")
        pools[name] = ClassPool(torch.from_numpy(np.stack(images).reshape(len(images), -1)),
                                torch.tensor(labels, dtype=torch.int64), tuple(classes),
                                f"Omniglot {OMNIGLOT_SPLITS[name]} from {root} ({len(classes)} characters, "
                                f"{image_size}x{image_size})")
    return pools
