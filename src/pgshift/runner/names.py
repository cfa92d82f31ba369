"""Names of the objects pgshift generates, and tables shown by name.

PostgreSQL cuts an identifier to 63 bytes (NAMEDATALEN - 1), silently. A derived name that is cut
here instead gets a hash of the whole name, so two long names that share their first 54 bytes do
not become the same object (a version schema equal to its table's schema, one NOT NULL check
dropping another's).
"""

from __future__ import annotations

import hashlib

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, UNRESERVED_KEYWORDS

MAX_BYTES = 63
_KEYWORDS = (RESERVED_KEYWORDS | COL_NAME_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS) - UNRESERVED_KEYWORDS


def clip(name: str, limit: int = MAX_BYTES) -> str:
    """``name`` cut to ``limit`` bytes at a character boundary, as PostgreSQL cuts an identifier."""
    data = name.encode()
    return name if len(data) <= limit else data[:limit].decode(errors="ignore")


def fit(*parts: str) -> str:
    """``parts`` joined by ``_``; when longer than 63 bytes, cut and ended by a hash of the whole."""
    name = "_".join(parts)
    if len(name.encode()) <= MAX_BYTES:
        return name
    return clip(name, MAX_BYTES - 9) + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def quote_ident(name: str) -> str:
    """PostgreSQL's quote_ident(): quoted unless the name reads the same unquoted."""
    plain = (name != "" and (name[0].islower() or name[0] == "_") and name.isascii()
             and all(ch.islower() or ch.isdigit() or ch == "_" for ch in name) and name not in _KEYWORDS)
    return name if plain else '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``schema.name`` as SQL would need it written: what ``to_regclass`` resolves back to this table."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
