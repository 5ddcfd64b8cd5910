"""Paper-scale experiments: ``python -m credit_tutorial reproduce NAME``.

Each experiment registers a function in :data:`EXPERIMENTS` with the signature

    fn(out: Path, *, device: str, seed: int, resume: bool, progress: bool, quick: bool, data_root: str | None,
       checkpoint_every: int | None, command: str) -> dict

that runs at the original authors' settings (REFERENCE.md) — or, with ``quick=True``, a few steps of the same
code path for tests — writes its JSON result atomically to ``out`` (recording ``command``, the exact command
line), checkpoints to
``out`` with the suffix ``.ckpt`` and resumes from it with ``resume=True``, and returns the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

Experiment = Callable[..., dict]

#: experiment name → function; chapters register theirs (see the module docstring)
EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str):
    """Decorator: ``@register("fig2")`` adds a reproduce function under ``name``."""
    def decorate(fn: Experiment) -> Experiment:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = fn
        return fn
    return decorate


def checkpoint_path(out: Path) -> Path:
    """Where the run checkpoints: next to its result file."""
    return Path(out).with_suffix(".ckpt")


def _load_experiments() -> None:
    """Import the modules that register experiments (kept lazy: the command line starts fast)."""
    import importlib

    for module in _EXPERIMENT_MODULES:
        importlib.import_module(module, __package__)


#: modules whose import registers an experiment (relative to this package, e.g. ".experiments.mnist")
_EXPERIMENT_MODULES: list[str] = [".experiments.convolutional", ".experiments.lansdell", ".experiments.recurrent",
                                   ".flp.reproduce", ".reward_learning"]


def add_reproduce(subparsers) -> None:
    from .cli import non_negative_int, positive_int

    _load_experiments()
    parser = subparsers.add_parser("reproduce", help="run one of the papers' experiments at full scale",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS) or ["(none registered)"])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file (written atomically)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--data-root", type=Path, default=None, help="data directory: the MNIST IDX files (or, for 'cnn', the CIFAR-10 python-version files)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's .ckpt checkpoint if present")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None, help="steps between checkpoints")
    parser.add_argument("--quick", action="store_true", help="a few steps of the same code path (smoke test)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_reproduce)


def _reproduce(args, parser) -> int:
    import json
    import sys

    from .training import TrainingDiverged

    if args.data_root is not None and not args.data_root.is_dir():
        parser.error(f"--data-root: {args.data_root} is not a directory")
    try:
        result = EXPERIMENTS[args.experiment](
            args.out, device=args.device, seed=args.seed, resume=args.resume, progress=not args.no_progress,
            quick=args.quick, data_root=None if args.data_root is None else str(args.data_root),
            checkpoint_every=args.checkpoint_every, command=args.command_line)
    except TrainingDiverged as error:
        print(f"credit-tutorial reproduce: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print(json.dumps({"out": str(args.out), "final": result.get("final")}))
    return 0
