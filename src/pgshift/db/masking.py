"""Passwords masked in URLs, conninfo strings and messages: apart from pgshift.db.connect, so that
printing an error (the CLI masks every message) does not import the database driver."""

from __future__ import annotations

import re

# Up to the last @ of the authority: an unencoded @ in a password must not leave its tail visible.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s/?#]*)(?=@)", re.I)
# libpq quotes with ' only, but a "double-quoted" or unterminated value is still a password to hide.
_KV_PASSWORD = re.compile(
    r"""(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|\S+)""", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]*)", re.I)


def mask_password(text: str) -> str:
    """Replace any password in a URL, conninfo string or message with ***."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + "***", text)
