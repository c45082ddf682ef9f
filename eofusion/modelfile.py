"""Model files of the learned search models (deep hashing, text to patch): one ``torch.save`` payload of plain
types (format tag, version, configuration, state dict, metadata), read back with ``weights_only`` so a file from
the database or an upload can never run code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch


def save_payload(payload: dict[str, Any], path: str | Path) -> None:
    """Write a payload to a temporary name then rename it, so readers never see half a file."""
    dest = Path(path)
    tmp = dest.with_name(dest.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(dest)


def payload_bytes(payload: dict[str, Any]) -> bytes:
    """The content :func:`save_payload` writes, in memory (a database ``bytea``, an asset)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def load_payload(source: str | Path | bytes, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read a payload and check its format tag and version.

    Args:
        source: A path or the bytes.
        fmt: The format tag the payload must carry.
        version: The format version this code reads.
        what: The kind of model, for error messages ("deep-hashing model").

    Returns:
        The payload.

    Raises:
        ValueError: If the content is unreadable, of another format or of another version.
    """
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        payload = torch.load(handle, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"not a readable model file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"not an EOFusion {what}")
    if payload.get("format_version") != version:
        raise ValueError(f"unsupported model format version {payload.get('format_version')!r}")
    return payload
