"""The graded assignments (book/assignments/): the checks accept the solutions, reject the stubs as "not implemented
yet" and reject wrong answers naming the case; the student notebooks are clean and wired to their checks.

The stubs are taken from the student notebooks themselves: every code cell carries one tag saying what it is
(assignment-install / -setup / -stub / -example / -check / -grade), and the tests execute the setup and stub cells
in a fresh namespace. The solutions live in book/assignments/solutions/ (plain modules, loaded by path). Tests that
need the solutions have "solution" in their name, so a public copy of the repository without the solutions folder
runs the rest with `-k "not solution"` (see book/assignments/index.md).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from credit_tutorial import checks

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT_DIR = ROOT / "book" / "assignments"
SOLUTION_DIR = ASSIGNMENT_DIR / "solutions"
TAGS = ("assignment-install", "assignment-setup", "assignment-stub", "assignment-example", "assignment-check",
        "assignment-grade")
GRADE_CALL = re.compile(r'^checks\.grade\("(?P<name>\w+)", globals\(\)\)$')
NOTEBOOKS = sorted(ASSIGNMENT_DIR.glob("*.ipynb"))
TASKS = [(name, task) for name, tasks in checks.ASSIGNMENTS.items() for task in tasks]
TASK_IDS = [f"{name}:{'+'.join(task.functions)}" for name, task in TASKS]


# ---------------------------------------------------------------------------------------------------- helpers
def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def tag_of(cell) -> str:
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("assignment-")]
    assert len(tags) == 1, f"code cell needs exactly one assignment-* tag, has {tags}:\n{cell.source[:200]}"
    return tags[0]


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def assignment_of(nb) -> str:
    match = GRADE_CALL.match(code_cells(nb)[-1].source.strip())
    assert match, "the last code cell must be `checks.grade(\"<assignment>\", globals())`"
    return match["name"]


def notebook_for(assignment: str) -> Path:
    paths = [p for p in NOTEBOOKS if assignment_of(read(p)) == assignment]
    assert len(paths) == 1, f"expected one student notebook grading {assignment!r}, found {paths}"
    return paths[0]


def run(path: Path, tags, replacements: dict | None = None) -> dict:
    """Execute the code cells of ``path`` with the given tags, in order, in a fresh namespace. After each stub cell,
    the names in ``replacements`` it defined are replaced (a solved notebook)."""
    namespace: dict = {"__name__": f"assignment_{path.stem}"}
    for index, cell in enumerate(code_cells(read(path))):
        tag = tag_of(cell)
        if tag not in tags:
            continue
        exec(compile(cell.source, f"<{path.name}, code cell {index}>", "exec"), namespace)  # noqa: S102
        if tag == "assignment-stub" and replacements:
            namespace.update({k: v for k, v in replacements.items() if k in namespace})
    return namespace


def stubs(assignment: str) -> dict:
    return run(notebook_for(assignment), {"assignment-setup", "assignment-stub"})


def load_solution(assignment: str):
    path = SOLUTION_DIR / f"{assignment}.py"
    assert path.is_file(), f"missing solution module {path} (every assignment in checks.ASSIGNMENTS needs one)"
    spec = importlib.util.spec_from_file_location(f"assignment_solution_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solution_functions(assignment: str) -> dict:
    module = load_solution(assignment)
    return {name: getattr(module, name) for task in checks.ASSIGNMENTS[assignment] for name in task.functions}


# ---------------------------------------------------------------------------------------------------- (d) notebooks
def test_every_assignment_has_one_student_notebook():
    graded = sorted(assignment_of(read(p)) for p in NOTEBOOKS)
    assert graded == sorted(checks.ASSIGNMENTS), "one notebook per assignment of checks.ASSIGNMENTS"
    assert len(graded) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_notebook_is_clean_and_wired_to_its_checks(path):
    nb = read(path)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title comes first"
    cells = code_cells(nb)
    for cell in cells:  # committed without outputs: nothing of a solution can leak through an output
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    tags = [tag_of(cell) for cell in cells]
    assert tags[0] == "assignment-install" and "%pip install" in cells[0].source
    assert tags.count("assignment-setup") == 1 and tags[1] == "assignment-setup"
    assert tags[-1] == "assignment-grade"
    assignment = assignment_of(nb)
    tasks = checks.ASSIGNMENTS[assignment]

    # every function a task needs is a stub in a stub cell: a docstring, then nothing but comments and a raise
    stub_defs = {}
    for cell in (c for c, t in zip(cells, tags) if t == "assignment-stub"):
        tree = ast.parse(cell.source)
        for node in tree.body:
            assert isinstance(node, ast.FunctionDef), f"stub cells only define functions:\n{cell.source}"
            stub_defs[node.name] = node
    needed = {name for task in tasks for name in task.functions}
    assert needed == set(stub_defs), f"stubs {sorted(stub_defs)} != functions the checks need {sorted(needed)}"
    for name, node in stub_defs.items():
        body = node.body
        assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), f"{name}: docstring"
        assert len(body) == 2 and isinstance(body[1], ast.Raise), f"{name}: the body must be only the raise"
        raised = body[1].exc.func.id if isinstance(body[1].exc, ast.Call) else body[1].exc.id
        assert raised == "NotImplementedError"

    # a check cell for every task, and the check cells call only checks
    check_sources = [c.source.strip() for c, t in zip(cells, tags) if t == "assignment-check"]
    for task in tasks:
        call = f"checks.{task.check.__name__}({', '.join(task.functions)})"
        assert call in check_sources, f"{path.name}: no check cell `{call}`"
    assert all(src.startswith("checks.check_") for src in check_sources)

    # no solution anywhere in the notebook
    text = "\n".join(cell.source for cell in nb.cells)
    assert "solutions" not in text and "import solution" not in text
    assert nb.metadata.kernelspec.name == "python3"


def test_assignment_pages_are_in_the_toc_and_never_executed():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    appendix = next(part for part in toc["parts"] if part.get("caption") == "Appendix")
    files = [entry["file"] for entry in appendix["chapters"]]
    assert files[-1] == "book/bibliography", "the bibliography stays the last page"
    index = next(entry for entry in appendix["chapters"] if entry["file"] == "book/assignments/index")
    assert files.index("book/assignments/index") < files.index("book/bibliography")
    listed = [section["file"] for section in index["sections"]]
    assert listed == [f"book/assignments/{p.stem}" for p in NOTEBOOKS]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "book/assignments/*" in config["execute"]["exclude_patterns"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"book/assignments"' in pyproject, "nbval must never collect the student notebooks"


# ---------------------------------------------------------------------------------------------------- (b) stubs
@pytest.mark.parametrize("assignment, task", TASKS, ids=TASK_IDS)
def test_stub_is_reported_as_not_implemented_yet(assignment, task):
    namespace = stubs(assignment)
    with pytest.raises(checks.NotImplementedYet, match="not implemented yet") as failure:
        task.check(*(namespace[name] for name in task.functions))
    assert isinstance(failure.value, AssertionError)
    assert failure.value.check == task.check.__name__
    assert f"`{task.functions[0]}`" in str(failure.value)  # names the function to write


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_grade_cell_of_an_untouched_notebook_lists_every_task_as_not_implemented(path):
    assignment = assignment_of(read(path))
    with pytest.raises(checks.NotImplementedYet) as failure:
        run(path, {"assignment-setup", "assignment-stub", "assignment-grade"})
    message = str(failure.value)
    assert f"0 of {len(checks.ASSIGNMENTS[assignment])} tasks passed" in message
    for task in checks.ASSIGNMENTS[assignment]:
        assert f"{task.title}: not implemented yet" in message


# ---------------------------------------------------------------------------------------------------- (a) solutions
@pytest.mark.parametrize("assignment, task", TASKS, ids=TASK_IDS)
def test_solution_passes_its_check(assignment, task):
    functions = solution_functions(assignment)
    report = task.check(*(functions[name] for name in task.functions))
    assert isinstance(report, checks.CheckReport) and report.check == task.check.__name__
    assert len(report.cases) >= 3
    assert f"all {len(report.cases)} cases passed" in str(report)


#: what each notebook's example cells claim, checked on the namespace of the solved notebook
EXAMPLE_CLAIMS = {
    "backprop_by_hand": lambda ns: all(float((dW - W.grad).abs().max()) < 1e-12
                                       for (dW, _), W in zip(ns["mine"], ns["leaves"][:3])),
    "node_perturbation": lambda ns: float(ns["cosine"]) > 0.95,
    "ridge_feedback": lambda ns: float((ns["B"] - ns["W"].mT).norm() / ns["W"].norm()) < 0.05,
    "qagrel": lambda ns: all(float((dW + W.grad).abs().max()) < 1e-12 for dW, W in zip(ns["changes"], ns["leaves"])),
    "flp_oja": lambda ns: abs(float(ns["w"].norm()) - 1) < 0.05
                          and float((ns["w"][0] @ ns["v1"]).abs() / ns["w"].norm()) > 0.99,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_completed_with_the_solution_runs_top_to_bottom_and_grades_full_marks(path):
    assignment = assignment_of(read(path))
    namespace = run(path, set(TAGS) - {"assignment-install"}, replacements=solution_functions(assignment))
    report = eval("checks.grade(%r, globals())" % assignment, namespace)  # noqa: S307 - the grade cell again
    assert isinstance(report, checks.GradeReport) and report.passed == report.total
    assert EXAMPLE_CLAIMS[assignment](namespace), f"the example in {path.name} does not show what its text says"


# ---------------------------------------------------------------------------------------------------- (c) wrong answers
def _wrong_answers():
    """(check, assignment, build(solution) -> functions, the case that must fail, a phrase of the message)."""
    def sign(fn):
        return lambda *a: -fn(*a)

    def reshaped_c_missing(s):
        return lambda clean, noisy, noise, c: ((noisy - clean).unsqueeze(-1) * noise
                                               / torch.as_tensor(c, dtype=noise.dtype) ** 2)

    def no_baseline(s):
        return lambda clean, noisy, noise, c: s.perturbation_estimate(torch.zeros_like(clean), noisy, noise, c)

    def noise_of_full_shape(s):
        from credit_tutorial import rng

        def estimate(network, objective, x, target, c, generator):
            clean = network.trace(x)
            noise = [rng.normal(r.activity.shape, generator, std=c, dtype=r.activity.dtype) for r in clean.layers[:-1]]
            noisy = network.trace(x, noise=noise + [None])
            loss, noisy_loss = objective.per_sample(clean.output, target), objective.per_sample(noisy.output, target)
            return [s.perturbation_estimate(loss, noisy_loss, xi, c) for xi in noise]
        return estimate

    def rho_after_adding(s):
        return lambda D, S, lam, dl, rho: (rho * s.accumulate_sums(D, S, lam, dl, 1.0)[0],
                                           rho * s.accumulate_sums(D, S, lam, dl, 1.0)[1])

    def inverse_wrong_transpose(s):
        return lambda D, S, gamma: torch.linalg.inv(D + gamma * torch.eye(D.shape[-1], dtype=D.dtype)) @ S

    def inverse_right(s):
        return lambda D, S, gamma: S @ torch.linalg.inv(D + gamma * torch.eye(D.shape[-1], dtype=D.dtype))

    def no_ridge(s):
        return lambda D, S, gamma: s.solve_feedback(D, S, 0.0)

    def batch_sum(s):
        return lambda pre, gate, fb, rpe, lr: s.four_factor_update(pre, gate, fb, rpe, lr) * pre.shape[-2]

    def no_gate(s):
        return lambda pre, gate, fb, rpe, lr: s.four_factor_update(pre, None, fb, rpe, lr)

    def lr_not_per_copy(s):
        def update(pre, gate, fb, rpe, lr):
            post = rpe.unsqueeze(-1) * fb * (1 if gate is None else gate)
            return lr * (post.mT @ pre) / pre.shape[-2]
        return update

    def feedback_not_transposed(s):
        def update(*args):
            dW, _ = s.qagrel_update(*args)
            return dW, dW[1:]
        return update

    def weight_transport(s):
        return lambda weights, feedback, *rest: s.qagrel_update(weights, [W.mT for W in weights[1:]], *rest)

    def hebb(s):
        return lambda W, pre, post, P: P * (post.mT @ pre)

    def flp_not_clamped(s):
        def step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind):
            if kind == "classification":  # treat the labels' one-hot rows as a regression target instead
                y = torch.nn.functional.one_hot(y, weights[-1].shape[-2]).to(x.dtype)
            return s.flp_step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, "regression")
        return step

    def flp_every_layer_plastic(s):
        def step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind):
            new = s.flp_step(weights, biases, feedback, feedback_bias, plasticity, beta, x, y, kind)
            return [W + 0.01 * W if i < len(weights) - len(plasticity) else n
                    for i, (W, n) in enumerate(zip(weights, new))]
        return step

    def chapter_one_lines(s):
        def backprop(weights, biases, x, y_onehot):  # chapter 1's lines, right for one network only
            h = [x]
            for l, (W, b) in enumerate(zip(weights, biases)):
                a = h[-1] @ W.T + b
                h.append(torch.sigmoid(a) if l < len(weights) - 1 else a)
            delta = h[-1] - y_onehot
            grads = []
            for l in reversed(range(len(weights))):
                grads.insert(0, (delta.T @ h[l] / len(x), delta.mean(0)))
                if l > 0:
                    delta = (delta @ weights[l]) * h[l] * (1 - h[l])
            return grads
        return backprop

    C = checks
    return [
        (C.check_perturbation_estimate, "node_perturbation", lambda s: [sign(s.perturbation_estimate)],
         "one network, batch of 8, c = 0.1 (float32)", "sign flipped"),
        (C.check_perturbation_estimate, "node_perturbation", lambda s: [no_baseline(s)],
         "one network, batch of 8, c = 0.1 (float32)", "you left out the baseline"),
        (C.check_perturbation_estimate, "node_perturbation", lambda s: [reshaped_c_missing(s)],
         "ensemble of 3 networks, one c per copy: c of shape (3,) (float64)", "reshape it to (K, 1, 1)"),
        (C.check_noisy_estimate, "node_perturbation", lambda s: [noise_of_full_shape(s)],
         "ensemble of 3 networks with a list of 3 generators, c = 0.01 (float64)", "h_l.shape[1:]"),
        (C.check_accumulate_sums, "ridge_feedback", lambda s: [rho_after_adding(s)],
         "ρ = 0.9 (forgetting old batches), 4 batches of 8 (float64 batches)", "ρ multiplies the old sum only"),
        (C.check_solve_feedback, "ridge_feedback", lambda s: [inverse_wrong_transpose(s)],
         "square B: n_l = n_(l+1) = 4, γ = 0.1, D from 40 samples (float64)", "not V⁻¹ S"),
        (C.check_solve_feedback, "ridge_feedback", lambda s: [inverse_right(s)],
         "square B: n_l = n_(l+1) = 4, γ = 0.1, D from 40 samples (float64)", "explicit inverse (linalg_inv)"),
        (C.check_solve_feedback, "ridge_feedback", lambda s: [no_ridge(s)],
         "square B: n_l = n_(l+1) = 4, γ = 0.1, D from 40 samples (float64)", "add the ridge γI"),
        (C.check_learned_feedback, "ridge_feedback", lambda s: [s.accumulate_sums, no_ridge(s)],
         "20 batches of 16, ρ = 1, γ = 0.1, n_l = 6, n_(l+1) = 4 (float64)", "B after batch 1"),
        (C.check_four_factor_update, "qagrel", lambda s: [batch_sum(s)],
         "hidden layer: batch of 8, 6 → 5 units, α = 0.5 (float32)", "mean over the batch, not the sum"),
        (C.check_four_factor_update, "qagrel", lambda s: [no_gate(s)],
         "hidden layer: batch of 8, 6 → 5 units, α = 0.5 (float32)", "multiply by the gate"),
        (C.check_four_factor_update, "qagrel", lambda s: [lr_not_per_copy(s)],
         "ensemble of 3 networks, one α per copy: lr of shape (3,) (float64)", "(K, 1, 1)"),
        (C.check_qagrel_update, "qagrel", lambda s: [feedback_not_transposed(s)],
         "two hidden layers 6-8-5-3, learned feedback W′ ≠ Wᵀ, batch of 10, α = 0.5 (float32)", "ΔW′_l = ΔW_lᵀ"),
        (C.check_qagrel_update, "qagrel", lambda s: [weight_transport(s)],
         "two hidden layers 6-8-5-3, learned feedback W′ ≠ Wᵀ, batch of 10, α = 0.5 (float32)", "weight transport"),
        (C.check_oja_update, "flp_oja", lambda s: [hebb(s)],
         "batch of 10, 5 → 4 units, P = 0.01 (float32)", "decay term"),
        (C.check_flp_step, "flp_oja", lambda s: [flp_not_clamped(s)],
         "classification 4-7-5-3: the output's target is clamped to onehot(y), two plastic layers (float64)",
         "output layer's target is onehot(y)"),
        (C.check_flp_step, "flp_oja", lambda s: [flp_every_layer_plastic(s)],
         "regression 3-8-6-2, only the output layer plastic, β = 0.5 (float32)", "return the other weights unchanged"),
        (C.check_backprop_by_hand, "backprop_by_hand", lambda s: [chapter_one_lines(s)],
         "ensemble of 3 networks: weights (3, n_out, n_in), biases (3, n_out), x (batch, n_0) shared (float64)",
         ".mT (not .T)"),
    ]


WRONG = _wrong_answers()


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")  # chapter 1's lines on an ensemble
@pytest.mark.parametrize("check, assignment, build, case, phrase", WRONG,
                         ids=[f"{w[0].__name__}-{i}" for i, w in enumerate(WRONG)])
def test_wrong_solution_variant_fails_naming_the_case(check, assignment, build, case, phrase):
    functions = build(load_solution(assignment))
    with pytest.raises(checks.CheckFailed) as failure:
        check(*functions)
    error = failure.value
    assert not isinstance(error, checks.NotImplementedYet)
    assert error.case == case and error.check == check.__name__
    message = str(error)
    assert f'failed on case "{case}"' in message
    assert phrase in message, message
    if "wrong values" in message:  # a value mismatch shows both sides
        assert "expected:" in message and "got:" in message


# ---------------------------------------------------------------------------------------------------- the harness
def test_a_check_given_a_value_instead_of_a_function_says_so():
    with pytest.raises(TypeError, match="pass your function itself"):
        checks.check_oja_update(torch.zeros(3))


def test_not_implemented_error_from_deeper_code_is_an_error_not_a_missing_stub():
    def helper():
        raise NotImplementedError("somebody else's unfinished helper")

    def oja_update(weight, pre, post, plasticity):
        return helper()

    with pytest.raises(checks.CheckFailed, match="raised NotImplementedError: somebody else's") as failure:
        checks.check_oja_update(oja_update)
    assert not isinstance(failure.value, checks.NotImplementedYet)


def test_wrong_shape_dtype_and_type_are_named():
    def transposed(weight, pre, post, plasticity):
        return (plasticity * (post.mT @ pre - post.square().sum(dim=-2).unsqueeze(-1) * weight)).mT

    with pytest.raises(checks.CheckFailed, match=r"shape \(5, 4\), expected \(4, 5\)[\s\S]*transposed shape"):
        checks.check_oja_update(transposed)
    with pytest.raises(checks.CheckFailed, match="dtype torch.float64, expected torch.float32"):
        checks.check_oja_update(lambda W, pre, post, P: torch.zeros(W.shape, dtype=torch.float64))
    with pytest.raises(checks.CheckFailed, match="got a ndarray"):
        checks.check_oja_update(lambda W, pre, post, P: W.numpy())
    with pytest.raises(checks.CheckFailed, match="contains NaN"):
        checks.check_oja_update(lambda W, pre, post, P: torch.full_like(W, float("nan")))


def test_grade_names_missing_functions_and_unknown_assignments():
    with pytest.raises(checks.CheckFailed, match="define oja_update"):
        checks.grade("flp_oja", {})
    with pytest.raises(ValueError, match="assignment must be one of"):
        checks.grade("no such assignment", {})


def test_inputs_are_protected_from_a_function_that_changes_them_in_place():
    def in_place(weight, pre, post, plasticity):  # right values, but scribbles on its inputs afterwards
        update = plasticity * (post.mT @ pre - post.square().sum(dim=-2).unsqueeze(-1) * weight)
        weight.zero_(), pre.zero_(), post.zero_()
        return update

    assert len(checks.check_oja_update(in_place).cases) == 5
