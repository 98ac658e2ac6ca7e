#!/usr/bin/env bash
# What `make bench` needs besides the test services, idempotently: Postfix (for its
# smtp-sink, smtp-source and the loopback relay the comparison runs against), left
# stopped; bench/compare.py configures and starts it only around its own runs, on
# 127.0.0.1 only (as ../shared/bench-anchors/10_postfix_setup.sh does).
set -euo pipefail
if ! dpkg -s postfix >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string anchors.localdomain" | debconf-set-selections
  echo "bench-deps: installing postfix from Debian" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
test -x /usr/sbin/smtp-sink && test -x /usr/sbin/smtp-source
