"""Confinement of client-named paths: a name becomes a file only inside its folder."""

from __future__ import annotations

import re
from pathlib import Path

from eofusion.errors import InvalidInput, NotFound

#: Characters an id may have when it becomes (part of) a file name.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def safe_name(value: str, what: str = "id") -> str:
    """Return ``value`` if it can be used as a file name as it is.

    Raises:
        InvalidInput: empty, too long, a dot name, or with characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise InvalidInput(f"{what} {value!r} cannot name a file: use letters, digits, '.', '_' and '-' "
                           "(at most 200, not starting with a dot, no '..')")
    return value


def inside(root: Path, relative: str | Path, what: str = "file") -> Path:
    """The resolved path of ``relative`` under ``root``, refusing anything that leaves ``root``.

    Symbolic links are resolved before the check, so a link out of the folder is refused too.
    An escape is reported exactly like a missing file, so probing reveals nothing outside.

    Raises:
        NotFound: the path is not inside ``root``.
    """
    base = root.resolve()
    rel = str(relative)
    if "\x00" in rel:
        raise NotFound(f"{what} not found: {rel!r}")
    target = (base / rel.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise NotFound(f"{what} not found: {rel!r}")
    return target
