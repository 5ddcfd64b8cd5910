"""Widget JavaScript and MathJax served by the book itself, so that sliders and equations work without a network
(`make book OFFLINE=1`).

By default the pages load the widget manager (``@jupyter-widgets/html-manager``'s ``embed-amd.js``) and RequireJS
from CDNs, as ``nb_ipywidgets_js`` in _config.yml says. With ``CREDIT_TUTORIAL_OFFLINE=1`` in the environment this
Sphinx extension (wired in _config.yml under ``sphinx: local_extensions:``) instead

1. unpacks the two npm tarballs that ``vendor`` (below) put in ``vendor/`` into ``_build/widgets_static/widgets/``
   (embed-amd.js with its font files, require.js, their licence notices),
2. adds that folder to ``html_static_path`` and points ``nb_ipywidgets_js`` at the copies in ``_static/widgets/``
   (on config-inited: myst-nb reads the setting later, at builder-inited; it is an "env" setting, so Sphinx re-reads
   every page when it changes, and switching between the two kinds of build needs no ``--all``),
3. unpacks MathJax (the ``tex-mml-chtml`` component, its TeX extensions, accessibility modules, menu and CHTML
   fonts) from the third tarball into ``_build/widgets_static/mathjax/`` and points ``mathjax_path`` at it (Sphinx
   reads a relative ``mathjax_path`` under ``_static``; MathJax finds the rest next to its own script),
4. checks, when the build finishes, that no page with widgets still loads a widget script from the network, and no
   page loads MathJax from the network.

In both builds it also tells embed-amd.js where its font files are. Each AMD module in that script takes its
webpack public path (where its CSS finds the font-awesome fonts) from the URL RequireJS gives the module's name,
which by default is next to the *page* (``book/@jupyter-widgets/html-manager/dist/...``, which does not exist), so
icons in widgets (buttons, play controls) would be blank and every page would request missing files. A RequireJS
``paths`` setting, defined before require.js loads, puts those names in the folder that holds embed-amd.js.

The html-manager version is the one pinned in _config.yml's CDN address, so both builds load the same code.
``python book/_ext/offline_widgets.py vendor`` downloads the three tarballs once with ``npm pack`` (the only step that
needs a network: the npm registry); the Makefile runs it for ``make book OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REQUIREJS_VERSION = "2.3.8"
MATHJAX_VERSION = "3.2.2"  # the last 3.x: Sphinx 7's default CDN address loads mathjax@3
MATHJAX_SUBDIR = "mathjax"  # the copy lands in _static/mathjax/
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx's default mathjax_path names
# What a page can ask for, as paths below the package's es5/ folder: the component itself, what it loads on demand
# (TeX packages through autoload, the assistive-MathML and other accessibility modules the menu turns on) and the
# CHTML fonts. Left out: the other combined components, the SVG output and the 6 MB speech-rule engine (sre/).
MATHJAX_FILES = re.compile(r"es5/(tex-mml-chtml\.js|input/tex/extensions/[\w-]+\.js|a11y/[\w-]+\.js|"
                           r"ui/[\w-]+\.js|output/chtml/fonts/woff-v2/[\w-]+\.woff)")
HTML_MANAGER = "@jupyter-widgets/html-manager"
STATIC_SUBDIR = "widgets"  # the copies land in _static/widgets/
FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")  # font-awesome, which embed-amd.js's CSS references
ENV_FLAG = "CREDIT_TUTORIAL_OFFLINE"
REMOTE_MATHJAX = re.compile(r"<script[^>]+src=\"https?://[^\"]*mathjax", re.I)
REMOTE_WIDGET_SCRIPT = re.compile(r"<script[^>]+src=\"https?://[^\"]*(require(\.min)?\.js|html-manager|embed-amd)")
WIDGET_STATE = 'type="application/vnd.jupyter.widget-state+json"'


class OfflineWidgetsError(RuntimeError):
    pass


def offline_requested() -> bool:
    return os.environ.get(ENV_FLAG, "") not in ("", "0")


def html_manager_version(ipywidgets_js: dict) -> str:
    """The html-manager version in the (CDN) nb_ipywidgets_js setting, e.g. '1.0.15'."""
    for url in ipywidgets_js:
        found = re.search(re.escape(HTML_MANAGER) + r"@(\d+\.\d+\.\d+)/", url)
        if found:
            return found.group(1)
    raise OfflineWidgetsError(f"nb_ipywidgets_js in _config.yml names no {HTML_MANAGER}@X.Y.Z address: "
                              f"{list(ipywidgets_js)}")


def tarball_names(manager_version: str) -> tuple[str, str]:
    """The file names `npm pack` gives the two widget packages."""
    return f"jupyter-widgets-html-manager-{manager_version}.tgz", f"requirejs-{REQUIREJS_VERSION}.tgz"


def mathjax_tarball_name() -> str:
    """The file name `npm pack` gives the pinned MathJax."""
    return f"mathjax-{MATHJAX_VERSION}.tgz"


def _read_member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)  # read by name: nothing in the archive chooses where files are written
    if member is None:
        raise OfflineWidgetsError(f"{archive.name} has no file {name}")
    return member.read()


def _package_version(archive: tarfile.TarFile) -> str:
    return json.loads(_read_member(archive, "package/package.json"))["version"]


def _require_tarballs(what: str, *tarballs: Path) -> None:
    """Raise, naming the missing files and the command that fetches them, unless every tarball is there."""
    missing = [str(p) for p in tarballs if not p.is_file()]
    if missing:
        raise OfflineWidgetsError(f"{ENV_FLAG}=1 needs the vendored {what}, missing: {', '.join(missing)}. "
                                  "Run `make book OFFLINE=1` (it runs `python book/_ext/offline_widgets.py vendor`).")


def _check_version(archive: tarfile.TarFile, tarball: Path, package: str, version: str) -> None:
    if _package_version(archive) != version:
        raise OfflineWidgetsError(f"{tarball} is not {package}@{version}")


def unpack(vendor: Path, destination: Path, manager_version: str) -> list[str]:
    """Write embed-amd.js, its fonts and require.js from the vendored tarballs into ``destination``; return names."""
    manager_tgz, requirejs_tgz = (vendor / name for name in tarball_names(manager_version))
    _require_tarballs("widget JavaScript", manager_tgz, requirejs_tgz)
    files: dict[str, bytes] = {}
    with tarfile.open(manager_tgz) as archive:
        _check_version(archive, manager_tgz, HTML_MANAGER, manager_version)
        for name in archive.getnames():
            base = name.rsplit("/", 1)[-1]
            if name.startswith("package/dist/") and (base.endswith(FONT_SUFFIXES) or base in ("embed-amd.js",)):
                files[base] = _read_member(archive, name)
        files["html-manager.LICENSE.txt"] = _read_member(archive, "package/dist/embed.js.LICENSE.txt")
        files["html-manager.package.json"] = _read_member(archive, "package/package.json")
    with tarfile.open(requirejs_tgz) as archive:
        _check_version(archive, requirejs_tgz, "requirejs", REQUIREJS_VERSION)
        files["require.js"] = _read_member(archive, "package/require.js")
        files["requirejs.package.json"] = _read_member(archive, "package/package.json")
    if "embed-amd.js" not in files:
        raise OfflineWidgetsError(f"{manager_tgz} has no dist/embed-amd.js")
    return _write_tree(destination, files)


def _write_tree(destination: Path, files: dict[str, bytes]) -> list[str]:
    """Make ``destination`` hold exactly ``files`` (relative POSIX paths → contents): remove anything else there and
    write only what changed, so Sphinx sees unchanged static files as unchanged. Returns the sorted paths."""
    destination.mkdir(parents=True, exist_ok=True)
    for stale in sorted(destination.rglob("*"), reverse=True):  # files before the folders that hold them
        relative = stale.relative_to(destination).as_posix()
        if stale.is_file() and relative not in files:
            stale.unlink()
        elif stale.is_dir() and not any(name.startswith(relative + "/") for name in files):
            stale.rmdir()
    for name, data in files.items():
        target = destination / name  # names are chosen by this module's patterns, never taken from an archive path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    return sorted(files)


def unpack_mathjax(vendor: Path, destination: Path) -> list[str]:
    """Write the MathJax files a page can load (:data:`MATHJAX_FILES`, in their es5/ layout) and the licence into
    ``destination``; remove anything else there. Returns the relative paths written."""
    tarball = vendor / mathjax_tarball_name()
    _require_tarballs("MathJax", tarball)
    files: dict[str, bytes] = {}
    with tarfile.open(tarball) as archive:
        _check_version(archive, tarball, "mathjax", MATHJAX_VERSION)
        for name in archive.getnames():
            found = MATHJAX_FILES.fullmatch(name.removeprefix("package/"))
            if found:
                files[found.group(1)] = _read_member(archive, name)
        files["LICENSE"] = _read_member(archive, "package/LICENSE")
    if MATHJAX_ENTRY not in files:
        raise OfflineWidgetsError(f"{tarball} has no es5/{MATHJAX_ENTRY}")
    return _write_tree(destination, files)


def local_ipywidgets_js() -> dict[str, dict]:
    """nb_ipywidgets_js for the offline build: the same two scripts, from _static/widgets/ (relative to _static)."""
    return {f"{STATIC_SUBDIR}/require.js": {}, f"{STATIC_SUBDIR}/embed-amd.js": {}}


# ---- the Sphinx extension ------------------------------------------------------------------------------------------
def _config_inited(app, config) -> None:
    if not offline_requested():
        return
    from sphinx.errors import ExtensionError

    version = html_manager_version(config.nb_ipywidgets_js)
    build_dir = Path(app.outdir).parent  # _build/html -> _build
    static_root = build_dir / "widgets_static"
    try:
        unpack(Path(app.confdir) / "vendor", static_root / STATIC_SUBDIR, version)
        unpack_mathjax(Path(app.confdir) / "vendor", static_root / MATHJAX_SUBDIR)
    except OfflineWidgetsError as error:
        raise ExtensionError(str(error)) from None
    config.html_static_path = [*config.html_static_path, str(static_root)]
    config.nb_ipywidgets_js = local_ipywidgets_js()
    config.mathjax_path = f"{MATHJAX_SUBDIR}/{MATHJAX_ENTRY}"  # relative: Sphinx looks under _static


# The AMD module names embed-amd.js defines (html-manager 1.0.x): each finds its fonts next to its own URL.
AMD_MODULES = ("@jupyter-widgets/base", "@jupyter-widgets/base7", "@jupyter-widgets/controls",
               "@jupyter-widgets/controls7", "@jupyter-widgets/html-manager",
               "@jupyter-widgets/html-manager/dist/libembed-amd")


def _assets_folder(context: dict) -> str | None:
    """The folder of the page's embed-amd.js (a CDN address, or a path relative to the page), or None."""
    for script in context.get("script_files", []):
        name = str(getattr(script, "filename", script) or "").split("?")[0]
        if name.endswith("embed-amd.js"):
            if "://" in name:
                return name.rsplit("/", 1)[0] + "/"
            return context["pathto"](f"_static/{STATIC_SUBDIR}/", resource=True)
    return None


