"""Meta-learning runs from one configuration: sine-wave regression and online few-shot classification.

``meta_train(config, seeds=[0, 1, 2], orders=("iid", "continual"))`` meta-trains one learner per (order, seed) as
one ensemble computation (copy k = the single run with that seed and order); ``meta_test(run)`` scores fresh
meta-test episodes. Random streams per seed: ``init`` (initial meta-parameters) and ``data`` (meta-training
episodes) from :func:`credit_tutorial.experiment.stream`, and a separate meta-test stream, so two methods run with
the same seed start from the same initial weights and see the same episodes.
"""

from __future__ import annotations

import math
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
#: validation episodes: drawn like meta-training episodes (same task distribution, meta-training classes for
#: few-shot) but from their own stream, for choosing settings without ever looking at meta-test episodes
_VALIDATION_OFFSET = 1_000_003
STREAMS = ("test", "validation")

#: the paper's regression setting (REFERENCE.md §B): 11→300×5→900→300→300→1, 400 inner steps, 20,000 episodes,
#: meta Adam lr 1e-4 for W, B and β. The authors start P at 0 and train the raw P with Adam at lr 1e-8, so P rises
#: by at most 1e-8 per meta-step. Here P = P₀ softplus(π)/ln 2 rises by at most P₀·lr/ln 2 per step: P₀ = 1e-8
#: (measured on this network: a lifetime with P₀ = 1e-8 has test MSE 10.7 against 10.0 without plasticity, while
#: P₀ = 1e-7 gives 136 and P₀ = 1e-6 NaN) and lr 0.7 give the same 1e-8 per step.
PAPER_SINE = dict(sizes=(11, 300, 300, 300, 300, 300, 900, 300, 300, 1), plastic_layers=3, n_tasks=10,
                  batches_per_task=40, batch_size=32, n_test_per_task=32, episodes=20_000, meta_batch=1,
                  lr=1e-4, lr_beta=1e-4, lr_plasticity=0.7, init_plasticity=1e-8, init_learning_rate=3e-3,
                  log_every=20)


#: FLP's meta-learning settings, chosen on validation episodes at the chapter's scale by the ``flp-chapter`` sweep
#: (:data:`.sweeps.FLP_SETTINGS`, result ``results/sweep-flp-chapter.json``): P₀ = 1e-5, Adam lr 0.5 on the raw
#: plasticity, 0.03 on β's logit, 0.01 on the initial weights and feedback. They apply to the FLP family (FLP and
#: feature reuse, which share its machinery) through :func:`method_overrides`; the gradient-based learners keep the
#: preset's meta learning rate 3e-3, at which their fixed inner learning rate was chosen (``gradient-lr-*`` sweeps).
CHAPTER_FLP = dict(init_plasticity=1e-5, lr_plasticity=0.5, lr_beta=0.03, lr_feedback=None, lr=1e-2)
FLP_FAMILY = ("flp", "feature_reuse")


def method_overrides(method: str, *, flp_settings: dict | None = None, learning_rate: float | None = None) -> dict:
    """Config overrides that turn a preset into ``method``'s run: the FLP family gets ``flp_settings`` (when
    given, e.g. :data:`CHAPTER_FLP`), a gradient-based learner its inner ``learning_rate`` (when given)."""
    overrides = {"method": method}
    if method in FLP_FAMILY and flp_settings:
        overrides.update(flp_settings)
    elif method not in FLP_FAMILY and learning_rate is not None:
        overrides["init_learning_rate"] = float(learning_rate)
    return overrides


def preset_flp_settings(name: str) -> dict | None:
    """FLP's chosen settings for the comparisons of preset ``name`` (:data:`CHAPTER_FLP` for the chapter's network;
    None, i.e. the preset's own values, for the paper's setting and few-shot)."""
    return dict(CHAPTER_FLP) if name in ("sine-chapter", "sine-medium") else None


@dataclass
class MetaConfig:
    """What every meta-learning run shares: the learner, its initial values and the meta-optimiser."""

    method: str = "flp"                       # flp | feature_reuse | gradient | meta_sgd
    sizes: tuple[int, ...] = (11, 40, 40, 40, 1)
    plastic_layers: int = 2                   # feature reuse always uses 1
    episodes: int = 300                       # meta-steps
    meta_batch: int = 1                       # episodes per meta-step and copy
    lr: float = 3e-3                          # Adam on the initial weights (and, unless given, feedback and β)
    lr_beta: float | None = None              # Adam on β's logit (default: lr)
    lr_plasticity: float = 0.05               # Adam on the raw plasticity (FLP) or learning rate (meta_sgd)
    init_plasticity: float | tuple[float, ...] = 1e-5   # P₀ (FLP, feature reuse), or one per plastic layer
    init_beta: float = 0.5
    init_learning_rate: float = 3e-3          # inner SGD rate η: fixed (gradient), starting value (meta_sgd)
    max_grad_norm: float | None = 1.0         # per-copy clipping of the meta-gradient
    eval_episodes: int = 32
    log_every: int = 10
    device: str = "cpu"
    dtype: str = "float32"
    rule: str = "oja"                         # oja | hebb (FLP only)
    lr_feedback: float | None = None          # Adam on the feedback B and c (default: lr)
    skip_diverged: bool = False               # skip lifetimes that blow up instead of stopping (meta.meta_fit)

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
    if config.method == "gradient":        # the paper's baseline: one fixed inner learning rate
        return LEARNERS["gradient"](config.sizes, config.plastic_layers,
                                    learning_rate=config.init_learning_rate, **common)
    if config.method == "meta_sgd":        # the stronger extra: per-synapse rates, meta-learned
        return LEARNERS["meta_sgd"](config.sizes, config.plastic_layers,
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
        return self._generators(_META_TEST_OFFSET)

    def validation_generators(self):
        """Fresh generators of the validation stream (meta-training distribution, never the meta-test episodes)."""
        return self._generators(_VALIDATION_OFFSET)

    def _generators(self, offset: int):
        if self.learner.ensemble_size is None:
            return rng.make_generator(self.copy_seeds[0] + offset)
        return [rng.make_generator(s + offset) for s in self.copy_seeds]


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
    optimizer = meta_optimizer(learner, lr=config.lr, lr_plasticity=config.lr_plasticity, lr_beta=config.lr_beta,
                               lr_feedback=config.lr_feedback)
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
                           checkpoint_every=checkpoint_every, resume=resume, max_grad_norm=config.max_grad_norm,
                           skip_diverged=config.skip_diverged)
    return run


