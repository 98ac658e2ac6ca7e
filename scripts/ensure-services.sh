#!/usr/bin/env bash
# Start what the test suite needs, idempotently. Safe to run on every `make test`.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

# `apt-get update` at most once per run, then install quietly and non-interactively.
APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-services: installing PostgreSQL from Debian" >&2
    apt_install postgresql
  fi
  echo "ensure-services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "ensure-services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
# Trust auth for user postgres on loopback is the machine's set-up; check it answers.
psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null \
  || { echo "ensure-services: cannot log in to PostgreSQL as postgres on 127.0.0.1" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'" \
  | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null

# OpenLDAP for the address-book sync tests: each test starts its own slapd on loopback.
if ! [ -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
  echo "ensure-services: installing slapd and ldap-utils from Debian" >&2
  apt_install slapd ldap-utils
fi

# libfaketime for the clock-skew test: a second worker runs under `faketime -f "+10m"`.
if ! command -v faketime >/dev/null 2>&1; then
  echo "ensure-services: installing faketime from Debian" >&2
  apt_install faketime
fi

# openssl checks the S/MIME signature of signed mail after delivery (tests/e2e/test_mime_rebuilt.py).
if ! command -v openssl >/dev/null 2>&1; then
  echo "ensure-services: installing openssl from Debian" >&2
  apt_install openssl
fi

# swaks for the SMTP submission tests (a third real client beside smtplib and aiosmtplib);
# Net::SSLeay gives it STARTTLS.
if ! command -v swaks >/dev/null 2>&1 || ! perl -MNet::SSLeay -e1 >/dev/null 2>&1; then
  echo "ensure-services: installing swaks and libnet-ssleay-perl from Debian" >&2
  apt_install swaks libnet-ssleay-perl
fi

# Node.js runs the webhook verification example of docs/webhooks.md.
if ! command -v node >/dev/null 2>&1; then
  echo "ensure-services: installing nodejs from Debian" >&2
  apt_install nodejs
fi

# Dovecot for the IMAP bounce intake tests: each test starts its own dovecot on loopback
# (tests/dovecot.py); the system's own instance is never started.
if ! [ -x /usr/sbin/dovecot ] || ! [ -d /usr/lib/dovecot ] || ! ls /usr/lib/dovecot/imap >/dev/null 2>&1; then
  echo "ensure-services: installing dovecot-imapd from Debian" >&2
  apt_install dovecot-imapd
fi

# Chromium for the web UI tests (Playwright for Python drives /usr/bin/chromium; nothing
# is downloaded at test time).
if ! [ -x /usr/bin/chromium ]; then
  echo "ensure-services: installing chromium from Debian" >&2
  apt_install chromium
fi
