"""A PostgreSQL cluster of a test's own, to restart or stop under a running Outbox.

The machine's main cluster (127.0.0.1:5432) serves every other test at the same
time, so a test that takes the server away makes its own with Debian's cluster
tools, on a free loopback port, with trust authentication:

    with PgCluster.create() as cluster:
        url = cluster.create_database("outbox")
        ...
        cluster.stop()                 # pg_ctlcluster VERSION NAME stop (fast)
        cluster.start()

`pg_createcluster` runs as root (as the tests do) or as the postgres user; the
cluster belongs to postgres. It is dropped (stopped first) on exit, and it is
never started at boot (`--start-conf=manual`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from types import TracebackType

from tests.processes import free_port

POSTGRESQL_LIB = Path("/usr/lib/postgresql")


def installed_version() -> str:
    versions = sorted((p.name for p in POSTGRESQL_LIB.iterdir() if p.name.isdigit()), key=int)
    if not versions:
        raise RuntimeError(f"no PostgreSQL server under {POSTGRESQL_LIB}")
    return versions[-1]


def _run(*command: str, timeout: float = 60.0) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class PgCluster:
    def __init__(self, version: str, name: str, port: int) -> None:
        self.version = version
        self.name = name
        self.port = port

    @classmethod
    def create(cls) -> PgCluster:
        if os.geteuid() != 0:
            raise RuntimeError("pg_createcluster needs root (the test machine runs tests as root)")
        cluster = cls(installed_version(), f"outbox_{secrets.token_hex(4)}", free_port())
        _run("pg_createcluster", cluster.version, cluster.name, "-p", str(cluster.port),
             "--start-conf=manual", "--", "--auth=trust")
        try:
            cluster.start()
        except Exception:
            cluster.drop()
            raise
        return cluster

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, statement: str) -> str:
        return _run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                    "postgres", "-v", "ON_ERROR_STOP=1", "-X", "-Atqc", statement)

    def create_database(self, name: str = "outbox") -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def ctl(self, action: str) -> None:
        """pg_ctlcluster VERSION NAME start|stop|restart (waits until done)."""
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action)

    def start(self) -> None:
        self.ctl("start")

    def stop(self) -> None:
        self.ctl("stop")

    def drop(self) -> None:
        _run("pg_dropcluster", "--stop", self.version, self.name)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.drop()
