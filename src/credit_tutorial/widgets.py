"""Sliders that work both in a live notebook and on the published, kernel-less HTML page.

One function, :func:`frame_slider`, serves every slider in the book::

    frame_slider(render, values, description="noise c", label=lambda c: f"{c:g}",
                 live=numpy.geomspace(1e-4, 1e-1, 31))

**Static (always).** ``render(value)`` draws one matplotlib figure with the package for every value of the
slider's grid ``values`` (keep it short: at most :data:`MAX_FRAMES`, ideally <= 15 frames at dpi 72-80, since every
frame is stored as a PNG in the executed notebook). The frames sit in an ``ipywidgets.Stack``, and the slider's
index is linked to the stack's ``selected_index`` (``jsdlink``): the link runs in the browser, so on the built HTML page
(no kernel) moving the slider shows the precomputed frame, from the widget state saved in the notebook.

**Live (in a running Jupyter or Colab kernel).** With ``live=`` (a finer grid of values that ``render`` accepts), a
second slider computes frames on demand: a value on the static grid shows its precomputed frame, any other value
is drawn by calling ``render(value)`` in the kernel, i.e. computed with the package right then (and cached). That
row is hidden on the static page, where no kernel could answer it; a kernel reveals it the first time the reader
moves the main slider (only a kernel sees that move), or when ``widget.go_live()`` is called.

Frames always come from ``render``, on the static page and in the kernel, so the two cannot disagree. Needs
ipywidgets >= 8 (``Stack``); with an older ipywidgets (a stock environment that was not upgraded) the slider still
works in a live kernel, by swapping one image from Python, but such a notebook cannot be published statically.
"""

from __future__ import annotations

import io
import math
import numbers
import time
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.figure
import matplotlib.pyplot as plt

MAX_FRAMES = 20  # precomputed frames per slider: each is a PNG stored in the notebook (see tools/notebook.py check)
DPI_RANGE = (30, 200)


