#!/usr/bin/env bash
# Run every TZR Host service in test mode on this machine: the game-server
# simulator on 127.0.0.1:5190, the game's test tables in the MariaDB
# database tzserver, and `nameko run services` with the gateway on
# 127.0.0.1:8000.
#
# It runs scripts/setup.sh first, unless TZR_SKIP_SETUP=1. The data stays
# between runs: the simulator keeps its accounts in the users table, and
# the battles go to the PostgreSQL database tzr_serve (TZR_PG_DSN).
# SIGINT (Ctrl-C), SIGTERM or SIGHUP to this script stops the services and
# the simulator, and so does either of them exiting.
#
# The gateway needs an API key: export TZR_API_KEY before running, or one is
# generated and printed. Only its SHA-256 reaches the services' config. The
# admin routes take TZR_ADMIN_TOKEN the same way. Battle-log collection uses
# the bot accounts of TZR_COLLECT_BOTS (login:KEY entries), or two generated
# ones, and the simulator serves the logs in TZR_GAMESIM_LOGS (default
# var/gamesim/logs; when empty, 500 generated logs, ids 4000001 to 4000500,
# with thirty recurring players and a bot). Shop snapshots use the bots of
# TZR_SHOP_BOTS (shop=login:KEY entries), or one generated per shop, and the
# simulator serves the shop pages in TZR_GAMESIM_SHOP (default
# var/gamesim/shop; generated with tzr-shopgen when empty).
set -euo pipefail
cd "$(dirname "$0")/.."

# Test mode keeps its battles apart from quickstart.sh's: a database and
# folders of its own, which setup.sh creates.
export TZR_PG_DSN=${TZR_PG_DSN:-postgresql://tzr@127.0.0.1:5432/tzr_serve}
export TZR_DROP_DIR=${TZR_DROP_DIR:-var/serve/drop}
export TZR_ARCHIVE_DIR=${TZR_ARCHIVE_DIR:-var/serve/archive}
export TZR_QUARANTINE_DIR=${TZR_QUARANTINE_DIR:-var/serve/quarantine}

if [ "${TZR_SKIP_SETUP:-0}" != 1 ]; then
    scripts/setup.sh
fi
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
# Test-mode shop bots, one per shop. The simulator accepts the same
# accounts through --shop-bots-secret.
if [ -z "${TZR_SHOP_BOTS:-}" ] && [ -z "${TZR_SHOP_BOTS_FILE:-}" ]; then
    TZR_SHOP_BOTS=$(.venv/bin/python -c "import secrets
print('\n'.join(f'{shop}=owl-{shop}:{secrets.token_hex(20).upper()}' for shop in ('moscow', 'oasis', 'neva')))")
fi
export TZR_SHOP_BOTS
# Collect by itself: a scheduled forward job from 4000021 follows the
# simulator's battles; 4000001 to 4000020 are left for a range job by hand.
export TZR_COLLECT_AUTO_FORWARD=${TZR_COLLECT_AUTO_FORWARD:-true}
export TZR_COLLECT_FORWARD_START=${TZR_COLLECT_FORWARD_START:-4000021}

logs=${TZR_GAMESIM_LOGS:-var/gamesim/logs}
if [ -z "$(ls -A "$logs" 2>/dev/null)" ]; then
    # Thirty recurring players in four clans and a bot, so that the player,
    # clan and bot-suspicion routes have something to show.
    .venv/bin/tzr-corpus "$logs" --count 500 --first-id 4000001 --layout flat \
        --players 30 --clans 4 --bots 1
    rm -f "$logs/truth.jsonl" "$logs/population.json"
fi
shop=${TZR_GAMESIM_SHOP:-var/gamesim/shop}
.venv/bin/tzr-shopgen "$shop"   # writes pages only into an empty folder

children=()

stop_children() {
    trap - EXIT INT TERM HUP
    local pid
    for pid in "${children[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${children[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

trap stop_children EXIT
trap 'stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM
trap 'stop_children; exit 129' HUP

# Both run in the background, so that this shell handles signals at once
# instead of after a foreground child exits.
.venv/bin/tzr-gamesim --port "${TZR_GAME_PORT:-5190}" \
    --users-dsn "${TZR_GAMEDB_DSN:-mysql://root@127.0.0.1:3306/tzserver}" \
    --logs "$logs" --bots-secret TZR_COLLECT_BOTS \
    --shop "$shop" --shop-bots-secret TZR_SHOP_BOTS &
children+=("$!")
.venv/bin/nameko run services --config services/config.yml &
children+=("$!")

exit_status=0
wait -n "${children[@]}" || exit_status=$?
echo "a service process exited with status $exit_status; stopping the others" >&2
exit "$exit_status"
