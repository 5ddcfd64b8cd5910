#!/usr/bin/env python3
"""Chapter notebooks: convert to and from percent-format scripts, execute in place, check before committing.

    python tools/notebook.py py2nb SRC.py DEST.ipynb     percent-format script -> notebook (no outputs)
    python tools/notebook.py nb2py SRC.ipynb DEST.py     notebook -> percent-format script (the inverse)
    python tools/notebook.py execute NB.ipynb [...]      run top to bottom in a fresh kernel, write in place
    python tools/notebook.py execute --all               ... every chapter notebook in book/
    python tools/notebook.py check [NB.ipynb ...]        every chapter notebook is executed, clean and small
    python tools/notebook.py sync-text SRC.py NB.ipynb   prose-only edit: copy the markdown, keep the outputs

Percent format (as Jupytext writes it): a line `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose
lines are commented with `# ` (an empty markdown line is a lone `#`); `# %% [raw]` a raw cell, commented the same
way. Cell tags go on the marker line: `# %% tags=["hide-input"]`. Cells are separated by one blank line; blank
lines at the start or end of a code cell are not part of it. Round trip: nb2py then py2nb gives back every cell's
type, source and tags exactly (nb2py warns when it has to drop blank lines at the edges of a code cell), and
py2nb then nb2py gives back a script written in this canonical layout byte for byte.

Uses only nbformat and nbclient, which Jupyter Book already installs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = REPO_ROOT / "book"
NOT_CHAPTERS = ("assignments", "_build", ".ipynb_checkpoints")  # folders under book/ that hold no chapters
MAX_NOTEBOOK_BYTES = 3 * 1024 * 1024
CELL_TIMEOUT_S = 600
NBFORMAT_MINOR = 5

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# language_info without the Python version, so that re-executing on another machine does not change the file.
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info", "widgets")
KEPT_CELL_METADATA = ("tags", "mystnb", "jupyter")

MARKER = re.compile(r"^# %%(?P<rest>.*)$")
MARKER_REST = re.compile(r"^(?:\s+\[(?P<kind>markdown|md|raw)\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")


class NotebookToolError(Exception):
    """A problem in the user's input: reported as one message, without a traceback."""


# ----------------------------------------------------------------------------------------------------------------
# percent format <-> notebook


def _strip_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _uncomment(line: str, path: Path, lineno: int) -> str:
    if line == "#":
        return ""
    if line.startswith("# "):
        return line[2:]
    if not line.strip():
        return ""
    raise NotebookToolError(
        f"{path}:{lineno}: every line of a markdown or raw cell must start with '# ' (or be a lone '#'); got {line!r}"
    )


def percent_to_notebook(text: str, path: Path = Path("<string>")) -> nbformat.NotebookNode:
    """Parse a percent-format script into a notebook with no outputs and deterministic cell ids."""
    lines = text.splitlines()
    cells: list[tuple[str, list[str], list[str], int]] = []  # (kind, tags, raw lines, first line number)
    preamble: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        match = MARKER.match(line)
        if match is None:
            (cells[-1][2] if cells else preamble).append(line)
            continue
        rest = MARKER_REST.match(match.group("rest"))
        if rest is None:
            raise NotebookToolError(
                f"{path}:{lineno}: cannot read the cell marker {line!r}; "
                "expected '# %%', '# %% [markdown]', '# %% [raw]', optionally followed by tags=[\"...\"]"
            )
        kind = {"md": "markdown", None: "code"}.get(rest.group("kind"), rest.group("kind"))
        tags: list[str] = []
        if rest.group("tags"):
            try:
                tags = json.loads(rest.group("tags"))
            except json.JSONDecodeError as err:
                raise NotebookToolError(f"{path}:{lineno}: tags must be a JSON list of strings: {err}") from None
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise NotebookToolError(f"{path}:{lineno}: tags must be a JSON list of strings, got {tags!r}")
        cells.append((kind, tags, [], lineno + 1))
    if any(line.strip() for line in preamble):
        raise NotebookToolError(f"{path}:1: the script must start with a cell marker ('# %%' or '# %% [markdown]')")

    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = NBFORMAT_MINOR
    for index, (kind, tags, raw, first_lineno) in enumerate(cells):
        body = _strip_blank_edges(raw)
        if kind == "code":
            source = "\n".join(body)
            cell = nbformat.v4.new_code_cell(source)
        else:
            offset = raw.index(body[0]) if body else 0
            source = "\n".join(_uncomment(line, path, first_lineno + offset + i) for i, line in enumerate(body))
            cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_raw_cell)(source)
        cell.id = f"cell-{index:03d}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    _set_clean_notebook_metadata(nb)
    return nb


