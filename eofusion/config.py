"""Runtime configuration, read once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ENV_DATABASE_URL = "EOFUSION_DATABASE_URL"
ENV_DATA_DIR = "EOFUSION_DATA_DIR"
ENV_API_KEYS = "EOFUSION_API_KEYS"
ENV_PUBLIC_URL = "EOFUSION_PUBLIC_URL"
ENV_LIMIT_PREFIX = "EOFUSION_LIMIT_"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask of the server (README, "Limits").

    Each field is settable as ``EOFUSION_LIMIT_<FIELD>`` (upper case), e.g. ``EOFUSION_LIMIT_BODY_BYTES``.

    Attributes:
        body_bytes: Largest request body of searches, process executions and other non-bulk requests.
        bulk_body_bytes: Largest body of a keyed STAC transaction (item and bulk-item writes).
        text_chars: Longest free-text input (late-fusion query, text search, post text filters).
        reference_items: Most entries of a ``positive`` / ``negative`` list or of any list of item references.
        marks_per_round: Most marks (relevance feedback entries) one active-learning round may carry.
        tile_px: Largest tile size and preview/crop ``width``, ``height`` and ``max_size`` in pixels.
        page_offset: Largest offset a paging token may carry.
        page_limit: Largest ``limit`` of one page of results.
        depth: Largest per-modality list depth or candidate depth (late fusion, re-ranking).
        upload_bytes: Largest uploaded or referenced file (e.g. a query photo).
        tile_cache_mb: GDAL's raster block cache of one server process, in MB (``GDAL_CACHEMAX`` wins if set).
        malloc_arenas: glibc malloc arenas of one server process (``MALLOC_ARENA_MAX`` wins if set).
        malloc_mmap_threshold_kb: Allocations of this many KB or more are mapped on their own and returned to the
            system when freed, instead of glibc's sliding threshold (``MALLOC_MMAP_THRESHOLD_`` wins if set).
        job_workers: Asynchronous executions run at once by one server process.
        job_queue: Asynchronous executions that may wait for a worker; beyond it the answer is 503.
        job_retention_s: Seconds a finished job and its result are kept before deletion.
        job_heartbeat_s: Seconds between the heartbeats of a server process that owns running jobs.
    """

    body_bytes: int = 2 * 1024 * 1024
    bulk_body_bytes: int = 64 * 1024 * 1024
    text_chars: int = 2000
    reference_items: int = 200
    marks_per_round: int = 2000
    tile_px: int = 2048
    page_offset: int = 100_000
    page_limit: int = 10_000
    depth: int = 5000
    upload_bytes: int = 8_000_000
    tile_cache_mb: int = 256
    malloc_arenas: int = 2
    malloc_mmap_threshold_kb: int = 128
    job_workers: int = 2
    job_queue: int = 16
    job_retention_s: int = 7 * 24 * 3600
    job_heartbeat_s: int = 10

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Limits:
        """Defaults, overridden by ``EOFUSION_LIMIT_*`` variables (positive integers).

        Raises:
            ValueError: a variable is not a positive integer (names the variable).
        """
        limits = cls()
        for f in fields(cls):
            name = ENV_LIMIT_PREFIX + f.name.upper()
            if env.get(name):
                try:
                    value = int(env[name])
                except ValueError:
                    raise ValueError(f"{name} must be a positive integer, got {env[name]!r}") from None
                if value <= 0:
                    raise ValueError(f"{name} must be a positive integer, got {value}")
                limits = replace(limits, **{f.name: value})
        return limits


def _default_data_dir() -> Path:
    # The project's own folder when run from a checkout, so `eofusion db init` and the
    # server agree without configuration; a user's home otherwise.
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here / ".eofusion"
    return Path.home() / ".eofusion"


@dataclass(frozen=True)
class Settings:
    """Settings of one EOFusion installation.

    Attributes:
        data_dir: Folder for the embedded database cluster, scene COGs and generated files.
        database_url: An existing PostgreSQL server; ``None`` means the embedded cluster.
        api_keys: Keys that authorise writes. Empty means writes are refused.
        public_url: Base URL clients see (behind a proxy); ``None`` derives it from requests.
        limits: Bounds on request sizes, lists, tiles, pages and jobs.
    """

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str | None = None
    api_keys: frozenset[str] = frozenset()
    public_url: str | None = None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``EOFUSION_*`` environment variables."""
        env = dict(os.environ if environ is None else environ)
        data_dir = Path(env[ENV_DATA_DIR]).expanduser().resolve() if env.get(ENV_DATA_DIR) else _default_data_dir()
        keys = frozenset(k.strip() for k in env.get(ENV_API_KEYS, "").split(",") if k.strip())
        return cls(
            data_dir=data_dir,
            database_url=env.get(ENV_DATABASE_URL) or None,
            api_keys=keys,
            public_url=(env.get(ENV_PUBLIC_URL) or None),
            limits=Limits.from_env(env),
        )

    @property
    def embedded(self) -> bool:
        """Whether EOFusion runs its own database cluster."""
        return self.database_url is None

    @property
    def scenes_dir(self) -> Path:
        """Where scene COGs are written."""
        return self.data_dir / "scenes"
