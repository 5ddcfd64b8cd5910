"""The built book in a real browser: moving a frame slider in headless chromium shows that value's precomputed frame.

Runs on the book that `make book OFFLINE=1` built in _build/html (or the folder CREDIT_TUTORIAL_BOOK_HTML names):
every page holding a frame slider (credit_tutorial.widgets) is served from 127.0.0.1, with every other host
unresolvable, so the page must work without a network. For each slider the test checks the first frame, drags the
handle with the mouse to other positions and checks that the shown image changes to exactly the frame stored for
that position (and the slider's readout to its label), and that the kernel-only live row stays hidden.

Skips, saying what is missing, without chromium (Debian: `apt-get install chromium`) or without an offline build;
CREDIT_TUTORIAL_REQUIRE_BROWSER=1 (set by .ci/run) turns every skip into a failure. Chromium is driven through its
DevTools protocol over a pipe (--remote-debugging-pipe): no port, no package beyond the standard library.
The first tests need no browser: they check the offline build's Sphinx extension (book/_ext/offline_widgets.py).
"""

from __future__ import annotations

import base64
import fcntl
import functools
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("CREDIT_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html"))
REQUIRED = os.environ.get("CREDIT_TUTORIAL_REQUIRE_BROWSER", "") not in ("", "0")
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian/Ubuntu) or name the binary in $CHROMIUM"
BUILD_HINT = "build it with `make book OFFLINE=1`"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
    "--no-first-run", "--no-default-browser-check", "--mute-audio", "--window-size=1280,1600",
    # No network: every host name but the loopback address fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
