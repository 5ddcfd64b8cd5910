import pytest
import torch

from credit_tutorial import rng
from credit_tutorial.data import Dataset


@pytest.fixture(autouse=True)
def deterministic_tests():
    """Tests may draw from torch's global generator; seed it per test so every run draws the same numbers.
    (The package itself never seeds globally: it takes explicit generators.)"""
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards. For modules of many small tensor operations (a module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``): on a busy 2-core machine, threads that
    synchronise around tiny products make such tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gen():
    """A fresh seeded generator."""
    return rng.make_generator(1234)


def make_classification(n_train=256, n_test=128, n_features=12, n_classes=4, seed=0, dtype=torch.float32):
    """A small learnable classification task: labels from a random linear teacher."""
    g = rng.make_generator(seed)
    teacher = torch.randn(n_features, n_classes, generator=g, dtype=dtype)
    x = torch.randn(n_train + n_test, n_features, generator=g, dtype=dtype)
    y = (x @ teacher).argmax(dim=-1)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], source="random linear teacher",
                   n_classes=n_classes)


@pytest.fixture
def small_task():
    return make_classification()
