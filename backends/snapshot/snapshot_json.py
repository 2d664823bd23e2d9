"""A ClusterSnapshot as JSON-ready data: the stable shape `dapper-tui status --json` prints."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from dapper.backends.model import ClusterSnapshot, summarize


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def snapshot_to_json(s: ClusterSnapshot) -> dict[str, Any]:
    sm = summarize(s)
    data = _plain(s)
    data["healthy"] = s.healthy
    data["summary"] = _plain(sm)
    return data
