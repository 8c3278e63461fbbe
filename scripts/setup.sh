#!/usr/bin/env bash
# Prepare this machine for TZR Host: start the backing services that are
# down, build the Python environment in .venv, and create the PostgreSQL
# role and database. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PG_ADMIN=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local name=$1 port=$2 seconds=${3:-60}
    for _ in $(seq "$seconds"); do
        port_open "$port" && return 0
        sleep 1
    done
    echo "error: $name did not open port $port within $seconds s" >&2
    return 1
}

start_if_down() {
    local name=$1 port=$2 program=$3
    shift 3
    if port_open "$port"; then
        return 0
    fi
    if ! command -v "$program" >/dev/null; then
        echo "warning: $name is down and $program is not installed; skipping it" >&2
        return 0
    fi
    echo "starting $name"
    "$@"
    wait_for_port "$name" "$port"
}

start_if_down PostgreSQL 5432 pg_ctlcluster pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
start_if_down MariaDB 3306 /usr/sbin/mariadbd start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start_if_down Redis 6379 redis-server redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start_if_down RabbitMQ 5672 rabbitmq-server rabbitmq-server -detached
# Nameko's test fixtures create a vhost per test through the management API.
if ! port_open 15672; then
    echo "enabling the RabbitMQ management plugin"
    rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
    wait_for_port "RabbitMQ management" 15672
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
fi
# Installs what setup.cfg pins that is missing or different; a no-op otherwise.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# The role and database that TZR_PG_DSN names (default tzr and tzr).
pg_names=$(.venv/bin/python - <<'PY'
import os
import re
from urllib.parse import urlsplit

url = urlsplit(os.environ.get("TZR_PG_DSN", "postgresql://tzr@127.0.0.1:5432/tzr"))
user, database = url.username or "tzr", url.path.lstrip("/") or "tzr"
for name in (user, database):
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"error: TZR_PG_DSN names {name!r}; use lower-case letters, digits and _")
print(user, database)
PY
)
read -r pg_user pg_database <<< "$pg_names"
if [ -z "$("${PG_ADMIN[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$pg_user'")" ]; then
    "${PG_ADMIN[@]}" -c "CREATE ROLE $pg_user LOGIN CREATEDB"
fi
if [ -z "$("${PG_ADMIN[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$pg_database'")" ]; then
    "${PG_ADMIN[@]}" -c "CREATE DATABASE $pg_database OWNER $pg_user"
fi
.venv/bin/tzr-ingest migrate
# The game's MariaDB database: on this machine a test copy (tzserver), with
# the tables a game server would have, plus TZR Host's own.
TZR_MODE=test .venv/bin/tzr-gamedb test-schema
.venv/bin/tzr-gamedb migrate