def notebook_to_percent(nb: nbformat.NotebookNode, path: Path = Path("<notebook>")) -> str:
    """Write a notebook's cells (type, source, tags) as a percent-format script; outputs are dropped."""
    chunks = []
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n") if cell.source else []
        if cell.cell_type == "code" and lines != _strip_blank_edges(lines):
            print(f"warning: {path}: cell {index} starts or ends with blank lines; the script drops them",
                  file=sys.stderr)
            lines = _strip_blank_edges(lines)
        marker = "# %%" + {"code": "", "markdown": " [markdown]", "raw": " [raw]"}[cell.cell_type]
        tags = cell.get("metadata", {}).get("tags")
        if tags:
            marker += " tags=" + json.dumps(list(tags))
        if cell.cell_type == "code":
            for lineno, line in enumerate(lines):
                if MARKER.match(line):
                    raise NotebookToolError(f"{path}: cell {index}, line {lineno + 1} starts with '# %%': rename it")
            body = lines
        else:
            body = [("# " + line) if line else "#" for line in lines]
            for lineno, line in enumerate(body):
                if MARKER.match(line):
                    raise NotebookToolError(f"{path}: cell {index}, line {lineno + 1} starts with '%%': rephrase it")
        chunks.append("\n".join([marker, *body]))
    return "\n\n".join(chunks) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# files


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, so a failure leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    nbformat.validate(nb)
    _write_atomically(path, nbformat.writes(nb, version=4) + "\n")


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    if not path.is_file():
        raise NotebookToolError(f"{path}: no such notebook")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for malformed JSON
        raise NotebookToolError(f"{path}: not a readable notebook: {err}") from None


def _set_clean_notebook_metadata(nb: nbformat.NotebookNode) -> None:
    kept = {key: nb.metadata[key] for key in KEPT_NOTEBOOK_METADATA if key in nb.metadata}
    kept["kernelspec"] = dict(KERNELSPEC)
    kept["language_info"] = dict(LANGUAGE_INFO)
    nb.metadata = nbformat.from_dict(kept)
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA})


def chapter_notebooks() -> list[Path]:
    """Every chapter notebook: book/**/*.ipynb except assignments, build output and checkpoints."""
    found = []
    for path in sorted(BOOK_DIR.rglob("*.ipynb")):
        if any(part in NOT_CHAPTERS for part in path.relative_to(BOOK_DIR).parts[:-1]):
            continue
        found.append(Path(os.path.relpath(path)))
    return found


# ----------------------------------------------------------------------------------------------------------------
# commands


def cmd_py2nb(args: argparse.Namespace) -> int:
    src, dest = Path(args.src), Path(args.dest)
    if src.suffix != ".py":
        raise NotebookToolError(f"SRC must be a .py script, got {src}")
    if dest.suffix != ".ipynb":
        raise NotebookToolError(f"DEST must end in .ipynb, got {dest}")
    if not src.is_file():
        raise NotebookToolError(f"{src}: no such file")
    nb = percent_to_notebook(src.read_text(encoding="utf-8"), src)
    _write_notebook(nb, dest)
    print(f"wrote {dest} ({len(nb.cells)} cells, not executed: run `python tools/notebook.py execute {dest}`)")
    return 0


def cmd_nb2py(args: argparse.Namespace) -> int:
    src, dest = Path(args.src), Path(args.dest)
    if dest.suffix != ".py":
        raise NotebookToolError(f"DEST must end in .py, got {dest}")
    nb = _read_notebook(src)
    _write_atomically(dest, notebook_to_percent(nb, src))
    print(f"wrote {dest} ({len(nb.cells)} cells)")
    return 0


def cmd_sync_text(args: argparse.Namespace) -> int:
    """Copy the markdown of a percent-format script into an executed notebook whose code is unchanged.

    For prose-only edits: the outputs stay valid because no code cell differs (checked cell by cell)."""
    src, dest = Path(args.src), Path(args.dest)
    fresh = percent_to_notebook(src.read_text(encoding="utf-8"), src)
    executed = _read_notebook(dest)
    kinds = lambda nb: [(c.cell_type, c.source if c.cell_type == "code" else None) for c in nb.cells]
    if [k for k in kinds(fresh) if k[0] == "code"] != [k for k in kinds(executed) if k[0] == "code"] \
            or [c.cell_type for c in fresh.cells] != [c.cell_type for c in executed.cells]:
        print(f"{dest}: the code cells (or the cell layout) differ from {src}; execute it again instead",
              file=sys.stderr)
        return 1
    changed = 0
    for new, old in zip(fresh.cells, executed.cells):
        if new.cell_type != "code" and new.source != old.source:
            old.source = new.source
            changed += 1
    _write_notebook(executed, dest)
    print(f"updated {changed} text cell(s) of {dest}")
    return 0


def _format_cell_error(path: Path, nb: nbformat.NotebookNode, err: Exception) -> str:
    """Name the failing cell (index and first line) and give the traceback nbclient captured."""
    failing = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            failing = index
            break
    where = "a cell"
    if failing is not None:
        first_line = next((ln for ln in nb.cells[failing].source.splitlines() if ln.strip()), "")
        where = f"cell {failing} ({first_line.strip()[:70]!r})"
    return f"FAILED {path}: {where} raised an error; the file was left unchanged.\n{err}"


