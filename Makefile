# credit-tutorial: the two commands are `make book` and `make test`; both set everything up on a fresh machine.
# Needs python3 (3.10+) and make. Run `make help` for the list of targets.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
BUILD  := _build

# The venv's tools come first on PATH for every recipe (kernels, jupyter-book and nbval all run from the venv).
export PATH := $(BIN):$(PATH)
# Silences the debugger's "frozen modules" warning that ipykernel prints on Python 3.11.
# (Do not set MPLBACKEND here: a kernel then keeps that backend instead of the inline one, and figures vanish.)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

# Extra options: `make test PYTEST_ARGS="-k autograd -x"`, `make book JB_ARGS="--all"`.
PYTEST_ARGS ?=
JB_ARGS     ?=

.DEFAULT_GOAL := help
.PHONY: help book test check notebooks install clean clean-cache distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# ---- set-up: reruns only when requirements.txt or pyproject.toml change --------------------------------------
$(STAMP): requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the pinned requirements and the package into $(VENV) ..."
	@start=$$(date +%s); \
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt && \
	$(VENV)/bin/python -m pip install --quiet -e . && \
	echo "install took $$(( $$(date +%s) - start )) s"
	@touch $@

install: $(STAMP)  ## create .venv and install the pinned requirements and the package (editable)

# ---- the two commands -------------------------------------------------------------------------------------------
# The execution cache (_build/.jupyter_cache) is keyed on the notebooks' code only. When the package changes, the
# cache and Sphinx's environment are dropped so that every chapter runs again against the new package.
PACKAGE_FILES := $(shell find src -type f \( -name '*.py' -o -name '*.npz' \) 2>/dev/null)
$(BUILD)/.package-stamp: $(PACKAGE_FILES) $(STAMP)
	@if [ -d $(BUILD)/.jupyter_cache ]; then \
	    echo "the package or the environment changed: every chapter will be executed again"; \
	    rm -rf $(BUILD)/.jupyter_cache $(BUILD)/.doctrees; fi
	@mkdir -p $(BUILD) && touch $@

# `make book OFFLINE=1`: a book whose widgets and equations need no network (issue 7). The pages then load the widget
# manager (@jupyter-widgets/html-manager's embed-amd.js, the version pinned in _config.yml) and RequireJS from
# _static/widgets/, and MathJax from _static/mathjax/, instead of the CDNs. `book/_ext/offline_widgets.py vendor` runs
# `npm pack` once into vendor/ (git-ignored; the only step that needs a network, the npm registry); the Sphinx
# extension book/_ext/offline_widgets.py, switched on by CREDIT_TUTORIAL_OFFLINE=1, unpacks them into
# _build/widgets_static/, points nb_ipywidgets_js and mathjax_path at the copies, and fails the build if a page still
# loads widget JavaScript or MathJax from the network. Switching between the two
# builds re-renders every page by itself (nb_ipywidgets_js is a Sphinx "env" setting); the execution cache is kept.
# tests/test_browser.py drives this build in headless chromium (.ci/run builds it so).
OFFLINE ?=
OFFLINE_ON := $(filter-out 0 no false,$(OFFLINE))
book: $(STAMP) $(BUILD)/.package-stamp  ## execute every chapter and build the HTML book into _build/html (warnings are errors; OFFLINE=1: widgets need no network)
	$(if $(OFFLINE_ON),$(BIN)/python book/_ext/offline_widgets.py vendor)
	$(if $(OFFLINE_ON),CREDIT_TUTORIAL_OFFLINE=1 ,CREDIT_TUTORIAL_OFFLINE= )$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going $(JB_ARGS)
	@test -f $(BUILD)/html/index.html
	@echo "The book$(if $(OFFLINE_ON), (widgets offline),) is at $(CURDIR)/$(BUILD)/html/index.html"

test: $(STAMP)  ## one pytest run: the unit tests in tests/ and nbval on every chapter notebook in book/
	$(BIN)/python tools/notebook.py check
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest ran no tests (exit 5): that is a failure" >&2; fi; \
	exit $$rc

# ---- for chapter authors ----------------------------------------------------------------------------------------
check: $(STAMP)  ## check that chapter notebooks are executed in order, error-free, < 3 MB and in _toc.yml
	$(BIN)/python tools/notebook.py check

notebooks: $(STAMP)  ## re-execute every chapter notebook in place (fresh kernel, widget state stored)
	$(BIN)/python tools/notebook.py execute --all

clean:  ## remove the built book (the execution cache in _build/.jupyter_cache included)
	rm -rf $(BUILD)

clean-cache:  ## remove caches (pytest, __pycache__) but keep the built book
	rm -rf .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean clean-cache  ## also remove .venv
	rm -rf $(VENV) src/*.egg-info
