"""Whether line 1 of a file of texts names its columns: the rule ingest and batch
prediction share.

A ``text_intent`` source has no header, yet files exported from a spreadsheet often
start with one. Line 1 is taken for a header only when its cells are column names a
person would write (``text,label``, ``utterance,intent``, ...), so that no text is
ever dropped for looking like one.
"""

from __future__ import annotations

from collections.abc import Sequence

TEXT_NAMES = frozenset({"utterance", "text", "sentence", "query", "input"})
LABEL_NAMES = frozenset({"labels", "label", "intent", "intents", "class", "target"})


def looks_like_header(cells: Sequence[str]) -> bool:
    """Whether a first row of ``cells`` is a header: its first cell names a text column
    and its second, where there is one, a label column (case and surrounding spaces
    aside). Cells after the second are not looked at."""
    names = [str(cell).strip().lower() for cell in cells[:2]]
    if not names or names[0] not in TEXT_NAMES:
        return False
    return len(names) == 1 or names[1] in LABEL_NAMES
