"""Long FLP runs, resumable, with results that record their command.

- :func:`reproduce_flp_sine` — the paper's sine-wave setting (``python -m credit_tutorial reproduce flp-sine``):
  meta-trains one learner (11→300×5→900→300→300→1, 400 inner steps, 20,000 episodes by default) on the GPU when
  there is one, checkpoints atomically every ``checkpoint_every`` meta-steps, resumes exactly with
  ``resume=True``, meta-tests and writes a JSON result. :func:`add_arguments` / :func:`run_from_args` let the main
  command line wire it in two lines.
- :func:`run_comparison` / :func:`load_comparison` — FLP, feature reuse and gradient-based (at one or more fixed
  inner learning rates, plus Meta-SGD on request) under one preset (``python -m credit_tutorial.flp.reproduce
  compare sine-medium --out DIR --gradient-lrs 0.003 0.01 --methods flp feature_reuse gradient meta_sgd``); the
  chapter's longer run ships in :data:`RESULTS`.
- ``python -m credit_tutorial.flp.reproduce sweep NAME --out F.json`` — the settings sweeps of :mod:`.sweeps`
  (choices made on validation episodes), also shipped in :data:`RESULTS`.
- :func:`rerun_first_steps` — re-run the first meta-steps of a recorded run, to check a result file against its
  record; :func:`save_result` — the compact, atomic, verified writer of every result file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Sequence

import torch

from .. import __version__
from ..device import resolve_device
from .experiment import SineConfig, meta_test, prepare
from .meta import MetaTrainingDiverged, meta_fit

#: results of long runs that ship with the package (made by the commands recorded in each ``summary.json``)
RESULTS = Path(__file__).resolve().parent / "results"


def _dumps(value, indent: int = 0) -> str:
    """JSON with nested objects indented and lists of numbers (or of lists of numbers) on one line: a result file
    a person can read and diff, several times smaller than one number per line."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(key), ensure_ascii=False)}: {_dumps(item, indent + 2)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(item, dict) for item in value):
        return "[\n" + ",\n".join(f"{inner}{_dumps(item, indent + 2)}" for item in value) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def save_result(data: dict, path: str | Path) -> Path:
    """Write a result file atomically (:func:`credit_tutorial.checkpoint.save_json`'s guarantees: NaN/inf refused,
    a reader never sees half a file) in the compact layout of :func:`_dumps`, and verify it reads back equal."""
    path = Path(path)
    text = _dumps(data) + "\n"
    if json.loads(text) != json.loads(json.dumps(data, allow_nan=False)):
        raise RuntimeError(f"the result for {path} does not read back equal to what was written")
    from ..checkpoint import _atomic_write

    return _atomic_write(path, lambda stream: stream.write(text.encode()))


def reproduce_flp_sine(out: str | Path, *, episodes: int = 20_000, device: str | torch.device = "auto",
                       resume: bool = False, progress: bool = True, method: str = "flp", order: str = "iid",
                       seed: int = 0, checkpoint: str | Path | None = None, checkpoint_every: int = 100,
                       eval_episodes: int = 64, command: str | None = None, **overrides) -> dict:
    """Meta-train on the paper's sine-wave setting and write ``out`` (JSON); return the record.

    method: ``flp`` (3 plastic layers), ``feature_reuse``, ``gradient`` (the paper's baseline, fixed inner learning
    rate) or ``meta_sgd`` (per-synapse meta-learned rates, stronger); order: ``iid`` or ``continual``.
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
                           checkpoint_every=checkpoint_every, resume=resume, max_grad_norm=config.max_grad_norm,
                           skip_diverged=config.skip_diverged)
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
    save_result(record, out)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``reproduce flp-sine``."""
    from ..cli import non_negative_int, positive_int

    parser.add_argument("--out", type=Path, default=Path("results/flp_sine.json"), help="JSON result (atomic)")
    parser.add_argument("--episodes", type=positive_int, default=20_000, help="meta-training episodes")
    parser.add_argument("--method", choices=("flp", "feature_reuse", "gradient", "meta_sgd"), default="flp",
                        help="gradient: the paper's baseline (fixed inner lr); meta_sgd: per-synapse meta-learned "
                             "rates (stronger)")
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


