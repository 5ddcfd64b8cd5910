"""Meta-learning runs from one configuration: sine-wave regression and online few-shot classification.

``meta_train(config, seeds=[0, 1, 2], orders=("iid", "continual"))`` meta-trains one learner per (order, seed) as
one ensemble computation (copy k = the single run with that seed and order); ``meta_test(run)`` scores fresh
meta-test episodes. Random streams per seed: ``init`` (initial meta-parameters) and ``data`` (meta-training
episodes) from :func:`credit_tutorial.experiment.stream`, and a separate meta-test stream, so two methods run with
the same seed start from the same initial weights and see the same episodes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Sequence

import torch

from .. import rng
from ..experiment import stream
from .episode import stack_episodes
from .few_shot import few_shot_episode, mnist_pools
from .learners import LEARNERS, MetaLearner
from .meta import Sampler, evaluate, meta_fit, meta_optimizer
from .sine import ORDERS, sine_episode

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_META_TEST_OFFSET = 3_000_009

#: the paper's regression setting (REFERENCE.md §B): 11→300×5→900→300→300→1, 400 inner steps, 20,000 episodes,
#: meta Adam lr 1e-4 for W, B and β. The authors start P at 0 and train the raw P with Adam at lr 1e-8, so P rises
#: by at most 1e-8 per meta-step. Here P = P₀ softplus(π)/ln 2 rises by at most P₀·lr/ln 2 per step: P₀ = 1e-8
#: (measured on this network: a lifetime with P₀ = 1e-8 has test MSE 10.7 against 10.0 without plasticity, while
#: P₀ = 1e-7 gives 136 and P₀ = 1e-6 NaN) and lr 0.7 give the same 1e-8 per step.
PAPER_SINE = dict(sizes=(11, 300, 300, 300, 300, 300, 900, 300, 300, 1), plastic_layers=3, n_tasks=10,
                  batches_per_task=40, batch_size=32, n_test_per_task=32, episodes=20_000, meta_batch=1,
                  lr=1e-4, lr_beta=1e-4, lr_plasticity=0.7, init_plasticity=1e-8, init_learning_rate=3e-3,
                  log_every=20)


@dataclass
class MetaConfig:
    """What every meta-learning run shares: the learner, its initial values and the meta-optimiser."""

    method: str = "flp"                       # flp | feature_reuse | gradient
    sizes: tuple[int, ...] = (11, 40, 40, 40, 1)
    plastic_layers: int = 2                   # feature reuse always uses 1
    episodes: int = 300                       # meta-steps
    meta_batch: int = 1                       # episodes per meta-step and copy
    lr: float = 3e-3                          # Adam on the initial weights and the feedback weights
    lr_beta: float | None = None              # Adam on β's logit (default: lr)
    lr_plasticity: float = 0.05               # Adam on the raw plasticity (FLP) or learning rate (gradient)
    init_plasticity: float | tuple[float, ...] = 1e-5   # P₀ (FLP, feature reuse), or one per plastic layer
    init_beta: float = 0.5
    init_learning_rate: float = 3e-3          # η₀ (gradient-based)
    max_grad_norm: float | None = 1.0         # per-copy clipping of the meta-gradient
    eval_episodes: int = 32
    log_every: int = 10
    device: str = "cpu"
    dtype: str = "float32"
    rule: str = "oja"                         # oja | hebb (FLP only)

    def __post_init__(self):
        self.sizes = tuple(self.sizes)
        if isinstance(self.init_plasticity, list):
            self.init_plasticity = tuple(self.init_plasticity)
        if self.method not in LEARNERS:
            raise ValueError(f"method must be one of {sorted(LEARNERS)}, got {self.method!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        for name in ("episodes", "meta_batch", "eval_episodes", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def sampler(self, orders: Sequence[str] | str, *, meta_batch: int | None = None, split: str = "train",
                device=None) -> Sampler:
        """``sample(generators) → Episode``; with a list of orders copy k gets its own order (stacked)."""
        if isinstance(orders, str):
            return lambda generator: self.episode(generator, orders, meta_batch, split, device)
        orders = list(orders)

        def sample(generators):
            if len(generators) != len(orders):
                raise ValueError(f"got {len(generators)} generators for {len(orders)} ensemble copies")
            return stack_episodes([self.episode(g, o, meta_batch, split, device) for g, o in zip(generators, orders)])
        return sample

    def episode(self, generator, order, meta_batch, split, device):
        raise NotImplementedError


@dataclass
class SineConfig(MetaConfig):
    """Incremental sine waves (:mod:`.sine`); the chapter's scale by default, :meth:`paper` for the full one."""

    n_tasks: int = 10
    batches_per_task: int = 2
    batch_size: int = 16
    n_test_per_task: int = 16

    def __post_init__(self):
        super().__post_init__()
        if self.sizes[0] != self.n_tasks + 1 or self.sizes[-1] != 1:
            raise ValueError(f"sizes must start with n_tasks + 1 = {self.n_tasks + 1} inputs and end with 1 output, "
                             f"got {self.sizes}")

    @classmethod
    def paper(cls, **overrides) -> "SineConfig":
        """The paper's full regression setting, with ``overrides``."""
        return cls(**{**PAPER_SINE, **overrides})

    def episode(self, generator, order, meta_batch, split, device):
        # sine functions are continuous: meta-test episodes are fresh draws (split does not matter)
        return sine_episode(generator, n_tasks=self.n_tasks, batches_per_task=self.batches_per_task,
                            batch_size=self.batch_size, n_test_per_task=self.n_test_per_task, order=order,
                            meta_batch=meta_batch, dtype=self.torch_dtype, device=device)


