"""JSON for parse trees and reports: orjson when it is installed (it decodes a 50k-statement parse
tree about 1.4x and encodes a 23 MB report about 5x faster), else the standard library. Both
give the same documents."""

from __future__ import annotations

import json
from typing import Any

from pgshift.migrations import tree

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install working
    orjson = None  # type: ignore[assignment]


loads = tree.loads  # parse trees are decoded where they are parsed


def dumps(data: Any, *, indent: bool = False) -> str:
    """Compact, or indented by two spaces; non-ASCII characters are written as they are."""
    if orjson is not None:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 if indent else 0).decode()
    return json.dumps(data, indent=2 if indent else None, ensure_ascii=False)
