"""Command line: ``python -m credit_tutorial train ...`` (also installed as ``credit-tutorial``).

Each subcommand lives in a function ``add_<name>(subparsers)`` that registers its parser and sets ``handler``;
later chapters add theirs to :data:`COMMANDS`. Bad arguments end in an argparse error, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import __version__


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def layer_sizes(text: str) -> tuple[int, ...]:
    """``784-50-20-10`` (or with commas) → ``(784, 50, 20, 10)``."""
    parts = text.replace(",", "-").split("-")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"layer sizes look like 784-50-20-10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive layer sizes, got {text!r}")
    return sizes


def rule_option(text: str) -> tuple[str, object]:
    """``key=value`` with value parsed as JSON when it can be (numbers, true/false, lists), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"rule options look like key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_train(subparsers) -> None:
    from .activations import ACTIVATIONS
    from .experiment import TASKS
    from .objectives import OBJECTIVES
    from .rules import RULES

    parser = subparsers.add_parser("train", help="train one network with one rule and write a JSON result",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="mnist")
    parser.add_argument("--rule", choices=sorted(RULES), default="bp", help="credit-assignment rule")
    parser.add_argument("--sizes", type=layer_sizes, default=(784, 50, 20, 10), help="layer widths, input first")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="sigmoid", help="hidden nonlinearity")
    parser.add_argument("--output-activation", choices=sorted(ACTIVATIONS), default="identity")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="mse")
    parser.add_argument("--init", default="he", help="he | uniform[:scale] | normal[:std]")
    parser.add_argument("--no-bias", action="store_true", help="layers without biases")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="learning rate")
    parser.add_argument("--epochs", type=positive_float, default=50)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="directory with the MNIST IDX files (default: the download cache if complete, "
                             "else the embedded subset)")
    parser.add_argument("--n-train", type=positive_int, default=None, help="use only the first N training samples")
    parser.add_argument("--n-test", type=positive_int, default=None, help="use only the first N test samples")
    parser.add_argument("--rule-option", type=rule_option, action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword argument for the rule (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here (atomically)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=_train)


def _train(args, parser) -> int:
    from .checkpoint import save_json
    from .experiment import TrainConfig, run
    from .training import TrainingDiverged

    if args.data_root is not None and not args.data_root.is_dir():
        parser.error(f"--data-root: {args.data_root} is not a directory")
    try:
        config = TrainConfig(task=args.task, rule=args.rule, sizes=args.sizes, hidden_activation=args.activation,
                             output_activation=args.output_activation, objective=args.objective, init=args.init,
                             bias=not args.no_bias, optimizer=args.optimizer, lr=args.lr, epochs=args.epochs,
                             batch_size=args.batch_size, seed=args.seed, device=args.device, dtype=args.dtype,
                             data_root=None if args.data_root is None else str(args.data_root),
                             n_train=args.n_train, n_test=args.n_test, rule_options=dict(args.rule_option))
        result = run(config, progress=not args.no_progress)
    except TrainingDiverged as error:
        print(f"credit-tutorial train: {error}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(str(error))
    record = result.to_json(command=args.command_line)
    if args.out is not None:
        save_json(record, args.out)
    summary = {key: record["final"][key] for key in ("test_error", "test_loss") if key in record["final"]}
    summary.update(seconds_per_epoch=round(record["seconds_per_epoch"], 3), data=record["data"])
    if args.out is not None:
        summary["out"] = str(args.out)
    print(json.dumps(summary))
    return 0


def add_reproduce(subparsers) -> None:
    from .reproduce import add_reproduce as register

    register(subparsers)


def add_bench(subparsers) -> None:
    from .bench import add_bench as register

    register(subparsers)


#: subcommand registrars, in the order ``--help`` lists them
COMMANDS = [add_train, add_reproduce, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="credit-tutorial",
                                     description="Credit assignment without weight transport: train, reproduce, "
                                                 "benchmark.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m credit_tutorial " + shlex.join(argv)
    subparser = parser._subparsers._group_actions[0].choices[args.command]  # for errors that name the subcommand
    return args.handler(args, subparser)


if __name__ == "__main__":
    raise SystemExit(main())
