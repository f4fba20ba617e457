"""Which ``Host`` headers a local server answers: the guard against DNS rebinding.

A page on another site can point its own name at 127.0.0.1 (rebind it) and then read what this server
answers, since the browser sees one origin. The request still names that site in its ``Host`` header, so a
server bound to a given address answers only the names that mean it: localhost, the loopback addresses and
the ``--host`` it was given. Bound to every interface (0.0.0.0, ::) it cannot know its names; there a token
(required for any non-loopback bind) is the guard, and every Host is answered.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The host names (no port, lower case, IPv6 without brackets) a server bound to ``bind`` answers.

    None means any: a wildcard bind, guarded by its token instead.
    """
    name = bind.strip().strip("[]").lower()
    if name in WILDCARD_BINDS:
        return None
    return LOOPBACK_NAMES | {name}


def host_name(header: str) -> str | None:
    """The name part of a ``Host`` header (``[::1]:8000`` -> ``::1``), or None when it is malformed."""
    try:
        parts = urlsplit(f"//{header.strip()}")
        name = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return None
    if not name:
        return None
    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    return name.lower()


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request with this ``Host`` header may be answered (``allowed`` from :func:`allowed_hosts`)."""
    if allowed is None:
        return True
    name = host_name(header or "")
    return name is not None and name in allowed


def refusal(header: str | None) -> str:
    """The one-line answer to a refused Host."""
    shown = (header or "").strip()[:100] or "(none)"
    return (
        f"Host: {shown!r} is not a name of this server; open it as http://127.0.0.1:PORT or http://localhost:PORT "
        "(a foreign Host is how a DNS-rebinding page would reach it)"
    )
