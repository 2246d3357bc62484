"""Database and storage URLs in messages, logs and tags: never with a password."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit


def redact(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@`` or ``?password=``) as ``***``."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def hide_passwords(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without the passwords it may quote."""
    try:
        parts = urlsplit(str(url))
        passwords = [parts.password, *parse_qs(parts.query).get("password", [])]
    except ValueError:  # not a URL: nothing to hide
        return text
    for password in filter(None, passwords):
        text = text.replace(password, "***")
    return text
