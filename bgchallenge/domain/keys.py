"""Where a result's object goes in the bucket."""

from __future__ import annotations

import re
from urllib.parse import unquote

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def object_key(result_id: int, object_path: str) -> str:
    """``results/<id>/<file name>``: one key per result, so a retry overwrites, never adds."""
    name = _UNSAFE.sub("-", unquote(object_path.rstrip("/").rsplit("/", 1)[-1])).strip("-.")
    return f"results/{result_id}/{name[:200] or 'object'}"
