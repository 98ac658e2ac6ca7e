"""A real OpenLDAP `slapd` for tests: its own config and database in a temp dir,
listening on a free port on 127.0.0.1 only, loaded and changed with the
ldap-utils commands (ldapadd, ldapmodify, ldapdelete), stopped afterwards.

`make test` installs slapd and ldap-utils (scripts/ensure-services.sh). If they
are missing the test fails saying so; it never skips.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SLAPD = "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "inetorgperson")
BASE_DN = "dc=example,dc=test"
PEOPLE = f"ou=people,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "slapd-test-secret"

CONFIG = """\
{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
database mdb
maxsize 104857600
suffix "{base}"
rootdn "{admin}"
rootpw {password}
directory {dir}/data
index objectClass eq
"""

BASE_ENTRIES = f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people
"""


def require_ldap_tools() -> None:
    missing = [tool for tool in (SLAPD, "ldapadd", "ldapmodify", "ldapdelete")
               if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"OpenLDAP is missing ({', '.join(missing)}): run `make test`, which "
                    "installs slapd and ldap-utils (scripts/ensure-services.sh)", pytrace=False)


def person(uid: str, cn: str, *mails: str, department: str = "") -> str:
    lines = [f"dn: uid={uid},{PEOPLE}", "objectClass: inetOrgPerson", f"uid: {uid}",
             f"cn: {cn}", f"sn: {cn.split()[-1]}", *(f"mail: {m}" for m in mails)]
    if department:
        lines.append(f"departmentNumber: {department}")
    return "\n".join(lines) + "\n"


class Slapd:
    def __init__(self, directory: Path) -> None:
        require_ldap_tools()
        self.dir = directory
        self.port = _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Slapd:
        (self.dir / "data").mkdir(parents=True)
        includes = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
        config = self.dir / "slapd.conf"
        config.write_text(CONFIG.format(includes=includes, dir=self.dir, base=BASE_DN,
                                        admin=ADMIN_DN, password=ADMIN_PASSWORD))
        log = open(self.dir / "slapd.log", "wb")  # noqa: SIM115 - slapd keeps it open
        # -d 0: stay in the foreground (a child we can stop), no debug output.
        self.proc = subprocess.Popen([SLAPD, "-f", str(config), "-h", f"{self.url}/", "-d", "0"],
                                     stdout=log, stderr=log, start_new_session=True)
        self._wait_listening()
        self.ldif("ldapadd", BASE_ENTRIES)
        return self

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.dir / 'slapd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"slapd did not listen on {self.url}")

    def ldif(self, tool: str, text: str) -> None:
        """Run ldapadd or ldapmodify with `text` as LDIF, as the directory's admin."""
        self._run([tool, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD], text)

    def add(self, *entries: str) -> None:
        self.ldif("ldapadd", "\n".join(entries))

    def replace(self, dn: str, **attributes: str | list[str]) -> None:
        lines = [f"dn: {dn}", "changetype: modify"]
        for name, values in attributes.items():
            lines.append(f"replace: {name}")
            lines += [f"{name}: {v}" for v in ([values] if isinstance(values, str) else values)]
            lines.append("-")
        self.ldif("ldapmodify", "\n".join(lines) + "\n")

    def delete(self, dn: str) -> None:
        self._run(["ldapdelete", "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD,
                   dn], "")

    @staticmethod
    def _run(command: list[str], stdin: str) -> None:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr or result.stdout}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
