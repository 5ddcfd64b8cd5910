"""Every chapter is teachable in the same way (issue 7): learning objectives at the top, a frame slider whose frames
are stored in the notebook (so it works on the static page), at least two exercises each with a solution folded in
a dropdown, and pointers to what to read next. Reads the committed notebooks; executes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("ch[0-9][0-9]_*.ipynb"))
EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise(?:-start)?\}", re.M)
SOLUTION = re.compile(r"^(`{3,}|:{3,})\{solution(?:-start)?\}[^\n]*\n((?::[^\n]*\n)*)", re.M)


def markdown_of(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def frame_slider_models(notebook) -> list[dict]:
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [m for m in state.values() if "credit-frame-slider" in m.get("state", {}).get("_dom_classes", [])]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 13, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_teachable(path):
    notebook = nbformat.read(path, as_version=4)
    text = markdown_of(notebook)
    assert "learning objectives" in notebook.cells[0].source.lower(), "the first cell states the learning objectives"
    assert any("frame_slider(" in cell.source for cell in notebook.cells if cell.cell_type == "code"), \
        "no frame slider"
    assert frame_slider_models(notebook), "the slider's frames are not stored in the notebook's widget state"
    exercises = EXERCISE.findall(text)
    solutions = SOLUTION.findall(text)
    assert len(exercises) >= 2, f"{len(exercises)} exercise(s)"
    assert len(solutions) >= len(exercises), f"{len(exercises)} exercises but {len(solutions)} solutions"
    folded = [options for _, options in solutions if re.search(r"^:class:\s*dropdown\s*$", options, re.M)]
    assert len(folded) == len(solutions), "every solution is folded (:class: dropdown)"
    assert re.search(r"^#+ What to read next", text, re.M), "no 'What to read next' section"
