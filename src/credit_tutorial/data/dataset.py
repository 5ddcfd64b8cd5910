"""A train/test pair of tensors: the one container every task and loader in the package returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


def _check_count(name: str, value, limit: int) -> int:
    """Return `value` as an int in [1, limit], or raise naming the argument and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in [1, {limit}] or None, got {value!r}")
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must be in [1, {limit}] (the number of examples available), got {value}")
    return value


@dataclass(frozen=True, repr=False, eq=False)
class Dataset:
    """Training and test examples, one example per row.

    Classification: `y` is int64 class labels of shape (n,), and `n_classes` says how many classes there are.
    Regression: `y` is floating, shape (n, n_targets) (or (n,)), and `n_classes` is None.
    The rows are in a fixed, pre-shuffled order, so `subset(n)` (the first n rows) is a fair sample.
    """

    x_train: torch.Tensor  # (n_train, n_features) float
    y_train: torch.Tensor  # (n_train,) int64, or (n_train, n_targets) float
    x_test: torch.Tensor  # (n_test, n_features) float
    y_test: torch.Tensor  # (n_test,) int64, or (n_test, n_targets) float
    source: str  # human-readable: which data this is and where it came from
    n_classes: int | None = None

    def __post_init__(self) -> None:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise TypeError(f"Dataset.{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"Dataset.source must be a non-empty string, got {self.source!r}")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2 or not x.is_floating_point():
                raise ValueError(
                    f"Dataset.x_{split} must be a 2-D floating tensor (n_{split}, n_features), "
                    f"got shape {tuple(x.shape)} and dtype {x.dtype}"
                )
            if x.shape[0] == 0:
                raise ValueError(f"Dataset.x_{split} has no rows: a dataset needs at least one {split} example")
            if y.shape[:1] != x.shape[:1]:
                raise ValueError(
                    f"Dataset.y_{split} must have one row per row of x_{split} ({x.shape[0]}), "
                    f"got shape {tuple(y.shape)}"
                )
            classification = y.dtype == torch.int64 and y.ndim == 1
            regression = y.is_floating_point() and y.ndim in (1, 2)
            if not (classification or regression):
                raise ValueError(
                    f"Dataset.y_{split} must be int64 labels of shape (n,) or floating targets of shape "
                    f"(n, n_targets), got shape {tuple(y.shape)} and dtype {y.dtype}"
                )
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(
                f"x_train has {self.x_train.shape[1]} features but x_test has {self.x_test.shape[1]}"
            )
        if self.y_train.dtype != self.y_test.dtype or self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise ValueError(
                f"y_train and y_test must agree in dtype and trailing shape, got {self.y_train.dtype} "
                f"{tuple(self.y_train.shape)} and {self.y_test.dtype} {tuple(self.y_test.shape)}"
            )
        if self.n_classes is not None:
            if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 2:
                raise ValueError(f"Dataset.n_classes must be an int >= 2 or None, got {self.n_classes!r}")
            if self.y_train.dtype != torch.int64:
                raise ValueError(f"Dataset.n_classes is set, so y must be int64 labels, got {self.y_train.dtype}")
            for split in ("train", "test"):
                y = getattr(self, f"y_{split}")
                low, high = int(y.min()), int(y.max())
                if low < 0 or high >= self.n_classes:
                    raise ValueError(
                        f"Dataset.y_{split} labels must lie in [0, {self.n_classes - 1}] "
                        f"(n_classes={self.n_classes}), found values in [{low}, {high}]"
                    )

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Dataset:
        """A copy on `device` (None: where it is); `dtype` (a floating dtype) applies to x and to float y only."""
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
        if device is not None and not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a str, a torch.device or None, got {device!r}")

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first `n_train` training and first `n_test` test examples (None keeps all of that split)."""
        n_train = self.n_train if n_train is None else _check_count("n_train", n_train, self.n_train)
        n_test = self.n_test if n_test is None else _check_count("n_test", n_test, self.n_test)
        if n_train == self.n_train and n_test == self.n_test:
            return self
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            source=f"{self.source}; first {n_train:,} train / {n_test:,} test",
        )

    def __repr__(self) -> str:
        if self.n_classes is not None:
            y_desc = f"n_classes={self.n_classes}"
        else:
            y_desc = f"n_targets={self.y_train.shape[1] if self.y_train.ndim == 2 else 1}"
        return (
            f"Dataset({self.source!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"n_features={self.n_features}, {y_desc}, dtype={self.x_train.dtype}, device={self.x_train.device})"
        )