def figure_png(figure, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _position(value, grid: Sequence) -> int | None:
    """Index of ``value`` in ``grid`` (real numbers match to 1e-9 relative), or None."""
    for i, candidate in enumerate(grid):
        if isinstance(value, numbers.Real) and isinstance(candidate, numbers.Real):
            if math.isclose(float(value), float(candidate), rel_tol=1e-9, abs_tol=1e-15):
                return i
        elif candidate == value:
            return i
    return None


def _check_grid(name: str, grid: Sequence) -> list:
    grid = list(grid)
    if not grid:
        raise ValueError(f"{name} must hold at least one slider position, got an empty sequence")
    for i, value in enumerate(grid):
        if _position(value, grid[:i]) is not None:
            raise ValueError(f"{name} must not repeat a value; {value!r} appears twice")
    return grid


class FrameSlider(widgets.VBox):
    """What :func:`frame_slider` returns: a VBox (so it displays and embeds like one) that keeps its parts.

    slider: the main ``SelectionSlider`` over ``values`` (its ``index`` selects the frame);
    stack: the ``Stack`` of frames (one ``Image`` per value, plus the live image when ``live`` is given);
    link: the browser-side one-way link (``jsdlink``) from ``slider.index`` to ``stack.selected_index``;
    frames: the PNG bytes of every precomputed frame; live_slider, status, live_row: the live controls (or None).
    """

    def __init__(self, render, values, *, description, start, label, dpi, live):
        self.render, self.values, self.label, self.dpi = render, values, label, dpi
        self.frames = [self._draw(value) for value in values]
        self.slider = widgets.SelectionSlider(
            options=[(label(v), i) for i, v in enumerate(values)], value=start, description=description,
            continuous_update=True, style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
        images = [widgets.Image(value=png, format="png") for png in self.frames]
        if hasattr(widgets, "Stack"):  # ipywidgets >= 8: the frame switch runs in the browser
            self.live_image = widgets.Image(value=b"", format="png") if live is not None else None
            self.stack = widgets.Stack(images + ([self.live_image] if live is not None else []),
                                       selected_index=start)
            # One way: the kernel shows a live frame by selecting index len(values), which a two-way jslink would
            # push back into the slider (clamped to its last position), moving it and replacing the live frame.
            self.link = widgets.jsdlink((self.slider, "index"), (self.stack, "selected_index"))
            screen = self.stack
        else:  # an older ipywidgets: one image whose picture the kernel swaps (no static page possible)
            self.stack = self.link = None
            self.live_image = screen = widgets.Image(value=self.frames[start], format="png")
        self.live_slider = self.status = self.live_row = None
        self._cache: dict[int, bytes] = {}
        self.live_values = live
        if live is not None:
            here = _position(values[start], live)
            self.live_slider = widgets.SelectionSlider(
                options=[(label(v), i) for i, v in enumerate(live)], value=0 if here is None else here,
                description=f"{description} (live)", continuous_update=False,
                style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
            self.status = widgets.Label(value="")
            self.live_row = widgets.HBox([self.live_slider, self.status], layout=widgets.Layout(display="none"))
            self.live_slider.observe(self._on_live_move, names="index")
        self.slider.observe(self._on_move, names="index")
        super().__init__([self.slider, screen] + ([self.live_row] if live is not None else []))
        # CSS classes (kept in the saved widget state) by which tests/test_browser.py finds the parts on the page.
        self.add_class("credit-frame-slider")
        self.slider.add_class("credit-frame-slider-control")
        screen.add_class("credit-frame-slider-frames")

    def _draw(self, value) -> bytes:
        try:
            figure = self.render(value)
        except Exception as error:
            if hasattr(error, "add_note"):  # Python >= 3.11 shows the note under the traceback
                error.add_note(f"frame_slider: render({value!r}) failed")
            raise
        if not isinstance(figure, matplotlib.figure.Figure):
            raise TypeError(f"render must return a matplotlib Figure; render({value!r}) returned "
                            f"{type(figure).__name__} (end the function with `return fig`)")
        return figure_png(figure, dpi=self.dpi)

    def _show_frame(self, index: int) -> None:
        if self.stack is not None:
            self.stack.selected_index = index  # the browser's link does the same; this keeps Python consistent
        else:
            self.live_image.value = self.frames[index]

    def go_live(self) -> None:
        """Show the live row (only meaningful with a running kernel; the first slider move calls it)."""
        if self.live_row is not None and self.live_row.layout.display == "none":
            self.live_row.layout.display = None
            self.status.value = f"kernel running: other values are computed live ({len(self.live_values)} in all)"

    def _on_move(self, change) -> None:
        """The main slider moved. On the static page only the browser's link runs; reaching here means a kernel."""
        self._show_frame(change["new"])
        if self.live_slider is not None:
            here = _position(self.values[change["new"]], self.live_values)
            if here is not None:
                self.live_slider.index = here  # its observer sees a precomputed value: nothing is recomputed
        self.go_live()

    def _on_live_move(self, change) -> None:
        """The live slider moved: show the precomputed frame, or compute this value with the package now."""
        index = change["new"]
        value = self.live_values[index]
        on_grid = _position(value, self.values)
        if on_grid is not None:
            self.slider.index = on_grid
            self._show_frame(on_grid)
            self.status.value = f"{self.label(value)}: precomputed frame"
            return
        if index not in self._cache:
            self.status.value = f"computing {self.label(value)} ..."
            started = time.perf_counter()
            try:
                self._cache[index] = self._draw(value)
            except Exception as error:
                self.status.value = f"{self.label(value)}: failed ({type(error).__name__}: {error})"
                raise
            self.status.value = f"{self.label(value)}: computed live in {time.perf_counter() - started:.1f} s"
        else:
            self.status.value = f"{self.label(value)}: computed live (cached)"
        self.live_image.value = self._cache[index]
        if self.stack is not None:
            self.stack.selected_index = len(self.values)  # the live image sits after the precomputed frames


def frame_slider(render: Callable[[object], "plt.Figure"], values: Sequence, *, description: str = "value",
                 initial=None, label: Callable[[object], str] | None = None, dpi: int = 80,
                 live: Sequence | None = None) -> FrameSlider:
    """A slider over ``values`` whose position selects the figure ``render(value)``, precomputed for every value.

    render: value -> matplotlib Figure, drawn with the package (the figure is closed after rendering).
    values: the slider's grid (1 to MAX_FRAMES distinct values; every one becomes a stored PNG frame).
    initial: the value shown first (one of ``values``; default the first). label: value -> text on the slider
    (default ``str``). dpi: resolution of the stored frames (30-200; 72-80 keeps notebooks small).
    live: optional finer grid for a running kernel (see the module docstring); ``render`` must accept its values.
    Returns a :class:`FrameSlider` (an ``ipywidgets.VBox``).
    """
    if not callable(render):
        raise TypeError(f"render must be a function value -> matplotlib Figure, got {type(render).__name__}")
    values = _check_grid("values", values)
    if len(values) > MAX_FRAMES:
        raise ValueError(f"values holds {len(values)} positions; at most {MAX_FRAMES} precomputed frames are "
                         "allowed (each is a PNG stored in the notebook): pass a coarser grid, and a finer one "
                         "as live=")
    if label is None:
        label = str
    elif not callable(label):
        raise TypeError(f"label must be a function value -> str, got {type(label).__name__}")
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Integral) or not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise ValueError(f"dpi must be an integer in [{DPI_RANGE[0]}, {DPI_RANGE[1]}], got {dpi!r}")
    start = 0 if initial is None else _position(initial, values)
    if start is None:
        raise ValueError(f"initial must be one of values {values}, got {initial!r}")
    if live is not None:
        live = _check_grid("live", live)
    return FrameSlider(render, values, description=description, start=start, label=label, dpi=int(dpi), live=live)
