"""Database and storage URLs in messages, logs and tags: never with a password.

URLs are parsed as SQLAlchemy parses them (MLflow and Optuna hand them to
SQLAlchemy): the password is what stands between the user name's ``:`` and
the host's ``@``, ``%``-escapes decoded, or a ``password=`` query parameter.
A password with an unescaped ``@`` makes SQLAlchemy read part of it as the
host; that part is hidden too. sqlalchemy is imported only when a string looks
like a URL, so that importing this module costs nothing.
"""

from __future__ import annotations

from urllib.parse import quote

HIDDEN = "***"


def redact(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@`` or ``?password=``) as ``***``;
    a URL without one, or a string that is no URL, unchanged."""
    text = str(url)
    parsed = _parse(text)
    if parsed is None or not _passwords(parsed):
        return text
    hidden = parsed.update_query_dict({k: HIDDEN for k in parsed.query if _is_password(k)})
    rendered = hidden.render_as_string(hide_password=True)
    return rendered.replace(quote(HIDDEN, safe=""), HIDDEN)


def has_password(value) -> bool:
    """Whether ``value`` is a URL that carries a password."""
    parsed = _parse(value) if isinstance(value, str) else None
    return parsed is not None and bool(_passwords(parsed))


def hide_passwords(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without the passwords it may quote."""
    parsed = _parse(str(url))
    for password in _passwords(parsed) if parsed is not None else []:
        for form in dict.fromkeys([password, quote(password, safe=""), quote(password)]):
            text = text.replace(form, HIDDEN)
    return text


def _parse(text: str):
    """SQLAlchemy's URL of ``text``, the host freed of a password's unescaped ``@``;
    None when ``text`` is no URL."""
    if "://" not in text:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):
        return None
    if url.host and "@" in url.host:  # user:p@ss@host: everything before the last @ is secret
        rest, host = url.host.rsplit("@", 1)
        url = url.set(password=f"{url.password or ''}@{rest}", host=host)
    return url


def _passwords(url) -> list[str]:
    in_query = [v for k, values in url.query.items() if _is_password(k)
                for v in ([values] if isinstance(values, str) else values)]
    return [p for p in (url.password, *in_query) if p]


def _is_password(key: str) -> bool:
    return "password" in key.lower()
