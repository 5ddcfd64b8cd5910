"""Long FLP runs, resumable, with results that record their command.

- :func:`reproduce_flp_sine` — the paper's sine-wave setting (``python -m credit_tutorial reproduce flp-sine``):
  meta-trains one learner (11→300×5→900→300→300→1, 400 inner steps, 20,000 episodes by default) on the GPU when
  there is one, checkpoints atomically every ``checkpoint_every`` meta-steps, resumes exactly with
  ``resume=True``, meta-tests and writes a JSON result. :func:`add_arguments` / :func:`run_from_args` let the main
  command line wire it in two lines.
- :func:`run_comparison` / :func:`load_comparison` — FLP, feature reuse and gradient-based under one preset
  (``python -m credit_tutorial.flp.reproduce compare sine-medium --out DIR``); the chapter's longer run ships in
  :data:`RESULTS`.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import save_json
from ..device import resolve_device
from .experiment import SineConfig, meta_test, prepare
from .meta import MetaTrainingDiverged, meta_fit

#: results of long runs that ship with the package (made by the commands recorded in each ``summary.json``)
RESULTS = Path(__file__).resolve().parent / "results"


def reproduce_flp_sine(out: str | Path, *, episodes: int = 20_000, device: str | torch.device = "auto",
                       resume: bool = False, progress: bool = True, method: str = "flp", order: str = "iid",
                       seed: int = 0, checkpoint: str | Path | None = None, checkpoint_every: int = 100,
                       eval_episodes: int = 64, command: str | None = None, **overrides) -> dict:
    """Meta-train on the paper's sine-wave setting and write ``out`` (JSON); return the record.

    method: ``flp`` (3 plastic layers), ``feature_reuse`` or ``gradient``; order: ``iid`` or ``continual``.
    checkpoint: default ``out`` with suffix ``.ckpt``; ``resume=True`` continues from it (a finished run is only
    re-evaluated). ``overrides``: any :class:`SineConfig` field (e.g. ``sizes``, ``batches_per_task`` for a
    shorter test run). The record holds ``command``, ``config``, ``history``, ``test_mse`` (mean and sd over
    meta-test episodes), ``seconds_per_meta_step``, ``device`` and versions.
    """
    out = Path(out)
    device = resolve_device(device)
    config = SineConfig.paper(method=method, episodes=episodes, eval_episodes=eval_episodes, device=str(device),
                              **overrides)
    checkpoint = out.with_suffix(".ckpt") if checkpoint is None else Path(checkpoint)
    if not resume and checkpoint.exists():
        raise FileExistsError(f"{checkpoint} exists: pass resume=True (--resume) to continue it, or remove it")
    run, optimizer, sample, data = prepare(config, seeds=[seed], orders=order, device=device)
    started = time.perf_counter()
    run.history = meta_fit(run.learner, optimizer, sample, episodes=config.episodes, generator=data,
                           log_every=config.log_every, progress=progress, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, resume=resume, max_grad_norm=config.max_grad_norm)
    wall = time.perf_counter() - started
    result = meta_test(run, episodes=eval_episodes, meta_batch=1)
    seconds = run.history["seconds"][-1] if run.history["seconds"] else float("nan")
    record = {
        "command": command if command is not None else f"reproduce_flp_sine({str(out)!r}, episodes={episodes}, "
                                                       f"method={method!r}, order={order!r}, seed={seed})",
        "config": config.to_dict(),
        "method": method,
        "order": order,
        "seed": seed,
        "device": str(device),
        "test_mse": {"mean": result["loss"][0], "sd": result["sd"][0], "episodes": result["episodes"]},
        "seconds_per_meta_step": seconds / config.episodes,
        "cpu_seconds_per_meta_step": run.history["cpu_seconds"][-1] / config.episodes,
        "threads": torch.get_num_threads(),
        "wall_seconds_this_call": wall,
        "history": run.history,
        "checkpoint": str(checkpoint),
        "versions": {"credit_tutorial": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    save_json(record, out)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``reproduce flp-sine``."""
    from ..cli import non_negative_int, positive_int

    parser.add_argument("--out", type=Path, default=Path("results/flp_sine.json"), help="JSON result (atomic)")
    parser.add_argument("--episodes", type=positive_int, default=20_000, help="meta-training episodes")
    parser.add_argument("--method", choices=("flp", "feature_reuse", "gradient"), default="flp")
    parser.add_argument("--order", choices=("iid", "continual"), default="iid")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: --out with suffix .ckpt")
    parser.add_argument("--checkpoint-every", type=positive_int, default=100, help="meta-steps between checkpoints")
    parser.add_argument("--eval-episodes", type=positive_int, default=64, help="meta-test episodes")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_from_args(args, parser) -> int:
    """Handler for ``reproduce flp-sine``: bad arguments end in ``parser.error``, divergence in exit code 1."""
    import json
    import sys

    try:
        record = reproduce_flp_sine(args.out, episodes=args.episodes, device=args.device, resume=args.resume,
                                    progress=not args.no_progress, method=args.method, order=args.order,
                                    seed=args.seed, checkpoint=args.checkpoint,
                                    checkpoint_every=args.checkpoint_every, eval_episodes=args.eval_episodes,
                                    command=getattr(args, "command_line", None))
    except MetaTrainingDiverged as error:
        print(f"credit-tutorial reproduce flp-sine: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    print(json.dumps({"test_mse": record["test_mse"]["mean"], "seconds_per_meta_step":
                      round(record["seconds_per_meta_step"], 4), "device": record["device"], "out": str(args.out)}))
    return 0


