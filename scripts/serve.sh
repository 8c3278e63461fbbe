#!/usr/bin/env bash
# Run every TZR Host service in test mode on this machine: the game-server
# simulator on 127.0.0.1:5190, the game's test tables in the MariaDB
# database tzserver, and `nameko run services` with the gateway on
# 127.0.0.1:8000. Stops the simulator when the services stop (Ctrl-C).
#
# The gateway needs an API key: export TZR_API_KEY before running, or one is
# generated and printed. Only its SHA-256 reaches the services' config. The
# admin routes take TZR_ADMIN_TOKEN the same way. Battle-log collection uses
# the bot accounts of TZR_COLLECT_BOTS (login:KEY entries), or two generated
# ones, and the simulator serves the logs in TZR_GAMESIM_LOGS (default
# var/gamesim/logs; 200 generated logs, ids 4000001 to 4000200, when empty).
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

if [ -z "${TZR_ADMIN_TOKEN:-}" ]; then
    TZR_ADMIN_TOKEN=$(.venv/bin/python -c "import secrets; print(secrets.token_hex(16))")
    echo "generated an admin token for this run: $TZR_ADMIN_TOKEN"
fi
admin_hash=$(printf '%s' "$TZR_ADMIN_TOKEN" | sha256sum | cut -d' ' -f1)
export TZR_ADMIN_TOKENS="admin:$admin_hash"

# Test-mode bot accounts: the simulator and the ingest service read the same
# secret, so the keys never appear on a command line.
if [ -z "${TZR_COLLECT_BOTS:-}" ] && [ -z "${TZR_COLLECT_BOTS_FILE:-}" ]; then
    TZR_COLLECT_BOTS=$(.venv/bin/python -c "import secrets
print('\n'.join(f'collector-{n}:{secrets.token_hex(20).upper()}' for n in (1, 2)))")
fi
export TZR_COLLECT_BOTS

logs=${TZR_GAMESIM_LOGS:-var/gamesim/logs}
if [ -z "$(ls -A "$logs" 2>/dev/null)" ]; then
    .venv/bin/tzr-corpus "$logs" --count 200 --first-id 4000001 --layout flat
    rm -f "$logs/truth.jsonl"
fi

.venv/bin/tzr-gamesim --port "${TZR_GAME_PORT:-5190}" \
    --users-dsn "${TZR_GAMEDB_DSN:-mysql://root@127.0.0.1:3306/tzserver}" \
    --logs "$logs" --bots-secret TZR_COLLECT_BOTS &
simulator=$!
trap 'kill "$simulator" 2>/dev/null || true' EXIT

exec_status=0
.venv/bin/nameko run services --config services/config.yml || exec_status=$?
exit "$exec_status"