WIDGET_STATE = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', re.S)
WIDGET_VIEW = re.compile(r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', re.S)
SCRIPT_SRC = re.compile(r'<script[^>]*\bsrc="([^"]+)"')


def unavailable(message: str):
    """Skip, or fail where the browser test is mandatory (CI)."""
    if REQUIRED:
        pytest.fail(f"{message} (mandatory here: CREDIT_TUTORIAL_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message)


@functools.cache
def offline_widgets():
    """book/_ext/offline_widgets.py, the offline build's Sphinx extension, imported by path."""
    spec = importlib.util.spec_from_file_location("offline_widgets", ROOT / "book" / "_ext" / "offline_widgets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the offline build's extension (no browser) ---------------------------------------------------------------------
def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _fake_vendor(vendor: Path, manager_version="1.0.15", requirejs_version=None) -> None:
    ow = offline_widgets()
    manager, requirejs = ow.tarball_names(manager_version)
    vendor.mkdir(parents=True, exist_ok=True)
    _tarball(vendor / manager, {
        "package/package.json": json.dumps({"version": manager_version}).encode(),
        "package/dist/embed-amd.js": b"/* amd */", "package/dist/abc.woff2": b"font",
        "package/dist/embed.js": b"/* not needed */", "package/dist/embed.js.LICENSE.txt": b"licences",
        "package/src/index.ts": b"// not needed"})
    _tarball(vendor / requirejs, {
        "package/package.json": json.dumps({"version": requirejs_version or ow.REQUIREJS_VERSION}).encode(),
        "package/require.js": b"/* require */"})


def _fake_mathjax(vendor: Path, version=None) -> None:
    ow = offline_widgets()
    vendor.mkdir(parents=True, exist_ok=True)
    _tarball(vendor / ow.mathjax_tarball_name(), {
        "package/package.json": json.dumps({"version": version or ow.MATHJAX_VERSION}).encode(),
        "package/LICENSE": b"Apache-2.0", "package/es5/tex-mml-chtml.js": b"/* mathjax */",
        "package/es5/input/tex/extensions/boldsymbol.js": b"/* autoloaded */",
        "package/es5/a11y/assistive-mml.js": b"/* a11y */",
        "package/es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff": b"font",
        "package/es5/tex-svg-full.js": b"/* another component */", "package/es5/sre/mathmaps/en.json": b"{}",
        "package/es5/input/tex/extensions/../../../../evil.js": b"/* never written */"})


def test_offline_mathjax_takes_the_component_its_extensions_and_fonts(tmp_path):
    ow = offline_widgets()
    _fake_mathjax(tmp_path / "vendor")
    destination = tmp_path / "static" / "mathjax"
    (destination / "old").mkdir(parents=True)
    (destination / "old" / "stale.js").write_text("from an older version")
    names = ow.unpack_mathjax(tmp_path / "vendor", destination)
    assert names == sorted(["LICENSE", "tex-mml-chtml.js", "input/tex/extensions/boldsymbol.js",
                            "a11y/assistive-mml.js", "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"])
    assert sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*") if p.is_file()) == names
    assert not (destination / "old").exists() and not (tmp_path / "evil.js").exists()
    with pytest.raises(ow.OfflineWidgetsError, match=r"is not mathjax@"):
        _fake_mathjax(tmp_path / "other", version="3.0.0")
        ow.unpack_mathjax(tmp_path / "other", destination)
    with pytest.raises(ow.OfflineWidgetsError, match=r"missing: .*mathjax-.*\.tgz.*make book OFFLINE=1"):
        ow.unpack_mathjax(tmp_path / "nothing", destination)


def test_offline_unpack_takes_only_what_the_page_loads(tmp_path):
    ow = offline_widgets()
    _fake_vendor(tmp_path / "vendor")
    destination = tmp_path / "static" / "widgets"
    destination.mkdir(parents=True)
    (destination / "stale.js").write_text("from an older version")
    names = ow.unpack(tmp_path / "vendor", destination, "1.0.15")
    assert names == sorted(["embed-amd.js", "abc.woff2", "require.js", "html-manager.LICENSE.txt",
                            "html-manager.package.json", "requirejs.package.json"])
    assert sorted(p.name for p in destination.iterdir()) == names
    assert (destination / "require.js").read_bytes() == b"/* require */"


def test_offline_unpack_errors_name_the_fix(tmp_path):
    ow = offline_widgets()
    with pytest.raises(ow.OfflineWidgetsError, match=r"missing: .*html-manager-1\.0\.15\.tgz.*make book OFFLINE=1"):
        ow.unpack(tmp_path / "vendor", tmp_path / "out", "1.0.15")
    _fake_vendor(tmp_path / "vendor", requirejs_version="2.0.0")
    with pytest.raises(ow.OfflineWidgetsError, match=r"is not requirejs@"):
        ow.unpack(tmp_path / "vendor", tmp_path / "out", "1.0.15")


def test_offline_switch_rewires_the_loader_only_when_asked(tmp_path, monkeypatch):
    ow = offline_widgets()
    yaml = pytest.importorskip("yaml")
    cdn = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["nb_ipywidgets_js"]
    version = ow.html_manager_version(cdn)  # the pin lives in _config.yml only
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    _fake_vendor(tmp_path / "vendor", manager_version=version)
    _fake_mathjax(tmp_path / "vendor")
    app = SimpleNamespace(outdir=str(tmp_path / "_build" / "html"), confdir=str(tmp_path))
    config = SimpleNamespace(nb_ipywidgets_js=dict(cdn), html_static_path=[], mathjax_path=None)

    monkeypatch.delenv(ow.ENV_FLAG, raising=False)
    ow._config_inited(app, config)
    assert config.nb_ipywidgets_js == cdn and config.html_static_path == [] and config.mathjax_path is None

    monkeypatch.setenv(ow.ENV_FLAG, "1")
    ow._config_inited(app, config)
    assert config.nb_ipywidgets_js == {"widgets/require.js": {}, "widgets/embed-amd.js": {}}
    assert config.html_static_path == [str(tmp_path / "_build" / "widgets_static")]
    assert config.mathjax_path == "mathjax/tex-mml-chtml.js"
    static = tmp_path / "_build" / "widgets_static"
    assert (static / "widgets" / "embed-amd.js").is_file() and (static / config.mathjax_path).is_file()


def test_widget_modules_find_their_fonts_next_to_embed_amd():
    ow = offline_widgets()
    cdn = "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.15/dist/embed-amd.js"
    context = {"script_files": [SimpleNamespace(filename="_static/doctools.js"), SimpleNamespace(filename=cdn)],
               "pathto": lambda path, resource: "../" + path}
    assert ow._assets_folder(context) == cdn.removesuffix("embed-amd.js")
    context["script_files"][1] = SimpleNamespace(filename="_static/widgets/embed-amd.js")
    assert ow._assets_folder(context) == "../_static/widgets/"
    assert ow._assets_folder({"script_files": [], "pathto": None}) is None  # pages without widgets: nothing added
    script = ow.requirejs_paths_script("../_static/widgets/")
    assert '"@jupyter-widgets/html-manager/dist/libembed-amd": "libembed-amd"' in script
    # Every module embed-amd.js defines is mapped (checked against the vendored copy when there is one).
    vendored = ROOT / "vendor" / ow.tarball_names("1.0.15")[0]
    if vendored.is_file():
        with tarfile.open(vendored) as archive:
            code = archive.extractfile("package/dist/embed-amd.js").read().decode()
        assert set(re.findall(r'define\("([^"]+)"', code)) == set(ow.AMD_MODULES)


def test_offline_check_finds_remote_widget_scripts(tmp_path):
    ow = offline_widgets()
    state = '<script type="application/vnd.jupyter.widget-state+json">{}</script>'
    (tmp_path / "remote.html").write_text(
        state + '<script crossorigin="anonymous" src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/'
                'html-manager@1.0.15/dist/embed-amd.js"></script>')
    (tmp_path / "local.html").write_text(state + '<script src="_static/widgets/embed-amd.js?v=1"></script>'
                                         '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
                                         '</script>')
    (tmp_path / "no_widgets.html").write_text('<script src="https://cdnjs.cloudflare.com/require.min.js"></script>')
    assert ow.remote_widget_scripts(tmp_path) == ["remote.html"]
    assert ow.remote_mathjax(tmp_path) == ["local.html"]


# ---- the built book in chromium ------------------------------------------------------------------------------------
class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe: NUL-separated JSON, commands on the browser's
    fd 3, replies and events on its fd 4."""

    def __init__(self, binary: str, profile: Path):
        command_r, self._command_w = os.pipe()
        self._reply_r, reply_w = os.pipe()
        # The browser's ends go above 9 first, so that placing them on fds 3 and 4 cannot clobber one with the other.
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (command_r, reply_w))
        os.close(command_r)
        os.close(reply_w)
        self.log = profile / "chromium.log"
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.pid = os.posix_spawn(binary, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2),
            (os.POSIX_SPAWN_DUP2, child_r, 3), (os.POSIX_SPAWN_DUP2, child_w, 4)])
        for fd in (child_r, child_w, log):
            os.close(fd)
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._next_id = 0
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        pending = bytearray()
        while chunk := os.read(self._reply_r, 1 << 16):
            pending += chunk
            while (end := pending.find(b"\0")) >= 0:
                message = json.loads(pending[:end])
                del pending[:end + 1]
                with self._changed:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        with self._changed:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._command_w, data):]
        deadline = time.monotonic() + timeout
        with self._changed:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "it exited" if self._closed else f"no reply in {timeout} s"
                    raise RuntimeError(f"chromium did not answer {method} ({why}); its log: {self.log}")
                self._changed.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event["method"] == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise RuntimeError(f"no {method} from chromium within {timeout} s")
                self._changed.wait(left)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, OSError):
            pass
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.1)
        os.close(self._command_w)


class Page:
    """One tab: navigate, evaluate JavaScript, drag with the mouse, and the URLs it requested."""

    def __init__(self, browser: DevTools, url: str):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            browser.send(f"{domain}.enable", session=self.session)
        browser.send("Page.navigate", {"url": url}, self.session)
        browser.wait_event("Page.loadEventFired", self.session, timeout=60)

    def evaluate(self, expression: str, timeout: float = 30):
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                        "returnByValue": True}, self.session, timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
        mouse = functools.partial(self.browser.send, "Input.dispatchMouseEvent", session=self.session)
        mouse({"type": "mousePressed", "x": x0, "y": y0, "button": "left", "buttons": 1, "clickCount": 1})
        for step in range(1, steps + 1):
            mouse({"type": "mouseMoved", "x": x0 + (x1 - x0) * step / steps, "y": y0 + (y1 - y0) * step / steps,
                   "button": "left", "buttons": 1})
        mouse({"type": "mouseReleased", "x": x1, "y": y1, "button": "left", "buttons": 0, "clickCount": 1})

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e["method"] == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def failed_local_requests(self, origin: str) -> list[str]:
        """Requests to the book's own server that failed or got an error status (a missing file of the book; the
        browser's own favicon.ico request aside)."""
        urls, failed = {}, []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            params = e["params"]
            if e["method"] == "Network.requestWillBeSent":
                urls[params["requestId"]] = params["request"]["url"]
            elif e["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
                failed.append(f"{params['response']['url']} ({params['response']['status']})")
            elif e["method"] == "Network.loadingFailed" and urls.get(params["requestId"], "").startswith(origin):
                failed.append(f"{urls[params['requestId']]} ({params['errorText']})")
        return [f for f in failed if f.startswith(origin) and not f.startswith(f"{origin}/favicon.ico")]

    def problems(self) -> list[str]:
        """Uncaught JavaScript exceptions and console errors on this page (for failure messages)."""
        found = []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            if e["method"] == "Runtime.exceptionThrown":
                found.append(e["params"]["exceptionDetails"].get("exception", {}).get("description", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"]))
        return found


# JavaScript helpers installed in each page: the frame sliders in document order, the shown frame, the geometry.
PAGE_HELPERS = r"""
window.__frameSliders = {
  all: () => Array.from(document.querySelectorAll('.credit-frame-slider')),
  shown: async (i) => {
    const el = __frameSliders.all()[i];
    const images = Array.from(el.querySelectorAll('.credit-frame-slider-frames img'))
      .filter(im => im.checkVisibility());
    const readout = el.querySelector('.credit-frame-slider-control .widget-readout');
    const visibleSliders = Array.from(el.querySelectorAll('.widget-hslider')).filter(s => s.checkVisibility()).length;
    const out = {images: images.length, visibleSliders, readout: readout ? readout.textContent.trim() : null};
    if (images.length !== 1 || !images[0].src) return out;
    out.src = images[0].src;
    const bytes = new Uint8Array(await (await fetch(images[0].src)).arrayBuffer());
    let text = '';
    for (let k = 0; k < bytes.length; k += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
    }
    out.png = btoa(text);
    return out;
  },
  geometry: (i) => {
    const control = __frameSliders.all()[i].querySelector('.credit-frame-slider-control');
    control.scrollIntoView({block: 'center'});
    const track = control.querySelector('.noUi-target').getBoundingClientRect();
    const handle = control.querySelector('.noUi-handle').getBoundingClientRect();
    return {left: track.left, width: track.width, y: track.top + track.height / 2,
            handleX: handle.left + handle.width / 2, handleY: handle.top + handle.height / 2};
  },
};
true
"""


def frame_sliders_in(page_html: str) -> list[dict]:
    """The frame sliders of a built page, in document order, from the widget state the page embeds:
    per slider its position labels, initial index and PNG frame per position."""
    found = WIDGET_STATE.search(page_html)
    if not found:
        return []
    state = json.loads(found.group(1))["state"]  # myst-nb writes the JSON as is (escaping only "</script")

    def model_id(reference: str) -> str:
        return reference.removeprefix("IPY_MODEL_")

    def png(image_id: str) -> bytes:
        buffers = state[image_id].get("buffers", [])
        return next((base64.b64decode(b["data"]) for b in buffers if b["path"] == ["value"]), b"")

    def walk(ident: str):  # pre-order over Box children: the order in which the page shows them
        model = state[ident]
        if "credit-frame-slider" in model["state"].get("_dom_classes", []):
            slider_id, stack_id = (model_id(ref) for ref in model["state"]["children"][:2])
            labels = state[slider_id]["state"]["_options_labels"]
            frames = [png(model_id(ref)) for ref in state[stack_id]["state"]["children"][:len(labels)]]
            yield {"labels": labels, "initial": state[slider_id]["state"]["index"], "frames": frames}
        elif model["model_name"] in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
            for ref in model["state"].get("children", []):
                yield from walk(model_id(ref))

    sliders = []
    for view in WIDGET_VIEW.finditer(page_html):
        ident = json.loads(view.group(1))["model_id"]
        if ident in state:
            sliders.extend(walk(ident))
    return sliders


def pages_with_frame_sliders() -> list[Path]:
    if not HTML_DIR.is_dir():
        return []
    return [p for p in sorted(HTML_DIR.rglob("*.html")) if "credit-frame-slider" in p.read_text(errors="replace")]


@pytest.fixture(scope="module")
def offline_book() -> Path:
    """The built book, when it exists and was built offline (a CDN build cannot work without a network)."""
    if not (HTML_DIR / "index.html").is_file():
        unavailable(f"no built book in {HTML_DIR}: {BUILD_HINT}")
    remote = offline_widgets().remote_widget_scripts(HTML_DIR)
    if remote:
        unavailable(f"{HTML_DIR} was built with the CDN widget loader (e.g. {remote[0]}): {BUILD_HINT}")
    return HTML_DIR


@pytest.fixture(scope="module")
def book_server(offline_book):
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(HTML_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = os.environ.get("CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
         if (found := shutil.which(name))), None)
    if not binary:
        unavailable(f"no chromium found: {INSTALL_HINT}")
    devtools = DevTools(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


def test_book_has_frame_slider_pages_built_offline(offline_book):
    """The built pages with widgets load the widget JavaScript from the book itself, and that JavaScript is there."""
    pages = pages_with_frame_sliders()
    if not pages:
        unavailable(f"no page in {HTML_DIR} holds a frame slider (credit_tutorial.widgets.frame_slider)")
    for page in pages:
        sources = [s.split("?")[0] for s in SCRIPT_SRC.findall(page.read_text())]
        for name in ("require.js", "embed-amd.js"):
            local = [s for s in sources if s.endswith(f"_static/widgets/{name}")]
            assert local, f"{page.relative_to(HTML_DIR)} does not load _static/widgets/{name}"
            assert (page.parent / local[0]).resolve().is_file(), f"{local[0]} is missing next to {page}"


@pytest.mark.parametrize("page", pages_with_frame_sliders() or [None],
                         ids=lambda p: str(p.relative_to(HTML_DIR)) if p else "no-page")
def test_moving_a_slider_shows_its_precomputed_frame(page, book_server, browser):
    if page is None:
        unavailable(f"no page with a frame slider in {HTML_DIR}: {BUILD_HINT}")
    expected = frame_sliders_in(page.read_text())
    assert expected, f"{page} mentions credit-frame-slider but its widget state holds none"
    tab = Page(browser, f"{book_server}/{page.relative_to(HTML_DIR).as_posix()}")
    tab.evaluate(PAGE_HELPERS)

    deadline = time.monotonic() + 30  # the widget manager renders after the load event
    while tab.evaluate("__frameSliders.all().length") < len(expected) or \
            tab.evaluate(f"__frameSliders.shown({len(expected) - 1})").get("png") is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the widgets of {page.name} did not render within 30 s; page errors: {tab.problems()}")
        time.sleep(0.2)
    assert tab.evaluate("__frameSliders.all().length") == len(expected)

    def shown(i):
        return tab.evaluate(f"__frameSliders.shown({i})")

    for i, slider in enumerate(expected):
        n, frames = len(slider["labels"]), slider["frames"]
        before = shown(i)
        assert base64.b64decode(before["png"]) == frames[slider["initial"]], f"slider {i}: wrong first frame"
        assert before["readout"] == slider["labels"][slider["initial"]]
        assert before["visibleSliders"] == 1, f"slider {i}: the kernel-only live row must be hidden on the page"
        targets = [k for k in dict.fromkeys([n - 1, 0, n // 2]) if k != slider["initial"]][:3] if n > 1 else []
        for k in targets:
            geometry = tab.evaluate(f"__frameSliders.geometry({i})")
            x = geometry["left"] + geometry["width"] * k / (n - 1)
            tab.drag(geometry["handleX"], geometry["handleY"], x, geometry["y"])
            deadline = time.monotonic() + 10
            while (now := shown(i)).get("png") is None or base64.b64decode(now["png"]) != frames[k]:
                if time.monotonic() > deadline:
                    pytest.fail(f"{page.name}, slider {i}: dragged to position {k} ({slider['labels'][k]}) but the "
                                f"shown frame is not frame {k} (readout {now.get('readout')!r}); "
                                f"page errors: {tab.problems()}")
                time.sleep(0.1)
            assert now["src"] != before["src"], "the shown image did not change"
            assert now["readout"] == slider["labels"][k]
            before = now

    assert not tab.failed_local_requests(book_server), "the page asked the book for files it does not have"
    remote = [u for u in tab.requested_urls() if not u.startswith((book_server, "data:", "blob:"))]
    widget_js = [u for u in tab.requested_urls() if re.search(r"require(\.min)?\.js|embed-amd\.js|@jupyter-widgets", u)]
    assert widget_js and all(u.startswith(book_server) for u in widget_js), f"widget JS not local: {widget_js}"
    assert not [u for u in remote if re.search(r"jupyter-widgets|require|unpkg", u)], f"widget requests left: {remote}"


def pages_with_math() -> list[Path]:
    """Built pages that hold TeX for MathJax (Sphinx wraps it in elements of class "math")."""
    if not HTML_DIR.is_dir():
        return []
    return [p for p in sorted(HTML_DIR.rglob("*.html")) if 'class="math' in p.read_text(errors="replace")]


def test_equations_render_offline(offline_book, book_server, browser):
    """MathJax comes from the book itself and typesets every equation of a chapter page: no TeX error, no missing
    file (fonts included), no request to another host."""
    pages = [p for p in pages_with_math() if p.name.startswith("ch09")] or pages_with_math()
    if not pages:
        unavailable(f"no page with equations in {HTML_DIR}: {BUILD_HINT}")
    page = pages[0]
    remote = offline_widgets().remote_mathjax(HTML_DIR)
    if remote:
        unavailable(f"{HTML_DIR} loads MathJax from the network (e.g. {remote[0]}): it was built online or before "
                    f"MathJax was vendored; {BUILD_HINT}")
    expected = len(re.findall(r'class="math[^"]*"', page.read_text()))
    tab = Page(browser, f"{book_server}/{page.relative_to(HTML_DIR).as_posix()}")
    typeset = ("(window.MathJax && MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise : "
               "Promise.reject('MathJax did not load')).then(() => document.fonts.ready).then(() => "
               "({containers: document.querySelectorAll('mjx-container').length, "
               "errors: document.querySelectorAll('mjx-merror').length}))")
    deadline = time.monotonic() + 30
    while tab.evaluate("typeof window.MathJax === 'object' && !!MathJax.startup") is not True:
        if time.monotonic() > deadline:
            pytest.fail(f"MathJax did not start on {page.name} within 30 s; page errors: {tab.problems()}")
        time.sleep(0.2)
    result = tab.evaluate(typeset, timeout=60)
    assert result["errors"] == 0, f"{page.name}: {result['errors']} equations failed to typeset"
    assert result["containers"] >= expected > 0, f"{page.name}: {result} for {expected} math elements"
    assert not tab.failed_local_requests(book_server), tab.failed_local_requests(book_server)
    mathjax = [u for u in tab.requested_urls() if "mathjax" in u.lower()]
    assert mathjax and all(u.startswith(book_server) for u in mathjax), f"MathJax not local: {mathjax}"
    assert [u for u in mathjax if u.endswith(".woff")], "MathJax typeset without loading its fonts"
