"""Constants and helpers of the collection tests, shared by their conftest and test modules."""

import hashlib
from collections import Counter
from pathlib import Path

from nameko.standalone.rpc import ServiceRpcProxy

from waiting import wait_for
from services.game.password import transform_password


FIRST_ID = 4_500_001
CORPUS_SIZE = 12
#: Ids of the corpus that the game server does not have.
MISSING_IDS = (FIRST_ID + 3, FIRST_ID + 8)
BOT_ONE = "Сборщик Ёж"
BOT_TWO = "collector-2"
KEY_ONE = transform_password("collector-one")
KEY_TWO = transform_password("collector-two")


def rpc(config, method, *args, timeout=30):
    with ServiceRpcProxy("ingest", config, timeout=timeout) as ingest:
        return getattr(ingest, method)(*args)


def job_row(pg, job_id) -> dict:
    cursor = pg.execute("SELECT * FROM collect_jobs WHERE id = %s", (job_id,))
    names = [column.name for column in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def wait_for_job(pg, job_id, statuses=("finished", "aborted", "failed"), timeout=60.0) -> dict:
    assert wait_for(lambda: job_row(pg, job_id)["status"] in statuses, timeout), job_row(pg, job_id)
    return job_row(pg, job_id)


def battle_rows(pg) -> dict[int, dict]:
    cursor = pg.execute("SELECT * FROM collect_battles ORDER BY battle_id")
    names = [column.name for column in cursor.description]
    return {row[1]: dict(zip(names, row)) for row in cursor.fetchall()}


def statuses(pg) -> dict[int, str]:
    return {battle_id: row["status"] for battle_id, row in battle_rows(pg).items()}


def blook_requests(game) -> Counter:
    """How many times each battle id was requested with //blook."""
    return Counter(int(command.attributes["t"].split()[1]) for command in game.commands("POST"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
