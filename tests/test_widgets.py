"""frame_slider: precomputed frames linked in the browser (static page) and live recomputation in a kernel.

A "kernel-side move" is simulated by setting a slider's value from Python, which is what the comm does when a
reader moves the slider in Jupyter or Colab. (The browser side, the link in a real page, is tests/test_browser.py.)
"""

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from ipywidgets.embed import embed_data  # noqa: E402

from credit_tutorial import widgets as cw  # noqa: E402
from credit_tutorial.widgets import MAX_FRAMES, FrameSlider, figure_png, frame_slider  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Renderer:
    """A render function that records its calls; each value draws a visibly different line."""

    def __init__(self):
        self.calls = []

    def __call__(self, value):
        self.calls.append(value)
        height = float(value) if isinstance(value, (int, float)) else len(self.calls) / 10
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, height])
        ax.set_ylim(0, 1)
        return fig


@pytest.fixture
def render():
    return Renderer()


@pytest.fixture(autouse=True)
def no_figures_left_over():
    yield
    plt.close("all")


def test_one_png_frame_per_value_and_figures_closed(render):
    w = frame_slider(render, [0.2, 0.5, 0.8], description="c", label=lambda v: f"{v:.1f}")
    assert isinstance(w, FrameSlider) and isinstance(w, widgets.VBox)
    assert render.calls == [0.2, 0.5, 0.8]
    assert len(w.frames) == 3 and len(w.stack.children) == 3
    assert all(png.startswith(PNG_SIGNATURE) for png in w.frames)
    assert [image.value for image in w.stack.children] == w.frames
    assert len(set(w.frames)) == 3, "different values must give different frames"
    assert w.slider.options == (("0.2", 0), ("0.5", 1), ("0.8", 2))
    assert w.slider.description == "c"
    assert list(w.children) == [w.slider, w.stack]  # no live row unless asked
    assert plt.get_fignums() == [], "every rendered figure is closed"


def test_slider_index_is_linked_one_way_to_the_stack(render):
    w = frame_slider(render, ["a", "b"])
    # jsdlink: runs in the browser, needs no kernel; one way, so that the kernel selecting the live frame (index
    # len(values)) cannot push the slider to its last position (found driving JupyterLab 4 in chromium).
    assert w.link._model_name == "DirectionalLinkModel"
    assert w.link.source == (w.slider, "index")
    assert w.link.target == (w.stack, "selected_index")
    # The saved widget state (what the HTML page gets: every live widget) holds the link, the stack, the frames.
    state = embed_data(views=[w])["manager_state"]["state"]
    links = [m["state"] for m in state.values() if m["model_name"] == "DirectionalLinkModel"
             and m["state"]["source"] == [f"IPY_MODEL_{w.slider.model_id}", "index"]]
    assert links == [dict(links[0], target=[f"IPY_MODEL_{w.stack.model_id}", "selected_index"])]
    stack = state[w.stack.model_id]["state"]
    assert stack["selected_index"] == 0 and len(stack["children"]) == 2


def test_initial_position(render):
    w = frame_slider(render, [1, 2, 3])
    assert w.slider.index == 0 and w.stack.selected_index == 0
    w = frame_slider(render, [0.1, 0.2, 0.3], initial=0.30000000000000004)  # floats match to 1e-9 relative
    assert w.slider.index == 2 and w.stack.selected_index == 2


def test_static_move_shows_precomputed_frame_without_rendering(render):
    w = frame_slider(render, [0.1, 0.9])
    render.calls.clear()
    w.slider.index = 1
    assert w.stack.selected_index == 1
    assert render.calls == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(values=[]), ValueError, "values must hold at least one"),
    (dict(values=[0.1, 0.2, 0.1]), ValueError, "values must not repeat"),
    (dict(values=list(range(MAX_FRAMES + 1))), ValueError, f"at most {MAX_FRAMES} precomputed frames"),
    (dict(values=[1, 2], initial=3), ValueError, r"initial must be one of values \[1, 2\], got 3"),
    (dict(values=[1, 2], dpi=10), ValueError, r"dpi must be an integer in \[30, 200\], got 10"),
    (dict(values=[1, 2], dpi=80.5), ValueError, "dpi must be an integer"),
    (dict(values=[1, 2], label="x"), TypeError, "label must be a function"),
    (dict(values=[1, 2], live=[]), ValueError, "live must hold at least one"),
    (dict(values=[1, 2], live=[1, 1.5, 1.5]), ValueError, "live must not repeat"),
])
def test_bad_input_names_the_argument(render, kwargs, error, match):
    values = kwargs.pop("values")
    with pytest.raises(error, match=match):
        frame_slider(render, values, **kwargs)
    assert render.calls == [], "bad arguments are rejected before anything is rendered"