def execute_notebook(path: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Execute `path` in a fresh python3 kernel, in its own folder, and write it back; returns the wall time."""
    from nbclient import NotebookClient  # imported here so that py2nb/nb2py/check work without a kernel

    nb = _read_notebook(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    _set_clean_notebook_metadata(nb)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.resolve().parent)}},
        store_widget_state=True,
        record_timing=False,
        allow_errors=False,
    )
    started = time.perf_counter()
    try:
        client.execute()
    except Exception as err:
        raise NotebookToolError(_format_cell_error(path, nb, err)) from None
    seconds = time.perf_counter() - started
    _set_clean_notebook_metadata(nb)  # keeps the widget state nbclient stored
    _write_notebook(nb, path)
    return seconds


def cmd_execute(args: argparse.Namespace) -> int:
    if args.all == bool(args.notebooks):
        raise NotebookToolError("name the notebooks to execute, or give --all (every chapter notebook), not both")
    names = [str(p) for p in chapter_notebooks()] if args.all else args.notebooks
    failures = []
    for name in names:
        path = Path(name)
        if path.suffix != ".ipynb":
            raise NotebookToolError(f"expected .ipynb files, got {path}")
        print(f"executing {path} ...", flush=True)
        try:
            seconds = execute_notebook(path, timeout=args.timeout)
        except NotebookToolError as err:
            print(err, file=sys.stderr, flush=True)
            failures.append(path)
            continue
        size = path.stat().st_size
        print(f"  ok  {path}  {seconds:6.1f} s  {size / 1024:7.0f} KiB", flush=True)
    if failures:
        print(f"{len(failures)} of {len(names)} notebook(s) failed: {', '.join(map(str, failures))}",
              file=sys.stderr)
        return 1
    return 0


def check_notebook(path: Path) -> list[str]:
    """Problems that keep a chapter notebook from being committed (empty list when it is fine)."""
    problems = []
    size = path.stat().st_size
    if size >= MAX_NOTEBOOK_BYTES:
        problems.append(f"{size / 2**20:.1f} MB, the limit is {MAX_NOTEBOOK_BYTES / 2**20:.0f} MB "
                        "(lower the figure dpi or the number of frames)")
    nb = _read_notebook(path)
    counts = [cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    if counts and all(count is None for count in counts):
        problems.append("not executed (run tools/notebook.py execute)")
    elif counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts are {counts}, expected 1..{len(counts)} in order: "
                        "re-execute it top to bottom with tools/notebook.py execute")
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"cell {index} has an error output ({output.get('ename')}: {output.get('evalue')})")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec is not python3 (re-execute it with tools/notebook.py execute)")
    return problems


def _toc_files() -> set[str]:
    toc = REPO_ROOT / "_toc.yml"
    if not toc.is_file():
        return set()
    entries = re.findall(r"^\s*-?\s*file:\s*(\S+)", toc.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {entry.removesuffix(".ipynb").removesuffix(".md") for entry in entries}


def cmd_check(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.notebooks] if args.notebooks else chapter_notebooks()
    in_toc = _toc_files()
    bad = 0
    for path in paths:
        problems = check_notebook(path)
        if not args.notebooks and path.resolve().relative_to(REPO_ROOT).with_suffix("").as_posix() not in in_toc:
            problems.append("not listed in _toc.yml, so the book does not show it")
        if problems:
            bad += 1
            print(f"FAIL {path}:\n" + "\n".join(f"  - {p}" for p in problems))
        else:
            print(f"ok   {path}")
    print(f"{len(paths) - bad} of {len(paths)} chapter notebook(s) pass the check")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/notebook.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("py2nb", help="percent-format script -> notebook without outputs")
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(run=cmd_py2nb)
    p = commands.add_parser("nb2py", help="notebook -> percent-format script")
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(run=cmd_nb2py)
    p = commands.add_parser("sync-text", help="copy markdown from a script into an executed notebook (code unchanged)")
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(run=cmd_sync_text)
    p = commands.add_parser("execute", help="execute notebooks in place in a fresh kernel, storing widget state")
    p.add_argument("notebooks", nargs="*", metavar="NB.ipynb")
    p.add_argument("--all", action="store_true", help="every chapter notebook in book/ (not assignments)")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell (default %(default)s)")
    p.set_defaults(run=cmd_execute)
    p = commands.add_parser("check", help="chapter notebooks are executed in order, error-free and < 3 MB")
    p.add_argument("notebooks", nargs="*", metavar="NB.ipynb", help="default: every chapter notebook in book/")
    p.set_defaults(run=cmd_check)
    args = parser.parse_args(argv)
    if getattr(args, "timeout", 1) <= 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    try:
        return args.run(args)
    except NotebookToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
