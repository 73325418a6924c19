"""How every benchmark hands back its result: the printed table, and the same result as JSON if asked."""

from __future__ import annotations

import json
from pathlib import Path


def publish(result: dict, table: str, json_path: Path | None) -> dict:
    """Store ``table`` in ``result``, print it, write ``result`` to ``json_path`` (if given); return ``result``."""
    result["table"] = table
    print(table)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