def comparison_variants(methods: Sequence[str] = ("flp", "feature_reuse", "gradient"),
                        gradient_lrs: Sequence[float] = (), flp_settings: dict | None = None) -> dict[str, dict]:
    """``{label: config overrides}`` for :func:`run_comparison`: one entry per method, labelled by its name (the
    FLP family with ``flp_settings`` when given, :func:`~.experiment.method_overrides`), and for every fixed inner
    learning rate of ``gradient_lrs`` a gradient-based variant labelled ``gradient_lr<η>`` (when given, these
    replace the plain ``gradient`` entry)."""
    from .experiment import method_overrides

    variants = {}
    for method in methods:
        if method == "gradient" and gradient_lrs:
            for rate in gradient_lrs:
                variants[f"gradient_lr{rate:g}"] = method_overrides("gradient", learning_rate=rate)
        else:
            variants[method] = method_overrides(method, flp_settings=flp_settings)
    return variants


def run_comparison(out_dir: str | Path, config, *, methods=("flp", "feature_reuse", "gradient"),
                   variants: dict[str, dict] | None = None, seeds=(0, 1, 2), orders=("iid", "continual"),
                   progress: bool = True, resume: bool = False, checkpoint_every: int = 200,
                   command: str | None = None, keep_parameters: Sequence[str] | None = None) -> dict:
    """Meta-train every variant under the same ``config`` (one ensemble copy per (order, seed)), meta-test it, and
    keep the result in ``out_dir``: ``summary.json`` (command, configuration, meta-test loss per copy with the
    plasticity on and switched off, histories with the first meta-losses) and ``<label>.pt`` (the meta-learned
    parameters, reloadable with :func:`load_comparison`) for the labels in ``keep_parameters`` (default: all).

    ``variants``: ``{label: config overrides}`` (see :func:`comparison_variants`); default: one per method of
    ``methods``. Each variant checkpoints to ``<label>.ckpt`` and resumes exactly with ``resume=True``."""
    from dataclasses import replace

    from ..checkpoint import save_checkpoint
    from .experiment import meta_test, meta_train

    variants = comparison_variants(methods) if variants is None else dict(variants)
    if not variants:
        raise ValueError("variants must hold at least one entry")
    keep = set(variants) if keep_parameters is None else set(keep_parameters)
    unknown = keep - set(variants)
    if unknown:
        raise ValueError(f"keep_parameters names unknown variants {sorted(unknown)}; known: {sorted(variants)}")
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    summary = {"command": command, "seeds": list(seeds), "orders": list(orders), "methods": {}, "device": str(device),
               "threads": torch.get_num_threads(),
               "versions": {"credit_tutorial": __version__, "torch": torch.__version__,
                            "python": platform.python_version()}}
    for label, overrides in variants.items():
        method_config = replace(config, **overrides)
        checkpoint = out_dir / f"{label}.ckpt"
        if not resume and checkpoint.exists():
            raise FileExistsError(f"{checkpoint} exists: pass resume=True (--resume) to continue it, or remove it")
        started = time.perf_counter()
        run = meta_train(method_config, seeds, orders, progress=progress, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, resume=resume, device=device)
        test = meta_test(run)
        test_off = meta_test(run, plasticity_scale=0.0)
        if label in keep:
            save_checkpoint({"learner": run.learner.state_dict(), "config": _config_record(method_config),
                             "seeds": list(seeds), "orders": list(orders)}, out_dir / f"{label}.pt")
        summary["methods"][label] = {"config": _config_record(method_config), "orders": run.orders,
                                     "copy_seeds": run.copy_seeds, "meta_test": test,
                                     "meta_test_plasticity_off": test_off, "history": run.history,
                                     "parameters_saved": label in keep,
                                     "seconds_per_meta_step": run.history["seconds"][-1] / method_config.episodes,
                                     "cpu_seconds_per_meta_step":
                                         run.history["cpu_seconds"][-1] / method_config.episodes,
                                     "wall_seconds_this_call": time.perf_counter() - started}
        save_result(summary, out_dir / "summary.json")
    return summary


def load_comparison(out_dir: str | Path, method: str, device=None):
    """The meta-trained :class:`~.experiment.MetaRun` of the variant labelled ``method`` saved by
    :func:`run_comparison`."""
    from ..checkpoint import load_checkpoint
    from .experiment import prepare

    saved = load_checkpoint(Path(out_dir) / f"{method}.pt", map_location=device)
    config = config_from_record(saved["config"])
    run, _, _, _ = prepare(config, saved["seeds"], saved["orders"], device=device)
    run.learner.load_state_dict(saved["learner"])
    return run


