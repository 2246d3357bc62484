"""A Griffe extension for the API reference: Sphinx roles as plain code.

The docstrings cross-reference with Sphinx roles (``:func:`load_package```,
``:class:`~dlforge.data.Store```), which Markdown would show literally. This
turns each into inline code of its target (the last dotted part after ``~``)
before the docstring is parsed. mkdocs.yml loads it for mkdocstrings.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """Every role in ``text`` as inline code."""
    return ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


class SphinxRoles(griffe.Extension):
    """Rewrite each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
