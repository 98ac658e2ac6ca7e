"""A PostgreSQL URL with a parameter that asyncpg cannot take as SQLAlchemy hands it over
(libpq's sslpassword, sslrootcert, dbname, ...) is refused in one line naming the
parameter and what to do, never its value and never with a traceback (it used to be a
TypeError from asyncpg.connect). The fix the line gives for the certificate files, the
environment variable asyncpg reads, is checked against a PostgreSQL cluster that speaks
TLS. Real `outbox` processes and real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.pgcluster import PgCluster
from tests.processes import free_port
from tests.zygote import run as fork_run

PASSWORD = "Pw0rd-in-url-77"
KEY_PASSWORD = "Key-Pass-S3cret-91"


def outbox(tmp_path: Path, url: str, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "outbox.toml"
    config.write_text(f'[server]\nbind = "127.0.0.1:{free_port()}"\n'
                      f'[database]\nurl = "{url}"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "PG"))}
    return fork_run([*args, "--config", str(config)], {**clean, **(env or {})}, tmp_path)


def assert_refused(result: subprocess.CompletedProcess[str], parameter: str) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert f"database.url: parameter {parameter} is not supported by asyncpg" in line
    assert "remove it from the URL" in line
    assert PASSWORD not in line and KEY_PASSWORD not in line
    return line


@pytest.mark.parametrize(("query", "parameter", "instead"), [
    (f"sslmode=require&sslpassword={KEY_PASSWORD}", "sslpassword", "unencrypted key file"),
    ("sslcert=/etc/outbox/client.crt", "sslcert", "PGSSLCERT"),
    ("sslkey=/etc/outbox/client.key", "sslkey", "PGSSLKEY"),
    ("sslrootcert=/etc/outbox/ca.pem", "sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl=/etc/outbox/ca.crl", "sslcrl", "PGSSLCRL"),
    ("ssl_min_protocol_version=TLSv1.3", "ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("dbname=test", "dbname", "postgresql://user@host/DBNAME"),
    ("application_name=outbox", "application_name", "the URL takes"),
    ("connect_timeout=5", "connect_timeout", "the URL takes"),
    ("timeout=5", "timeout", "the URL takes"),
])
@pytest.mark.parametrize("command", [("check",), ("serve",)])
def test_a_parameter_asyncpg_cannot_take_is_one_line_naming_it(
        tmp_path: Path, query: str, parameter: str, instead: str,
        command: tuple[str, ...]) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test?{query}"
    line = assert_refused(outbox(tmp_path, url, *command), parameter)
    assert instead in line


def test_the_parameters_asyncpg_takes_still_open_the_database(tmp_path: Path) -> None:
    url = ("postgresql://postgres@127.0.0.1:5432/test?sslmode=disable&command_timeout=30"
           "&target_session_attrs=any&prepared_statement_cache_size=10")
    result = outbox(tmp_path, url, "check")
    assert "not supported" not in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgCluster, str]]:
    """A cluster of its own with TLS on (certificate for 127.0.0.1), and the CA's file."""
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pg-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with PgCluster.create() as cluster:
        data = Path(cluster.psql("SHOW data_directory").strip())
        server = ca.issue_cert("127.0.0.1", "localhost")
        for name, pem in (("outbox-server.crt", server.cert_chain_pems[0].bytes()),
                          ("outbox-server.key", server.private_key_pem.bytes())):
            (data / name).write_bytes(pem)
            os.chmod(data / name, 0o600)
            os.chown(data / name, (data.stat()).st_uid, (data.stat()).st_gid)
        cluster.psql("ALTER SYSTEM SET ssl_cert_file = 'outbox-server.crt'")
        cluster.psql("ALTER SYSTEM SET ssl_key_file = 'outbox-server.key'")
        cluster.psql("ALTER SYSTEM SET ssl = on")
        cluster.ctl("restart")
        cluster.create_database("outbox")
        yield cluster, str(ca_file)


def test_the_certificate_files_go_in_the_environment_instead(
        tmp_path: Path, tls_cluster: tuple[PgCluster, str]) -> None:
    cluster, ca_file = tls_cluster
    url = f"{cluster.url('outbox')}?sslmode=verify-full"
    assert_refused(outbox(tmp_path, f"{url}&sslrootcert={ca_file}", "migrate"), "sslrootcert")

    unverified = outbox(tmp_path, url, "migrate")  # no root certificate: verify-full fails
    assert unverified.returncode != 0 and "Traceback" not in unverified.stderr
    verified = outbox(tmp_path, url, "migrate", env={"PGSSLROOTCERT": ca_file})
    assert verified.returncode == 0, verified.stderr