# ----------------------------------------------------------------------------- method comparisons, kept on disk
CONFIGS = {"sine": "SineConfig", "few_shot": "FewShotConfig"}


def _config_record(config) -> dict:
    from .experiment import FewShotConfig
    return {"task": "few_shot" if isinstance(config, FewShotConfig) else "sine", **config.to_dict()}


def config_from_record(record: dict):
    """The :class:`~.experiment.MetaConfig` a result file recorded."""
    from . import experiment

    values = dict(record)
    task = values.pop("task", "sine")
    if task not in CONFIGS:
        raise ValueError(f"unknown task {task!r} in the result file; known: {sorted(CONFIGS)}")
    return getattr(experiment, CONFIGS[task])(**values)


def run_comparison(out_dir: str | Path, config, *, methods=("flp", "feature_reuse", "gradient"), seeds=(0, 1, 2),
                   orders=("iid", "continual"), progress: bool = True, resume: bool = False,
                   checkpoint_every: int = 200, command: str | None = None) -> dict:
    """Meta-train every method of ``methods`` under the same ``config`` (one ensemble copy per (order, seed)),
    meta-test them, and keep the result in ``out_dir``: ``summary.json`` (command, configuration, meta-test loss per
    copy, histories) and ``<method>.pt`` (the meta-learned parameters, reloadable with :func:`load_comparison`).
    Each method checkpoints to ``<method>.ckpt`` and resumes exactly with ``resume=True``."""
    from dataclasses import replace

    from ..checkpoint import save_checkpoint
    from .experiment import meta_test, meta_train

    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    summary = {"command": command, "seeds": list(seeds), "orders": list(orders), "methods": {}, "device": str(device),
               "versions": {"credit_tutorial": __version__, "torch": torch.__version__,
                            "python": platform.python_version()}}
    for method in methods:
        method_config = replace(config, method=method)
        checkpoint = out_dir / f"{method}.ckpt"
        if not resume and checkpoint.exists():
            raise FileExistsError(f"{checkpoint} exists: pass resume=True (--resume) to continue it, or remove it")
        started = time.perf_counter()
        run = meta_train(method_config, seeds, orders, progress=progress, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, resume=resume, device=device)
        test = meta_test(run)
        save_checkpoint({"learner": run.learner.state_dict(), "config": _config_record(method_config),
                         "seeds": list(seeds), "orders": list(orders)}, out_dir / f"{method}.pt")
        summary["methods"][method] = {"config": _config_record(method_config), "orders": run.orders,
                                      "copy_seeds": run.copy_seeds, "meta_test": test, "history": run.history,
                                      "seconds_per_meta_step": run.history["seconds"][-1] / method_config.episodes,
                                      "cpu_seconds_per_meta_step": run.history["cpu_seconds"][-1] / method_config.episodes,
                                      "wall_seconds_this_call": time.perf_counter() - started}
        save_json(summary, out_dir / "summary.json")
    return summary


