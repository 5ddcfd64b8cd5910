import json
import subprocess
import sys

import pytest

from credit_tutorial.cli import main


def test_train_writes_a_valid_json_result(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["train", "--rule", "fa", "--epochs", "1", "--n-train", "256", "--n-test", "128", "--batch-size",
                 "32", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["command"].startswith("python -m credit_tutorial train --rule fa")
    assert record["config"]["rule"] == "fa" and record["config"]["sizes"] == [784, 50, 20, 10]
    assert 0.0 <= record["final"]["test_error"] <= 1.0
    assert record["history"]["step"] == [0, 8]
    assert record["seconds_per_epoch"] > 0
    assert "embedded MNIST" in record["data"]
    assert record["versions"]["credit_tutorial"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"] == str(out)


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "0"], "--lr: expected a positive finite number"),
    (["train", "--lr", "abc"], "--lr: expected a positive number"),
    (["train", "--rule", "backprop"], "invalid choice: 'backprop'"),
    (["train", "--activation", "gelu"], "invalid choice: 'gelu'"),
    (["train", "--sizes", "784-x-10"], "layer sizes look like"),
    (["train", "--batch-size", "0"], "expected a positive integer"),
    (["train", "--epochs", "-3"], "--epochs"),
    (["train", "--data-root", "/nonexistent/dir"], "is not a directory"),
    (["train", "--init", "glorot", "--epochs", "1"], "init must be one of"),
    (["train", "--device", "tpu"], "device must be one of"),
    (["train", "--rule-option", "novalue"], "key=value"),
    ([], "required"),
])
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "credit_tutorial", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("credit-tutorial ")


def test_reproduce_offers_every_experiment_of_the_book():
    """A fresh interpreter's `reproduce` lists every full-scale run the chapters and their stored results name."""
    done = subprocess.run([sys.executable, "-m", "credit_tutorial", "reproduce", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    for name in ("fig2", "fig3", "fig4", "cnn", "flp-sine", "qagrel-table1"):
        assert name in done.stdout, f"reproduce does not offer {name!r}:\n{done.stdout}"
