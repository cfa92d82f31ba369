"""Every operation an ops file may hold, one module per operation (as the lint rules are).

A module here defines its operation as a frozen dataclass (a subclass of
:class:`pgshift.ops.operations._base.Operation`) and names it ``OPERATION``; :func:`registry`
finds them all. Modules starting with ``_`` hold what the operations share.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pgshift.ops.operations._base import Operation


@cache
def registry() -> dict[str, type[Operation]]:
    """kind -> operation class, in the kinds' alphabetical order; kinds are checked to be unique."""
    found: dict[str, type[Operation]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "OPERATION", None)
        if not (isinstance(cls, type) and issubclass(cls, Operation)):
            raise RuntimeError(f"{module.__name__} defines no OPERATION")
        if cls.kind in found or cls.kind != info.name:
            raise RuntimeError(f"operation kind {cls.kind!r} is not its module's name or is defined twice")
        found[cls.kind] = cls
    return found
