"""Which ``Host`` names the prediction server answers: the guard against DNS rebinding.

A web page can point a name of its own at 127.0.0.1 (DNS rebinding); the
browser then sends the page's requests to a server on the user's machine, with
the page's name in the ``Host`` header. A server with an API key is safe (the
page does not know the key); one without a key answers only names that no
page controls:

    api_key   binds to (host)   allowed_hosts   answers Host
    none      loopback          null            localhost, 127.0.0.1, [::1] (any port)
    none      other address     null            any (the operator exposed it: a warning
                                                at start)
    set       any               null            any
    any       any               [a, b, ...]     only these names (any port)

The health checks answer any name (load balancers probe by address).
"""

from __future__ import annotations

import ipaddress
import re

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE)  # DNS names, IPv4 too


def is_loopback(address: str) -> bool:
    """Whether the server's bind address (``host`` in conf/serve.yaml) is loopback only."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def answered_hosts(bind: str, api_key: str | None,
                   allowed: tuple[str, ...] | None) -> frozenset[str] | None:
    """The Host names the server answers (lower case, no port); None: any."""
    if allowed is not None:
        return frozenset(name.lower() for name in allowed)
    if api_key is None and is_loopback(bind):
        return LOOPBACK_NAMES
    return None


def host_name(header: bytes) -> str | None:
    """The name in a ``Host`` header value, lower case, without its port; None when the
    value is not ``NAME``, ``NAME:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``."""
    try:
        text = header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):  # [IPv6] or [IPv6]:PORT
        name, _, port = text.partition("]")
        name = f"{name}]"
        valid = _ipv6(name)
    else:
        name, colon, port = text.partition(":")
        valid, port = HOST_NAME.fullmatch(name) is not None, colon + port
    if port and not (port.startswith(":") and port[1:].isdigit()):
        return None
    return name if valid else None


def hosts_problem(allowed: tuple[str, ...] | None) -> str | None:
    """What is wrong with ``allowed_hosts`` (None: nothing)."""
    if allowed is None:
        return None
    if not allowed:
        return "an empty list answers no request"
    for name in allowed:
        if not isinstance(name, str) or not (HOST_NAME.fullmatch(name) or _ipv6(name)):
            return (f"{name!r} is not a host name (a DNS name, an IPv4 address or an IPv6 "
                    "address in brackets, without scheme, port or path)")
    return None


def _ipv6(name: str) -> bool:
    """Whether ``name`` is ``[IPv6]``."""
    if not (name.startswith("[") and name.endswith("]")):
        return False
    try:
        ipaddress.IPv6Address(name[1:-1])
    except ValueError:
        return False
    return True
