"""Data for the book: the embedded MNIST subset, full MNIST from IDX files or a verified download, and `Dataset`."""

from .dataset import Dataset
from .download import MNIST_MIRRORS, MNIST_SHA256, DownloadError, default_cache_dir, download_mnist
from .idx import read_idx
from .mnist import load_embedded_mnist, load_mnist, load_mnist_idx

__all__ = [
    "Dataset",
    "DownloadError",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "default_cache_dir",
    "download_mnist",
    "load_embedded_mnist",
    "load_mnist",
    "load_mnist_idx",
    "read_idx",
]
