"""Names that become one folder's name: datasets (``data/store/<name>``) and experiments
(``outputs/<name>``).

One rule for both, so that a name can never leave its parent folder (no ``/``,
no ``..``), hide itself (no leading ``.``) or break a line in a log or a path
(no newline: ``fullmatch``, since ``$`` accepts a trailing one).
"""

from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit, at most "
             "100 characters (no '/', no '..', no spaces or newlines)")


def is_name(value: object) -> bool:
    """Whether ``value`` is a string that fits :data:`NAME`."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None
