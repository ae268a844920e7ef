"""Cached JSON files of the cost models (calibration table, performance model): written whole, then moved into
place, so a concurrent reader never sees half a file; a read-only cache folder only logs a warning."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def write_json(path: Path, data: dict[str, Any], what: str) -> None:
    """Write ``data`` to ``path`` atomically; on an OS error (a read-only home) warn and keep going."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot save the %s to %s: %s (kept in memory)", what, path, exc)