def rerun_first_steps(config_record: dict, seeds: Sequence[int], orders: Sequence[str] | str, steps: int = 3,
                      device="cpu") -> list:
    """Re-run the first ``steps`` meta-steps of a recorded run — the configuration a result file recorded, the same
    seeds and orders — and return their meta-losses, to compare with the file's ``first_meta_losses``."""
    from dataclasses import replace

    from .experiment import meta_train

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    config = replace(config_from_record(config_record), episodes=steps, device=str(device))
    return meta_train(config, list(seeds), orders, device=device).history["first_meta_losses"][:steps]


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
    save_result(summary, out)
    return summary


def _register() -> None:
    """Offer :func:`reproduce_table1` to the main command line as ``reproduce flp-sine`` (idempotent)."""
    from .. import reproduce as registry

    registry.EXPERIMENTS.setdefault("flp-sine", reproduce_table1)


_register()


def main(argv=None) -> int:
    """``python -m credit_tutorial.flp.reproduce {flp-sine,compare,sweep} ...``."""
    import sys
    from dataclasses import replace

    from ..cli import positive_int
    from .experiment import preset_flp_settings, presets
    from .sweeps import named_sweeps, run_sweep

    parser = argparse.ArgumentParser(prog="python -m credit_tutorial.flp.reproduce")
    commands = parser.add_subparsers(dest="what", required=True)
    sine = commands.add_parser("flp-sine", help="the paper's sine-wave setting, one method")
    add_arguments(sine)
    compare = commands.add_parser("compare", help="FLP, feature reuse and gradient-based under one preset (FLP and "
                                                  "feature reuse with the FLP settings chosen for the preset)")
    compare.add_argument("preset", choices=sorted(presets()))
    compare.add_argument("--out", type=Path, required=True, help="directory for summary.json and <label>.pt")
    compare.add_argument("--episodes", type=positive_int, default=None, help="override the preset's meta-steps")
    compare.add_argument("--methods", nargs="+", choices=("flp", "feature_reuse", "gradient", "meta_sgd"),
                         default=["flp", "feature_reuse", "gradient"])
    compare.add_argument("--gradient-lrs", type=float, nargs="+", default=[],
                         help="fixed inner learning rates of the gradient-based baseline (one variant each, "
                              "labelled gradient_lr<η>); default: the preset's")
    compare.add_argument("--keep-parameters", nargs="+", default=None,
                         help="labels whose meta-learned parameters are saved (default: all)")
    compare.add_argument("--resume", action="store_true")
    compare.add_argument("--no-progress", action="store_true")
    sweep = commands.add_parser("sweep", help="choose settings on validation episodes (a named sweep)")
    sweep.add_argument("name", choices=sorted(named_sweeps()))
    sweep.add_argument("--out", type=Path, required=True, help="JSON result (atomic)")
    sweep.add_argument("--episodes", type=positive_int, default=None, help="override the preset's meta-steps")
    sweep.add_argument("--no-progress", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "python -m credit_tutorial.flp.reproduce " + " ".join(argv)
    if args.what == "flp-sine":
        return run_from_args(args, sine)
    torch.set_num_threads(1)  # long chains of small operations: threads only add synchronisation
    if args.what == "sweep":
        try:
            record = run_sweep(args.name, args.out, episodes=args.episodes, command=args.command_line,
                               progress=not args.no_progress)
        except ValueError as error:
            sweep.error(str(error))
        print(f"selected: {record['selected']}")
        return 0
    config = presets()[args.preset]
    if args.episodes is not None:
        config = replace(config, episodes=args.episodes)
    if any(rate <= 0 for rate in args.gradient_lrs):
        compare.error("--gradient-lrs must be positive")
    try:
        variants = comparison_variants(args.methods, args.gradient_lrs, preset_flp_settings(args.preset))
        run_comparison(args.out, config, variants=variants,
                       progress=not args.no_progress, resume=args.resume, command=args.command_line,
                       keep_parameters=args.keep_parameters)
    except (FileExistsError, ValueError) as error:
        compare.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
