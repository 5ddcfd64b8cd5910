"""Small helpers for the chapters: quote computed numbers in the prose, and check claims with a message.

``glue(name, value)`` stores a value under ``name`` so that the chapter's text can quote it with
``{glue:text}`name:.1f```; where myst-nb is not installed (e.g. on Colab) it does nothing, so a chapter runs
anywhere. The value is not displayed in the notebook.
"""

from __future__ import annotations


def glue(name: str, value, display: bool = False):
    """Make ``value`` quotable in the chapter text as ``{glue:text}`name```; returns the value."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # running outside Jupyter Book (Colab, plain Jupyter): nothing to glue into
        return value
    myst_glue(name, value, display=display)
    return value