def load_comparison(out_dir: str | Path, method: str, device=None):
    """The meta-trained :class:`~.experiment.MetaRun` of ``method`` saved by :func:`run_comparison`."""
    from ..checkpoint import load_checkpoint
    from .experiment import prepare

    saved = load_checkpoint(Path(out_dir) / f"{method}.pt", map_location=device)
    config = config_from_record(saved["config"])
    run, _, _, _ = prepare(config, saved["seeds"], saved["orders"], device=device)
    run.learner.load_state_dict(saved["learner"])
    return run


def reproduce_table1(out: str | Path, *, device: str = "auto", seed: int = 0, resume: bool = False,
                     progress: bool = True, quick: bool = False, data_root: str | None = None,
                     checkpoint_every: int | None = None, command: str = "") -> dict:
    """``reproduce flp-sine`` in the main command line's registry (:mod:`credit_tutorial.reproduce`): the pattern
    of the paper's Table 1 — FLP, feature reuse and gradient-based, i.i.d. and continual, two seeds (``seed`` and
    ``seed + 1``, as in the paper) — at the paper's setting (``quick``: a tiny network for two episodes, a smoke
    test). Per-method checkpoints and meta-learned parameters go to the directory ``out`` without its suffix; the
    summary is written there and to ``out``. ``data_root`` is not used (the task is generated)."""
    from dataclasses import replace

    from .experiment import SineConfig

    _ = data_root
    config = SineConfig.paper(device=str(resolve_device(device)))
    if quick:
        config = replace(config, sizes=(11, 8, 8, 8, 1), plastic_layers=2, batches_per_task=1, batch_size=4,
                         n_test_per_task=4, episodes=2, eval_episodes=2, log_every=1)
    out = Path(out)
    directory = out.with_suffix("")
    summary = run_comparison(directory, config, seeds=(seed, seed + 1), progress=progress, resume=resume,
                             checkpoint_every=checkpoint_every or 100, command=command)
    summary["final"] = {method: {order: sum(r["meta_test"]["loss"][k] for k, o in enumerate(r["orders"]) if o == order)
                                 / sum(1 for o in r["orders"] if o == order) for order in ("iid", "continual")}
                        for method, r in summary["methods"].items()}
    save_json(summary, out)
    return summary


def _register() -> None:
    """Offer :func:`reproduce_table1` to the main command line as ``reproduce flp-sine`` (idempotent)."""
    from .. import reproduce as registry

    registry.EXPERIMENTS.setdefault("flp-sine", reproduce_table1)


_register()


def main(argv=None) -> int:
    """``python -m credit_tutorial.flp.reproduce {flp-sine,compare} ...`` (until the main command line wires it)."""
    import sys

    from .experiment import presets

    parser = argparse.ArgumentParser(prog="python -m credit_tutorial.flp.reproduce")
    commands = parser.add_subparsers(dest="what", required=True)
    sine = commands.add_parser("flp-sine", help="the paper's sine-wave setting, one method")
    add_arguments(sine)
    compare = commands.add_parser("compare", help="FLP, feature reuse and gradient-based under one preset")
    compare.add_argument("preset", choices=sorted(presets()))
    compare.add_argument("--out", type=Path, required=True, help="directory for summary.json and <method>.pt")
    compare.add_argument("--episodes", type=int, default=None, help="override the preset's meta-steps")
    compare.add_argument("--resume", action="store_true")
    compare.add_argument("--no-progress", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "python -m credit_tutorial.flp.reproduce " + " ".join(argv)
    if args.what == "flp-sine":
        return run_from_args(args, sine)
    config = presets()[args.preset]
    if args.episodes is not None:
        if args.episodes < 1:
            compare.error("--episodes must be a positive integer")
        from dataclasses import replace
        config = replace(config, episodes=args.episodes)
    torch.set_num_threads(1)  # long chains of small operations: threads only add synchronisation
    try:
        run_comparison(args.out, config, progress=not args.no_progress, resume=args.resume,
                       command=args.command_line)
    except (FileExistsError, ValueError) as error:
        compare.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