def meta_test(run: MetaRun, *, order: str | None = None, episodes: int | None = None, meta_batch: int = 8,
              stream: str = "test", **lifetime_options) -> dict[str, list[float]]:
    """Meta-test loss (MSE or cross-entropy) and, for classification, error per copy on fresh meta-test episodes
    (each copy on its own order unless ``order`` is given): ``{"loss": [K], "sd": [K], "error": [K], "episodes",
    "diverged": [K]}``. A lifetime that blows up (non-finite loss) is counted in ``diverged`` and left out of
    ``loss`` and ``sd`` (None where every lifetime of a copy blew up) — report the count next to the loss.
    ``stream="validation"`` scores validation episodes instead (meta-training distribution and classes, own
    random stream): use it, never the meta-test stream, to choose settings."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    episodes = run.config.eval_episodes if episodes is None else episodes
    meta_batch = max(1, min(meta_batch, episodes))
    split, generators = (("test", run.meta_test_generators()) if stream == "test"
                         else ("train", run.validation_generators()))
    result = evaluate(run.learner, run.sampler(order, meta_batch=None if meta_batch == 1 else meta_batch, split=split),
                      generators, max(1, episodes // meta_batch), **lifetime_options)
    losses = result["losses"]                                            # (n, [K])
    finite = torch.isfinite(losses)
    mean = result["loss"]
    if bool(finite.all()):
        sd = losses.std(dim=0) if losses.shape[0] > 1 else torch.zeros_like(mean)
    else:                                                                # leave out the lifetimes that blew up
        count = finite.sum(dim=0)
        clean = torch.where(finite, losses, torch.zeros_like(losses))
        mean = clean.sum(dim=0) / count
        squares = torch.where(finite, (losses - mean).square(), torch.zeros_like(losses)).sum(dim=0)
        sd = (squares / (count - 1).clamp(min=1)).sqrt()
    out = {"loss": _json_floats(mean), "sd": _json_floats(sd), "episodes": losses.shape[0],
           "diverged": (~finite).sum(dim=0).reshape(-1).tolist()}
    if "error" in result:
        out["error"] = result["error"].reshape(-1).tolist()
    return out


def _json_floats(values: torch.Tensor) -> list:
    return [v if math.isfinite(v) else None for v in values.reshape(-1).tolist()]


def presets() -> dict[str, MetaConfig]:
    """Named configurations: the chapter's live runs and the longer runs whose results ship with the package.

    - ``sine-chapter``: 5 sinusoids × 6 batches × 16 points (30 inner steps), 6→32→32→32→1 with 2 plastic layers,
      300 meta-steps — what chapter 11 meta-trains while it executes. Its FLP settings are the ones the chapter
      used at first (P₀ = 1e-5, meta lr 0.05 on P, 3e-3 on everything else), the base of the ``flp-chapter``
      sweep; the comparisons run FLP with the settings that sweep chose (:func:`method_overrides`);
    - ``sine-medium``: the same network and settings with the paper's 40 batches per sinusoid (5 × 40 × 16, 200
      inner steps, so that a continual lifetime has time to forget) and 1,500 meta-steps
      (``python -m credit_tutorial.flp.reproduce compare sine-medium ...``: about 11 minutes of CPU for the five
      learners of the shipped run, 17 minutes of wall time on a shared 2-core machine).
      A lifetime that blows up is skipped rather than ending the run (``skip_diverged``): with FLP's chosen
      settings, one of 200 steps did so after 1,331 meta-steps in a first attempt;
    - ``fewshot-chapter``: 5-way 5-shot MNIST, 784→64→32→5 with 2 plastic layers, 100 meta-steps;
    - ``sine-paper``: the paper's setting (:data:`PAPER_SINE`).
    """
    from dataclasses import replace

    sine = SineConfig(sizes=(6, 32, 32, 32, 1), plastic_layers=2, n_tasks=5, batches_per_task=6, batch_size=16,
                      n_test_per_task=16, episodes=300, lr=3e-3, init_learning_rate=3e-3, max_grad_norm=1.0,
                      eval_episodes=64, log_every=20, init_plasticity=1e-5, lr_plasticity=0.05)
    return {"sine-chapter": sine,
            "sine-medium": replace(sine, batches_per_task=40, episodes=1500, log_every=25, skip_diverged=True),
            "fewshot-chapter": FewShotConfig(episodes=100, log_every=10, eval_episodes=64),
            "sine-paper": SineConfig.paper()}
