#!/usr/bin/env bash
# Start the services the test suite needs when they are not running (PostgreSQL on 127.0.0.1:5432).
set -u
if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
    sleep 1
  done
fi
echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432; PostgreSQL tests will be skipped" >&2
exit 0
