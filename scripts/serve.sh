#!/usr/bin/env bash
# Run every TZR Host service in test mode on this machine: the game-server
# simulator on 127.0.0.1:5190, the game's test tables in the MariaDB
# database tzserver, and `nameko run services` with the gateway on
# 127.0.0.1:8000. Stops the simulator when the services stop (Ctrl-C).
#
# The gateway needs an API key: export TZR_API_KEY before running, or one is
# generated and printed. Only its SHA-256 reaches the services' config.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export TZR_MODE=test
.venv/bin/tzr-gamedb test-schema
.venv/bin/tzr-gamedb migrate

if [ -z "${TZR_API_KEY:-}" ]; then
    TZR_API_KEY=$(.venv/bin/python -c "import secrets; print(secrets.token_hex(16))")
    echo "generated an API key for this run: $TZR_API_KEY"
fi
key_hash=$(printf '%s' "$TZR_API_KEY" | sha256sum | cut -d' ' -f1)
export TZR_API_KEYS="site:$key_hash"

.venv/bin/tzr-gamesim --port "${TZR_GAME_PORT:-5190}" \
    --users-dsn "${TZR_GAMEDB_DSN:-mysql://root@127.0.0.1:3306/tzserver}" &
simulator=$!
trap 'kill "$simulator" 2>/dev/null || true' EXIT

exec_status=0
.venv/bin/nameko run services --config services/config.yml || exec_status=$?
exit "$exec_status"