@lru_cache(maxsize=4)
def _pools(train_classes: tuple[int, ...], test_classes: tuple[int, ...]):
    return mnist_pools(train_classes, test_classes)


@dataclass
class FewShotConfig(MetaConfig):
    """Online N-way k-shot classification on MNIST digits, classes split between meta-training and meta-testing."""

    sizes: tuple[int, ...] = (784, 64, 32, 5)
    init_plasticity: float | tuple[float, ...] = (1e-3, 0.1)
    init_learning_rate: float = 0.1
    n_way: int = 5
    k_shot: int = 5
    n_query: int = 5
    meta_train_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    meta_test_classes: tuple[int, ...] = (5, 6, 7, 8, 9)

    def __post_init__(self):
        super().__post_init__()
        self.meta_train_classes, self.meta_test_classes = tuple(self.meta_train_classes), tuple(self.meta_test_classes)
        if self.sizes[0] != 784 or self.sizes[-1] != self.n_way:
            raise ValueError(f"sizes must start with 784 inputs and end with n_way = {self.n_way} outputs, "
                             f"got {self.sizes}")

    def episode(self, generator, order, meta_batch, split, device):
        train_pool, test_pool = _pools(self.meta_train_classes, self.meta_test_classes)
        return few_shot_episode(train_pool if split == "train" else test_pool, generator, n_way=self.n_way,
                                k_shot=self.k_shot, n_query=self.n_query, order=order, meta_batch=meta_batch,
                                dtype=self.torch_dtype, device=device)


def make_learner(config: MetaConfig, generator: rng.Generators, device=None) -> MetaLearner:
    """The configured learner (an ensemble when ``generator`` is a list)."""
    common = dict(generator=generator, dtype=config.torch_dtype, device=device)
    if config.method == "gradient":
        return LEARNERS["gradient"](config.sizes, config.plastic_layers,
                                    init_learning_rate=config.init_learning_rate, **common)
    plasticity = config.init_plasticity
    options = dict(init_beta=config.init_beta, rule=config.rule, **common)
    if config.method == "feature_reuse":   # the readout's P₀ (the last one, when one is given per layer)
        readout = plasticity[-1] if isinstance(plasticity, tuple) else plasticity
        return LEARNERS["feature_reuse"](config.sizes, init_plasticity=readout, **options)
    if isinstance(plasticity, tuple):
        plasticity = plasticity[-config.plastic_layers:]
    return LEARNERS["flp"](config.sizes, config.plastic_layers, init_plasticity=plasticity, **options)


@dataclass
class MetaRun:
    """A meta-trained learner (one ensemble copy per (order, seed)), its history and how it was made."""

    config: MetaConfig
    learner: MetaLearner
    history: dict
    seeds: list[int]
    orders: list[str]          # one per copy
    copy_seeds: list[int]      # one per copy
    results: dict = field(default_factory=dict)

    def copies(self, order: str) -> list[int]:
        """Indices of the ensemble copies meta-trained on ``order``."""
        return [k for k, o in enumerate(self.orders) if o == order]

    def sampler(self, order: str | None = None, *, meta_batch: int | None = None, split: str = "test") -> Sampler:
        """Episodes shaped for this run's ensemble: each copy its own order, or ``order`` for every copy."""
        orders = self.orders if order is None else [order] * len(self.orders)
        if self.learner.ensemble_size is None:
            orders = orders[0]
        return self.config.sampler(orders, meta_batch=meta_batch, split=split,
                                   device=next(self.learner.parameters()).device)

    def meta_test_generators(self):
        """Fresh generators of the meta-test stream, one per copy (the same episodes for every method)."""
        if self.learner.ensemble_size is None:
            return rng.make_generator(self.copy_seeds[0] + _META_TEST_OFFSET)
        return [rng.make_generator(s + _META_TEST_OFFSET) for s in self.copy_seeds]