def test_render_must_be_callable_and_return_a_figure():
    with pytest.raises(TypeError, match="render must be a function"):
        frame_slider("plot", [1])
    with pytest.raises(TypeError, match=r"render must return a matplotlib Figure; render\(1\) returned NoneType"):
        frame_slider(lambda v: None, [1])


def test_render_failure_says_which_value():
    def broken(value):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError) as info:
        frame_slider(broken, [0.5])
    assert "frame_slider: render(0.5) failed" in info.value.__notes__


def test_live_row_is_hidden_until_a_kernel_moves_the_slider(render):
    w = frame_slider(render, [0.1, 0.5], live=[0.1, 0.3, 0.5])
    assert list(w.children) == [w.slider, w.stack, w.live_row]
    assert w.live_row.layout.display == "none"  # the saved state (static page) never shows kernel-only controls
    assert len(w.stack.children) == 3 and w.live_image.value == b""
    w.slider.index = 1  # only a kernel receives this
    assert w.live_row.layout.display is None
    assert "computed live" in w.status.value
    assert w.live_slider.index == 2, "the live slider follows the main slider onto the same value"
    w2 = frame_slider(render, [0.1], live=[0.2])
    w2.go_live()
    assert w2.live_row.layout.display is None


def test_live_slider_computes_off_grid_values_with_render(render):
    w = frame_slider(render, [0.1, 0.5, 0.9], live=[0.1, 0.3, 0.5, 0.7, 0.9], initial=0.5)
    assert w.live_slider.index == 2
    render.calls.clear()

    w.live_slider.value = 1  # the reader picks 0.3, which has no precomputed frame
    assert render.calls == [0.3]
    live_png = bytes(w.live_image.value)
    assert live_png.startswith(PNG_SIGNATURE) and live_png not in w.frames
    assert w.stack.selected_index == 3, "the live image (after the precomputed frames) is shown"
    assert "0.3: computed live in" in w.status.value

    w.live_slider.value = 4  # 0.9 is on the static grid: its precomputed frame, nothing recomputed
    assert render.calls == [0.3]
    assert w.slider.index == 2 and w.stack.selected_index == 2
    assert "precomputed" in w.status.value

    w.live_slider.value = 1  # computed before: cached
    assert render.calls == [0.3] and w.stack.selected_index == 3
    assert "cached" in w.status.value

    w.live_slider.value = 3
    assert render.calls == [0.3, 0.7]


def test_live_failure_is_shown_and_raised():
    def render(value):
        if value > 1:
            raise ValueError("c too large")
        fig, _ = plt.subplots(figsize=(1, 1))
        return fig

    w = frame_slider(render, [0.5, 1.0], live=[0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="c too large"):
        w.live_slider.value = 2
    assert "2.0: failed (ValueError: c too large)" in w.status.value
    assert w.stack.selected_index == 0, "a failed computation leaves the shown frame alone"


def test_without_stack_the_kernel_swaps_one_image(render, monkeypatch):
    """ipywidgets < 8 has no Stack: the slider still works in a live kernel, driven from Python."""
    monkeypatch.delattr(widgets, "Stack")
    w = frame_slider(render, [0.2, 0.6], live=[0.2, 0.4, 0.6])
    assert w.stack is None and w.link is None
    screen = w.children[1]
    assert isinstance(screen, widgets.Image) and screen.value == w.frames[0]
    w.slider.index = 1
    assert screen.value == w.frames[1]
    w.live_slider.value = 1
    assert render.calls[-1] == 0.4 and bytes(screen.value) not in w.frames


def test_figure_png_dpi_sets_the_size():
    sizes = []
    for dpi in (40, 80):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1])
        png = figure_png(fig, dpi=dpi)
        sizes.append(int.from_bytes(png[16:20], "big"))  # IHDR width
    assert sizes[1] == pytest.approx(2 * sizes[0], rel=0.1)
    assert plt.get_fignums() == []


def test_module_constants_are_sane():
    assert 15 <= cw.MAX_FRAMES <= 25
    assert cw.DPI_RANGE[0] <= 72 and cw.DPI_RANGE[1] >= 100
