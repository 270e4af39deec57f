#!/usr/bin/env bash
# The services that the memory and deployment tests start on loopback (issue 18), from Debian's packages:
#   postgresql  — shared memory (npc serve --memory-url): tests/pg_fixture.py runs initdb in a temporary folder
#                 and starts its own server on a free port (as the postgres user when run as root)
#   haproxy     — the load balancer in front of two servers (tests/test_deploy.py, docs/deploy.md)
# Installs only what is missing; needs root (or sudo) for apt-get. Idempotent. The packages' own services are not
# used (and not started here): each test run starts and stops its own.
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || want+=(haproxy)

if [ "${#want[@]}" -gt 0 ]; then
  echo "setup_services: installing ${want[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${want[@]}" >/tmp/npc-setup-services.log 2>&1; then
    $SUDO apt-get update >>/tmp/npc-setup-services.log 2>&1
    $SUDO apt-get install -y --no-install-recommends "${want[@]}" >>/tmp/npc-setup-services.log 2>&1 \
      || { tail -20 /tmp/npc-setup-services.log >&2; exit 1; }
  fi
fi
pg="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
haproxy="$(command -v haproxy || echo /usr/sbin/haproxy)"
echo "setup_services: postgresql $("$pg/postgres" --version | awk '{print $3}'), haproxy $("$haproxy" -v | head -1 | awk '{print $3}')" >&2
