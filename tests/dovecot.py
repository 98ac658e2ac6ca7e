"""A real Dovecot IMAP server for tests: its own config, passwd file and Maildir in a
temp dir, listening on a free port on 127.0.0.1 only (plain IMAP: loopback), run in
the foreground and stopped afterwards.

`make test` installs dovecot-imapd (scripts/ensure-services.sh). If it is missing the
test fails saying so; it never skips. Mail is owned by `nobody` (Dovecot refuses
uid 0 for mail access).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces@example.test"
PASSWORD = "dovecot-test-secret"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    user: str
    password: str
    maildir: Path  # the user's Maildir (cur/, new/, tmp/, .Folder/)

    def deliver(self, raw: bytes, name: str) -> None:
        """Drop a message into INBOX as a local delivery agent would (Maildir new/)."""
        target = self.maildir / "new" / f"{time.time_ns()}.{name}.test"
        tmp = self.maildir / "tmp" / target.name
        tmp.write_bytes(raw)
        _own(tmp)
        tmp.rename(target)


def require_dovecot() -> None:
    if shutil.which(DOVECOT) is None and not Path(DOVECOT).exists():
        pytest.fail("Dovecot is missing: run `make test`, which installs dovecot-imapd "
                    "(scripts/ensure-services.sh)", pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _own(path: Path) -> None:
    uid, gid = _nobody()
    os.chown(path, uid, gid)


def _internal_user(name: str, fallback: str) -> str:
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        return fallback


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Dovecot in a directory of its own under /tmp: pytest's tmp_path is private to
    root (0700), and Dovecot's auth and mail processes run as other users."""
    require_dovecot()
    directory = Path(tempfile.mkdtemp(prefix="outbox-dovecot-"))
    directory.chmod(0o755)
    try:
        with _dovecot_in(directory) as dovecot:
            yield dovecot
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _dovecot_in(directory: Path) -> Iterator[Dovecot]:
    port = _free_port()
    uid, gid = _nobody()
    maildir = directory / "mail" / USER
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in (directory / "mail", directory / "mail" / USER, *maildir.iterdir()):
        _own(path)
    (directory / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    config = directory / "dovecot.conf"
    config.write_text(CONFIG.format(
        dir=directory, port=port, uid=uid, gid=gid,
        internal=_internal_user("dovecot", "nobody"),
        login=_internal_user("dovenull", "nobody")))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        _wait_for(port, process, directory)
        yield Dovecot("127.0.0.1", port, USER, PASSWORD, maildir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            log = directory / "dovecot.log"
            pytest.fail(f"dovecot exited: {output} {log.read_text() if log.exists() else ''}",
                        pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail("dovecot did not answer within 20 s", pytrace=False)
