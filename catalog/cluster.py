"""The embedded PostgreSQL cluster: a private data directory, 127.0.0.1 and a free port.

The cluster is a plain ``initdb`` + ``pg_ctl`` cluster owned by the invoking user, or by the
``postgres`` system user when run as root (``initdb`` refuses to run as root). Its port and a
generated superuser password are kept in ``cluster.json`` next to the data, readable only by
the owner, so every later command finds the same server.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

PG_MAJOR = os.environ.get("PG_MAJOR", "15")
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
SUPERUSER = "eofusion"
DATABASE = "eofusion"


class ClusterError(RuntimeError):
    """The embedded cluster could not be created, started or reached."""


@dataclass(frozen=True)
class ClusterInfo:
    """What is needed to reach the embedded cluster."""

    port: int
    user: str
    password: str
    database: str

    @property
    def url(self) -> str:
        """A libpq URL for the cluster over TCP on 127.0.0.1."""
        return f"postgresql://{quote(self.user)}:{quote(self.password)}@127.0.0.1:{self.port}/{self.database}"


def _traversable_by_postgres(path: Path) -> bool:
    """Whether every existing ancestor of ``path`` lets other users through (o+x)."""
    for p in [path, *path.parents]:
        if p.exists() and not (p.stat().st_mode & 0o001):
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedCluster:
    """A PostgreSQL cluster living in ``root`` (``root/pgdata`` plus ``root/cluster.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        server_root = self.root
        if os.geteuid() == 0 and not _traversable_by_postgres(self.root):
            # Run as root inside a private home (e.g. /root/...): the postgres user cannot
            # enter it, so the server files live under /var/lib/eofusion, keyed by this folder.
            server_root = Path("/var/lib/eofusion") / hashlib.sha1(str(self.root).encode()).hexdigest()[:16]
        self.server_root = server_root
        self.pgdata = server_root / "pgdata"
        self.socket_dir = server_root / "run"
        self.info_file = self.root / "cluster.json"
        self.log_file = server_root / "postgres.log"

    # -- who runs the server -------------------------------------------------------------
    def _run_as(self) -> str | None:
        """The system user to run server binaries as, or None for the current user."""
        return "postgres" if os.geteuid() == 0 else None

    def _cmd(self, args: list[str]) -> list[str]:
        user = self._run_as()
        if user is None:
            return args
        return ["runuser", "-u", user, "--", *args]

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._cmd(args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            raise ClusterError(f"{' '.join(args[:2])} failed ({proc.returncode}): {detail}")
        return proc

    def _chown(self, path: Path) -> None:
        user = self._run_as()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- state ---------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        """Whether ``initdb`` has run here."""
        return (self.pgdata / "PG_VERSION").exists() and self.info_file.exists()

    def info(self) -> ClusterInfo:
        """Connection facts of an initialised cluster."""
        if not self.info_file.exists():
            raise ClusterError(f"no embedded cluster in {self.root}: run `eofusion db init`")
        return ClusterInfo(**json.loads(self.info_file.read_text()))

    def running(self) -> bool:
        """Whether the server of this data directory is up."""
        if not self.initialised:
            return False
        return self._run([str(PG_BIN / "pg_ctl"), "status", "-D", str(self.pgdata)], check=False).returncode == 0

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> ClusterInfo:
        """Create the cluster if it does not exist yet; idempotent."""
        if self.initialised:
            return self.info()
        if not (PG_BIN / "initdb").exists():
            raise ClusterError(f"PostgreSQL {PG_MAJOR} is not installed ({PG_BIN}): run deploy/install-system.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        self.server_root.mkdir(parents=True, exist_ok=True)
        for d in (self.pgdata, self.socket_dir):
            if d.exists() and d == self.pgdata:
                shutil.rmtree(d)  # a half-made data dir from an interrupted init
            d.mkdir(mode=0o700, exist_ok=True)
            self._chown(d)
        info = ClusterInfo(port=_free_port(), user=SUPERUSER, password=secrets.token_urlsafe(24), database=DATABASE)
        pwfile = self.socket_dir / "pw"
        pwfile.write_text(info.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            self._run([
                str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", info.user, f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.pgdata / "postgresql.auto.conf"
        with conf.open("a") as f:
            # Only loopback: the embedded cluster is private to this machine.
            f.write(f"listen_addresses = '127.0.0.1'\nport = {info.port}\n")
            f.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            f.write("max_connections = 200\nshared_buffers = '256MB'\nmaintenance_work_mem = '1GB'\n")
        self.info_file.write_text(json.dumps(asdict(info)))
        self.info_file.chmod(0o600)
        return info

    def start(self) -> ClusterInfo:
        """Start the server (initialising first if needed) and make sure the database exists."""
        info = self.init()
        if not self.running():
            if _port_in_use(info.port):
                # Another program took the port since init: move to a free one.
                info = ClusterInfo(port=_free_port(), user=info.user, password=info.password, database=info.database)
                with (self.pgdata / "postgresql.auto.conf").open("a") as f:
                    f.write(f"port = {info.port}\n")
                self.info_file.write_text(json.dumps(asdict(info)))
            if not self.log_file.exists():
                self.log_file.touch()
            self._chown(self.log_file)
            self._run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
                       "-l", str(self.log_file)])
        self._ensure_database(info)
        return info

    def stop(self) -> None:
        """Stop the server if it runs."""
        if self.running():
            self._run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.pgdata)])

    def _ensure_database(self, info: ClusterInfo) -> None:
        import psycopg

        admin = ClusterInfo(info.port, info.user, info.password, "postgres")
        with psycopg.connect(admin.url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (info.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{info.database}"')
