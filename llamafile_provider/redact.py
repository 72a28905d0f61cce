"""Keeping secrets out of everything people read: errors, log lines, reprs, ``config`` output.

Two kinds of secret reach the package: the API key (a ``SecretStr`` setting, sent only as a
header) and credentials written into a server URL (``http://user:pw@host``, for a proxy in
front of the server). URLs are split once, at the edge, into a credential-free URL (the one
every message uses) and a header; ``mask_url`` / ``redact`` cover text built before that.
Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# scheme://userinfo@ — userinfo is anything up to an '@' that comes before the host's end.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without ``user:password@``, the Basic ``Authorization`` header they meant)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.netloc.rsplit("@", 1)[1]
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), {
        "Authorization": f"Basic {token}"}


def mask_url(url: str) -> str:
    """``http://user:pw@host:8080/v1`` -> ``http://***@host:8080/v1``; other URLs unchanged."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", url)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URL credentials masked and every given secret (API key...) replaced."""
    text = mask_url(text)
    for secret in secrets:
        if secret and len(secret) >= 3:  # shorter strings would mangle ordinary words
            text = text.replace(secret, MASK)
    return text


def mask_secret(secret: str) -> str:
    """A hint of which key is set (its last two characters when it is long), never the key."""
    return MASK + secret[-2:] if len(secret) > 8 else MASK
