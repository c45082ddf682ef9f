"""Facts that Sentinel product and file names carry (ESA naming conventions)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Sentinel-1: S1A_IW_GRDH_1SDV_20170613T165043_...; Sentinel-2: S2A_MSIL2A_20171221T112501_...
_SENSING = re.compile(r"(?:^|_)(20\d{6}T\d{6})(?:_|$|\.)")


def acquisition_time(name: str) -> datetime | None:
    """The sensing start time in a product or file name (UTC), or None when the name has none."""
    m = _SENSING.search(name)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
