#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the test suite talks to are up. With DATABASE_URL /
# CELERY_BROKER_URL unset the suite uses the local servers on their standard ports; a
# server that is installed but stopped is started; one that is missing is a one-line error.
set -uo pipefail

if [ -z "${DATABASE_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
      echo "starting the local PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
      for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || {
      echo "error: no PostgreSQL on 127.0.0.1:5432 and none installed to start; install postgresql or set DATABASE_URL" >&2
      exit 1
    }
  fi
  # The platform's own database (pytest makes its test_ copy beside it).
  if ! psql -h 127.0.0.1 -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'creativity'" | grep -q 1; then
    createdb -h 127.0.0.1 -U postgres creativity
  fi
fi

if [ -z "${CELERY_BROKER_URL:-}" ]; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
      echo "starting the local Redis"
      mkdir -p /var/lib/redis /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
      for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    fi
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || {
      echo "error: no Redis on 127.0.0.1:6379 and none installed to start; install redis-server or set CELERY_BROKER_URL" >&2
      exit 1
    }
  fi
fi