def _copies(seeds: Sequence[int], orders: Sequence[str] | str):
    orders = [orders] if isinstance(orders, str) else list(orders)
    if not orders or any(o not in ORDERS for o in orders):
        raise ValueError(f"orders must be a non-empty list from {ORDERS}, got {orders!r}")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    return [o for o in orders for _ in seeds], [s for _ in orders for s in seeds]


def prepare(config: MetaConfig, seeds: Sequence[int] = (0,), orders: Sequence[str] | str = ("iid",), device=None):
    """Run record, optimizer, meta-training sampler and data generators, before any meta-step. One ensemble copy
    per (order, seed) pair, orders outermost; a single pair gives no ensemble."""
    copy_orders, copy_seeds = _copies(seeds, orders)
    single = len(copy_orders) == 1
    init = stream(copy_seeds[0], "init") if single else [stream(s, "init") for s in copy_seeds]
    data = stream(copy_seeds[0], "data") if single else [stream(s, "data") for s in copy_seeds]
    learner = make_learner(config, init, device=device)
    optimizer = meta_optimizer(learner, lr=config.lr, lr_plasticity=config.lr_plasticity, lr_beta=config.lr_beta)
    meta_batch = None if config.meta_batch == 1 else config.meta_batch
    sample = config.sampler(copy_orders[0] if single else copy_orders, meta_batch=meta_batch, split="train",
                            device=device)
    run = MetaRun(config, learner, {}, list(seeds), copy_orders, copy_seeds)
    return run, optimizer, sample, data


def meta_train(config: MetaConfig, seeds: Sequence[int] = (0, 1, 2), orders: Sequence[str] | str = ("iid", "continual"),
               *, progress: bool = False, device=None, checkpoint=None, checkpoint_every: int | None = None,
               resume: bool = False) -> MetaRun:
    """Meta-train ``config.method``, one ensemble copy per (order, seed); see :func:`prepare`."""
    run, optimizer, sample, data = prepare(config, seeds, orders, device=device)
    run.history = meta_fit(run.learner, optimizer, sample, episodes=config.episodes, generator=data,
                           log_every=config.log_every, progress=progress, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, resume=resume, max_grad_norm=config.max_grad_norm)
    return run


def meta_test(run: MetaRun, *, order: str | None = None, episodes: int | None = None, meta_batch: int = 8,
              **lifetime_options) -> dict[str, list[float]]:
    """Meta-test loss (MSE or cross-entropy) and, for classification, error per copy on fresh meta-test episodes
    (each copy on its own order unless ``order`` is given): ``{"loss": [K], "sd": [K], "error": [K], "episodes"}``."""
    episodes = run.config.eval_episodes if episodes is None else episodes
    meta_batch = max(1, min(meta_batch, episodes))
    result = evaluate(run.learner, run.sampler(order, meta_batch=None if meta_batch == 1 else meta_batch),
                      run.meta_test_generators(), max(1, episodes // meta_batch), **lifetime_options)
    losses = result["losses"]                                            # (n, [K])
    sd = losses.std(dim=0) if losses.shape[0] > 1 else torch.zeros_like(result["loss"])
    out = {"loss": result["loss"].reshape(-1).tolist(), "sd": sd.reshape(-1).tolist(), "episodes": losses.shape[0]}
    if "error" in result:
        out["error"] = result["error"].reshape(-1).tolist()
    return out


def presets() -> dict[str, MetaConfig]:
    """Named configurations: the chapter's live runs and the longer runs whose results ship with the package.

    - ``sine-chapter``: 5 sinusoids × 6 batches × 16 points (30 inner steps), 6→32→32→32→1 with 2 plastic layers,
      300 meta-steps — what chapter 11 meta-trains while it executes;
    - ``sine-medium``: the same setting, 5,000 meta-steps (``python -m credit_tutorial.flp.reproduce compare``);
    - ``fewshot-chapter``: 5-way 5-shot MNIST, 784→64→32→5 with 2 plastic layers, 100 meta-steps;
    - ``sine-paper``: the paper's setting (:data:`PAPER_SINE`).
    """
    sine = SineConfig(sizes=(6, 32, 32, 32, 1), plastic_layers=2, n_tasks=5, batches_per_task=6, batch_size=16,
                      n_test_per_task=16, episodes=300, lr=3e-3, lr_plasticity=0.05, init_plasticity=1e-5,
                      init_learning_rate=3e-3, max_grad_norm=1.0, eval_episodes=64, log_every=20)
    from dataclasses import replace
    return {"sine-chapter": sine,
            "sine-medium": replace(sine, episodes=5000, log_every=50),
            "fewshot-chapter": FewShotConfig(episodes=100, log_every=10, eval_episodes=64),
            "sine-paper": SineConfig.paper()}