def requirejs_paths_script(folder: str) -> str:
    """JavaScript that maps the widget modules' names into ``folder`` (run before require.js loads)."""
    paths = {name: name.rsplit("/", 1)[-1] for name in AMD_MODULES}
    return ("(function () { var base = new URL(" + json.dumps(folder) + ", document.baseURI).href, paths = {}, "
            "names = " + json.dumps(paths) + "; for (var name in names) paths[name] = base + names[name]; "
            "if (typeof window.require === 'function') window.require.config({paths: paths}); "
            "else window.require = {paths: paths}; })();")


def _html_page_context(app, pagename, templatename, context, doctree) -> None:
    folder = _assets_folder(context)
    if folder is not None:  # an inline script that runs before the widget scripts (priority < 500)
        app.add_js_file(None, priority=450, body=requirejs_paths_script(folder))


def remote_widget_scripts(html_dir: Path) -> list[str]:
    """Pages that hold widgets yet load a widget script from the network (should be none offline)."""
    offenders = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        if WIDGET_STATE in text and REMOTE_WIDGET_SCRIPT.search(text):
            offenders.append(str(page.relative_to(html_dir)))
    return offenders


def remote_mathjax(html_dir: Path) -> list[str]:
    """Pages that load MathJax from the network (should be none offline)."""
    return [str(page.relative_to(html_dir)) for page in sorted(html_dir.rglob("*.html"))
            if REMOTE_MATHJAX.search(page.read_text(encoding="utf-8", errors="replace"))]


