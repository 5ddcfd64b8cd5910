"""Sliders that work both in a live notebook and on the published, kernel-less HTML page.

:func:`frame_slider` renders one figure per slider value with the package, stores them as PNG images in an
``ipywidgets.Stack`` and links the slider to the stack's visible index *in the browser* (``jslink``), so the
page needs no Python to respond: the widget state saved in the executed notebook carries every frame.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt


def figure_png(figure, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def frame_slider(render: Callable[[object], "plt.Figure"], values: Sequence, *, description: str = "value",
                 initial=None, label: Callable[[object], str] | None = None, dpi: int = 80) -> widgets.VBox:
    """A slider over ``values`` whose position selects the figure ``render(value)``, precomputed for every value.

    render: value → matplotlib Figure (drawn with the package; the figure is closed after rendering).
    values: the slider's grid (at least one value); ``initial`` is the value shown first (default: the first).
    label: how a value is printed on the slider (default ``str``).
    """
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one slider position")
    if initial is not None and initial not in values:
        raise ValueError(f"initial must be one of values {values}, got {initial!r}")
    label = label or str
    start = 0 if initial is None else values.index(initial)
    images = [widgets.Image(value=figure_png(render(v), dpi=dpi), format="png") for v in values]
    stack = widgets.Stack(images, selected_index=start)
    slider = widgets.SelectionSlider(options=[(label(v), i) for i, v in enumerate(values)], value=start,
                                     description=description, continuous_update=True,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])
