"""Runtime configuration, read once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_DATABASE_URL = "EOFUSION_DATABASE_URL"
ENV_DATA_DIR = "EOFUSION_DATA_DIR"
ENV_API_KEYS = "EOFUSION_API_KEYS"
ENV_PUBLIC_URL = "EOFUSION_PUBLIC_URL"


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
    """

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str | None = None
    api_keys: frozenset[str] = frozenset()
    public_url: str | None = None

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
        )

    @property
    def embedded(self) -> bool:
        """Whether EOFusion runs its own database cluster."""
        return self.database_url is None

    @property
    def scenes_dir(self) -> Path:
        """Where scene COGs are written."""
        return self.data_dir / "scenes"