def _build_finished(app, exception) -> None:
    if exception is not None or not offline_requested() or app.builder.format != "html":
        return
    from sphinx.errors import ExtensionError

    offenders = remote_widget_scripts(Path(app.outdir))
    if offenders:
        raise ExtensionError(f"offline build, yet these pages load widget JavaScript from the network: {offenders}")
    offenders = remote_mathjax(Path(app.outdir))
    if offenders:
        raise ExtensionError(f"offline build, yet these pages load MathJax from the network: {offenders}")


def setup(app):
    app.connect("config-inited", _config_inited)  # default priority 500: before Sphinx validates html_static_path
    app.connect("html-page-context", _html_page_context, priority=600)  # after myst-nb added the widget scripts
    app.connect("build-finished", _build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


# ---- `python book/_ext/offline_widgets.py vendor`: fetch the tarballs once -------------------------------------------
def vendor(root: Path) -> list[Path]:
    """`npm pack` the pinned html-manager, requirejs and MathJax into root/vendor/ (skipped when already there)."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    version = html_manager_version(config["sphinx"]["config"]["nb_ipywidgets_js"])
    target = root / "vendor"
    wanted = dict(zip(tarball_names(version), (f"{HTML_MANAGER}@{version}", f"requirejs@{REQUIREJS_VERSION}")))
    wanted[mathjax_tarball_name()] = f"mathjax@{MATHJAX_VERSION}"
    missing = {name: spec for name, spec in wanted.items() if not (target / name).is_file()}
    if missing:
        target.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as scratch:  # a download that fails leaves nothing behind
            try:
                subprocess.run(["npm", "pack", "--silent", *missing.values()], cwd=scratch, check=True,
                               stdout=subprocess.DEVNULL)
            except FileNotFoundError:
                raise OfflineWidgetsError("`make book OFFLINE=1` needs npm once, to vendor the widget JavaScript and MathJax "
                                          "(Debian: apt-get install npm)") from None
            for name in missing:
                with tarfile.open(Path(scratch) / name) as archive:  # a complete, readable tarball, or an error
                    _package_version(archive)
                os.replace(Path(scratch) / name, target / name)
    return [target / name for name in wanted]


if __name__ == "__main__":
    if sys.argv[1:] != ["vendor"]:
        sys.exit("usage: python book/_ext/offline_widgets.py vendor   (run from the repository root)")
    try:
        for path in vendor(Path.cwd()):
            print(f"vendored {path}")
    except (OfflineWidgetsError, subprocess.CalledProcessError) as error:
        sys.exit(f"offline_widgets: {error}")
