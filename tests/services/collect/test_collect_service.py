"""Battle-log collection in the ingest service, against the simulator, RabbitMQ and PostgreSQL."""

import gzip

import pytest
from nameko.exceptions import ConfigurationError

from collect_helpers import (
    BOT_ONE,
    BOT_TWO,
    CORPUS_SIZE,
    FIRST_ID,
    KEY_ONE,
    MISSING_IDS,
    battle_rows,
    blook_requests,
    job_row,
    rpc,
    sha256_of,
    statuses,
    wait_for,
    wait_for_job,
)
from pipelines.battlelogs.corpus import write_corpus
from services.common.errors import CollectionDisabled, CollectJobNotFound, CollectJobRunning
from services.ingest.exceptions import InvalidArgument
from services.ingest.service import IngestService


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LAST_ID = FIRST_ID + CORPUS_SIZE - 1


def start(container_factory, config):
    container = container_factory(IngestService, config)
    container.start()
    return container


def test_range_records_exact_statuses(container_factory, collect_config, collect_tables, game, folders, logs_dir):
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "end": LAST_ID + 1})
    ended = wait_for_job(collect_tables, job["id"])

    expected = {battle_id: "fetched" for battle_id in range(FIRST_ID, LAST_ID + 1)}
    expected.update({battle_id: "not_found" for battle_id in (*MISSING_IDS, LAST_ID + 1)})
    assert statuses(collect_tables) == expected
    assert ended["status"] == "finished"
    assert (ended["fetched"], ended["not_found"], ended["failed"], ended["mismatch"]) == (CORPUS_SIZE - 2, 3, 0, 0)
    assert ended["cursor_id"] == LAST_ID + 2

    rows = battle_rows(collect_tables)
    for battle_id, status in expected.items():
        row = rows[battle_id]
        assert row["job_id"] == job["id"]
        assert row["attempts"] == 1
        if status == "fetched":
            written = folders["drop"] / f"{battle_id}.tzb"
            assert row["sha256"] == sha256_of(written)
            assert row["size"] == written.stat().st_size
            assert written.read_bytes().startswith(b"<BLOOK>")
        else:
            assert row["code"] == "NOT_FOUND"
            assert row["size"] is None
            assert not (folders["drop"] / f"{battle_id}.tzb").exists()
    assert sorted(path.name for path in folders["drop"].iterdir() if path.name.startswith(".")) == []


def test_not_found_never_retried(container_factory, collect_config, collect_tables, game):
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": CORPUS_SIZE})
    wait_for_job(collect_tables, job["id"])

    requests = blook_requests(game)
    assert all(requests[battle_id] == 1 for battle_id in MISSING_IDS)
    assert sum(requests.values()) == CORPUS_SIZE


def test_dropped_connection_retried(container_factory, collect_config, collect_tables, game, folders):
    battle_id = FIRST_ID + 1
    game.set_fault("drop", commands={"GETMYBATTLE"}, battles={battle_id}, count=1)
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": battle_id, "end": battle_id + 1})
    wait_for_job(collect_tables, job["id"])

    row = battle_rows(collect_tables)[battle_id]
    assert row["status"] == "fetched"
    assert row["attempts"] == 2
    assert blook_requests(game)[battle_id] == 2
    assert (folders["drop"] / f"{battle_id}.tzb").exists()


def test_wrong_battle_is_mismatch_never_saved(container_factory, collect_config, collect_tables, game, folders):
    battle_id = FIRST_ID + 5
    game.set_fault("wrong_battle", battles={battle_id}, other_battle=FIRST_ID)
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": battle_id, "count": 1})
    ended = wait_for_job(collect_tables, job["id"])

    row = battle_rows(collect_tables)[battle_id]
    assert row["status"] == "mismatch"
    assert row["found_id"] == FIRST_ID
    assert row["attempts"] == 1
    assert "contains battle" in row["detail"]
    assert not (folders["drop"] / f"{battle_id}.tzb").exists()
    assert not (folders["drop"] / f"{FIRST_ID}.tzb").exists()
    assert list(folders["drop"].iterdir()) == []
    assert ended["mismatch"] == 1
    progress = rpc(collect_config, "collect_progress", job["id"])
    assert progress["last_errors"][0]["battle_id"] == battle_id
    assert progress["last_errors"][0]["found_id"] == FIRST_ID


@pytest.mark.parametrize(
    "fault, options, reason",
    [
        ("drop", {"commands": {"GETMYBATTLE"}}, "closed"),
        ("half_frame", {"commands": {"GETMYBATTLE"}}, "half_frame"),
        ("slow", {"commands": {"GETMYBATTLE"}, "delay": 2.5}, "timeout"),
    ],
)
def test_transient_failures_exhaust_retries(container_factory, collect_config, collect_tables, game, folders,
                                            fault, options, reason):
    battle_id = FIRST_ID + 1
    game.set_fault(fault, battles={battle_id}, **options)
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": battle_id, "end": battle_id + 1})
    ended = wait_for_job(collect_tables, job["id"])

    rows = battle_rows(collect_tables)
    assert rows[battle_id]["status"] == "failed"
    assert rows[battle_id]["reason"] == reason
    assert rows[battle_id]["attempts"] == 3
    assert blook_requests(game)[battle_id] == 3
    assert rows[battle_id + 1]["status"] == "fetched"
    assert (ended["status"], ended["failed"], ended["fetched"]) == ("finished", 1, 1)
    assert not (folders["drop"] / f"{battle_id}.tzb").exists()


def test_connection_never_made_fails_after_retries(container_factory, collect_config, collect_tables, game):
    game.set_fault("refuse")
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 1})
    ended = wait_for_job(collect_tables, job["id"])

    row = battle_rows(collect_tables)[FIRST_ID]
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "connect_failed", 3)
    assert ended["status"] == "finished"
    assert game.connections_accepted == 0


def test_server_error_reply_not_retried(container_factory, collect_config, collect_tables, game, logs_dir):
    battle_id = LAST_ID + 5
    (logs_dir / f"{battle_id}.tzb.gz").write_bytes(b"\x1f\x8b not really gzip")
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": battle_id, "count": 1})
    wait_for_job(collect_tables, job["id"])

    row = battle_rows(collect_tables)[battle_id]
    assert (row["status"], row["reason"], row["code"], row["attempts"]) == ("failed", "refused", "INTERNAL", 1)
    assert blook_requests(game)[battle_id] == 1


def test_failed_job_after_consecutive_failures(container_factory, collect_config, collect_tables, game):
    collect_config["COLLECT"].update(attempts=1, max_consecutive_failures=3)
    game.set_fault("drop", commands={"GETMYBATTLE"})
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": CORPUS_SIZE})
    ended = wait_for_job(collect_tables, job["id"])

    assert ended["status"] == "failed"
    assert "3 battle ids in a row failed" in ended["error"]
    assert ended["failed"] >= 3
    assert ended["fetched"] == 0


def test_two_bots_share_work_one_request_each(container_factory, collect_config, collect_tables, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.15)
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 10})
    wait_for_job(collect_tables, job["id"])

    requests = game.commands("GETMYBATTLE")
    by_bot = {BOT_ONE: [], BOT_TWO: []}
    for command in requests:
        by_bot[command.login].append((command.received_at, command.finished_at))
    assert len(requests) == 10
    assert by_bot[BOT_ONE]
    assert by_bot[BOT_TWO]
    for login, spans in by_bot.items():
        spans.sort()
        for (_, first_end), (second_start, _) in zip(spans, spans[1:]):
            assert second_start >= first_end, f"bot {login} had two requests in flight"
    # The two accounts worked at the same time.
    assert any(
        one_start < two_end and two_start < one_end
        for one_start, one_end in by_bot[BOT_ONE]
        for two_start, two_end in by_bot[BOT_TWO]
    )
    logins = {command.attributes["l"] for command in game.commands("LOGIN")}
    assert logins == {BOT_ONE, BOT_TWO}
    assert game.count_commands("LOGIN") == 2


def test_forward_follows_new_battles(container_factory, collect_config, collect_tables, game, logs_dir):
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "forward", "start": FIRST_ID})
    assert wait_for(lambda: job_row(collect_tables, job["id"])["waiting_until"] is not None)
    assert statuses(collect_tables)[LAST_ID] == "fetched"
    assert job_row(collect_tables, job["id"])["cursor_id"] == LAST_ID + 1

    # New battles appear, one of them (LAST_ID + 2) never.
    extra = logs_dir.parent / "extra"
    write_corpus(extra, 4, seed=11, first_id=LAST_ID + 1, layout="flat", duplicate_share=0.0)
    for battle_id in (LAST_ID + 1, LAST_ID + 3, LAST_ID + 4):
        (extra / f"{battle_id}.tzb").rename(logs_dir / f"{battle_id}.tzb")

    assert wait_for(lambda: statuses(collect_tables).get(LAST_ID + 4) == "fetched", timeout=20)
    found = statuses(collect_tables)
    assert found[LAST_ID + 1] == "fetched"
    assert found[LAST_ID + 2] == "not_found"
    assert found[LAST_ID + 3] == "fetched"

    # The job goes on probing past LAST_ID + 4, but the missing id that
    # LAST_ID + 3 left behind stays not found and is not requested again.
    left_behind = blook_requests(game)[LAST_ID + 2]
    assert wait_for(lambda: blook_requests(game)[LAST_ID + 5] >= 2, timeout=20)
    requests = blook_requests(game)
    assert requests[LAST_ID + 2] == left_behind
    assert all(requests[battle_id] == 1 for battle_id in MISSING_IDS)
    assert job_row(collect_tables, job["id"])["status"] == "running"

    aborted = rpc(collect_config, "collect_abort", job["id"])
    assert aborted["abort_requested"] is True
    ended = wait_for_job(collect_tables, job["id"])
    assert ended["status"] == "aborted"
    assert ended["cursor_id"] == LAST_ID + 5


def test_forward_starts_after_highest_fetched(container_factory, collect_config, collect_tables, game):
    start(container_factory, collect_config)
    first = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "end": FIRST_ID + 4})
    wait_for_job(collect_tables, first["id"])

    job = rpc(collect_config, "collect_start", {"direction": "forward", "count": 2})

    assert (job["start"], job["end"]) == (FIRST_ID + 5, FIRST_ID + 6)
    assert wait_for_job(collect_tables, job["id"])["status"] == "finished"


def test_backward_stops_at_floor(container_factory, collect_config, collect_tables, game):
    floor = FIRST_ID + 2
    collect_config["COLLECT"]["floor"] = floor
    start(container_factory, collect_config)
    first = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID + 7, "count": 2})
    wait_for_job(collect_tables, first["id"])

    job = rpc(collect_config, "collect_start", {"direction": "backward"})
    ended = wait_for_job(collect_tables, job["id"])

    assert (job["start"], job["end"]) == (FIRST_ID + 6, floor)
    assert ended["status"] == "finished"
    assert ended["cursor_id"] == floor - 1
    found = statuses(collect_tables)
    assert min(found) == floor
    assert found[FIRST_ID + 3] == "not_found"
    requests = blook_requests(game)
    assert requests[floor - 1] == 0
    assert requests[FIRST_ID] == 0

    with pytest.raises(InvalidArgument) as caught:
        rpc(collect_config, "collect_start", {"direction": "backward"})
    assert caught.value.fields == {"start": "collect.history_done"}


def test_abort_stops_between_ids(container_factory, collect_config, collect_tables, game, bots_secret):
    bots_secret.setenv("TZR_COLLECT_BOTS", f"{BOT_ONE}:{KEY_ONE}")
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.3)
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 200})
    assert wait_for(lambda: len(battle_rows(collect_tables)) >= 2)
    rpc(collect_config, "collect_abort", job["id"])
    ended = wait_for_job(collect_tables, job["id"])

    assert ended["status"] == "aborted"
    rows = battle_rows(collect_tables)
    assert 2 <= len(rows) < 10
    # Every requested id got its outcome, and the cursor follows them.
    assert sorted(rows) == list(range(FIRST_ID, FIRST_ID + len(rows)))
    assert ended["cursor_id"] == FIRST_ID + len(rows)
    assert sum(blook_requests(game).values()) == len(rows)
    again = rpc(collect_config, "collect_abort", job["id"])
    assert again["status"] == "aborted"


def test_resume_after_restart_without_refetching(container_factory, collect_config, collect_tables, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.2)
    first = start(container_factory, collect_config)
    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "end": LAST_ID + 3})
    assert wait_for(lambda: len(battle_rows(collect_tables)) >= 4)

    first.stop()
    settled = statuses(collect_tables)
    requests_before = blook_requests(game)
    assert job_row(collect_tables, job["id"])["status"] == "running"
    assert len(settled) < CORPUS_SIZE + 3

    start(container_factory, collect_config)
    ended = wait_for_job(collect_tables, job["id"])

    assert ended["status"] == "finished"
    requests_after = blook_requests(game)
    for battle_id in settled:
        assert requests_after[battle_id] == requests_before[battle_id], battle_id
    found = statuses(collect_tables)
    assert sorted(found) == list(range(FIRST_ID, LAST_ID + 4))
    assert {battle_id for battle_id, status in found.items() if status == "not_found"} == {
        *MISSING_IDS, LAST_ID + 1, LAST_ID + 2, LAST_ID + 3,
    }
    assert ended["fetched"] + ended["not_found"] == CORPUS_SIZE + 3


def test_fetched_logs_loaded_into_battles(container_factory, collect_config, collect_tables, folders):
    collect_config["INGEST"]["interval"] = 1
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "end": LAST_ID})
    wait_for_job(collect_tables, job["id"])

    fetched = {battle_id for battle_id, status in statuses(collect_tables).items() if status == "fetched"}
    loaded = lambda: {row[0] for row in collect_tables.execute("SELECT battle_id FROM battles")}  # noqa: E731
    assert wait_for(lambda: loaded() == fetched, timeout=90), loaded()
    assert wait_for(lambda: not any(folders["drop"].glob("*.tzb")), timeout=30)
    stored = dict(collect_tables.execute("SELECT battle_id, sha256 FROM battles").fetchall())
    rows = battle_rows(collect_tables)
    assert all(stored[battle_id] == rows[battle_id]["sha256"] for battle_id in fetched)


def test_one_job_per_direction(container_factory, collect_config, collect_tables, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.2)
    start(container_factory, collect_config)
    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 50})

    with pytest.raises(CollectJobRunning) as caught:
        rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 2})
    # nameko sends error arguments as text.
    assert caught.value.params == {"direction": "range", "job_id": str(job["id"])}
    rpc(collect_config, "collect_abort", job["id"])


def test_overlapping_jobs_request_each_id_once(container_factory, collect_config, collect_tables, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.05)
    start(container_factory, collect_config)

    up = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "end": FIRST_ID + 7})
    down = rpc(collect_config, "collect_start", {"direction": "backward", "start": FIRST_ID + 7, "end": FIRST_ID})
    wait_for_job(collect_tables, up["id"])
    wait_for_job(collect_tables, down["id"])

    requests = blook_requests(game)
    assert {battle_id: requests[battle_id] for battle_id in range(FIRST_ID, FIRST_ID + 8)} == {
        battle_id: 1 for battle_id in range(FIRST_ID, FIRST_ID + 8)
    }
    both = [job_row(collect_tables, job["id"]) for job in (up, down)]
    assert sum(row["skipped"] for row in both) + sum(row["fetched"] + row["not_found"] for row in both) == 16


def test_progress_and_list(container_factory, collect_config, collect_tables, game):
    start(container_factory, collect_config)
    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 5})
    wait_for_job(collect_tables, job["id"])

    progress = rpc(collect_config, "collect_progress", job["id"])
    listed = rpc(collect_config, "collect_jobs", 5, "finished")

    assert progress["counts"] == {"fetched": 4, "not_found": 1, "failed": 0, "mismatch": 0, "skipped": 0}
    assert (progress["total"], progress["remaining"], progress["processed"]) == (5, 0, 5)
    assert progress["last_errors"] == []
    assert progress["finished_at"].startswith("20")
    assert [entry["id"] for entry in listed] == [job["id"]]
    assert rpc(collect_config, "collect_jobs", 5, "running") == []
    with pytest.raises(CollectJobNotFound) as caught:
        rpc(collect_config, "collect_progress", job["id"] + 100)
    assert caught.value.params == {"job_id": str(job["id"] + 100)}


@pytest.mark.parametrize(
    "params, fields",
    [
        ({"direction": "sideways", "start": 5}, {"direction": "collect.direction"}),
        ({"start": 5}, {"direction": "field.required"}),
        ({"direction": "range", "start": "5", "end": 9}, {"start": "field.integer"}),
        ({"direction": "range", "start": True, "end": 9}, {"start": "field.integer"}),
        ({"direction": "range", "start": 5.0, "end": 9}, {"start": "field.integer"}),
        ({"direction": "range", "start": 9, "end": 5}, {"end": "collect.end_before_start"}),
        ({"direction": "range", "start": 9}, {"end": "collect.range_end"}),
        ({"direction": "range", "end": 9}, {"start": "field.required"}),
        ({"direction": "range", "start": 5, "end": 9, "count": 2}, {"count": "collect.end_and_count"}),
        ({"direction": "range", "start": 0, "count": 2}, {"start": "collect.battle_id"}),
        ({"direction": "range", "start": 5, "count": 0}, {"count": "collect.count"}),
        ({"direction": "backward", "start": 5, "end": 9}, {"end": "collect.backward_end"}),
        ({"direction": "forward", "start": 9, "end": 5}, {"end": "collect.end_before_start"}),
        ({"direction": "forward"}, {"start": "collect.no_start"}),
        ({"direction": "range", "start": 5, "end": 9, "speed": 2}, {"speed": "field.unknown"}),
    ],
)
def test_bad_arguments_name_the_field(container_factory, collect_config, collect_tables, params, fields):
    start(container_factory, collect_config)

    with pytest.raises(InvalidArgument) as caught:
        rpc(collect_config, "collect_start", params)

    assert caught.value.fields == fields
    assert collect_tables.execute("SELECT count(*) FROM collect_jobs").fetchone()[0] == 0


@pytest.mark.parametrize("method, args, field", [
    ("collect_progress", ("7",), "job_id"),
    ("collect_abort", (0,), "job_id"),
    ("collect_jobs", (0, None), "limit"),
    ("collect_jobs", (5, "paused"), "status"),
])
def test_bad_lookup_arguments(container_factory, collect_config, method, args, field):
    start(container_factory, collect_config)
    with pytest.raises(InvalidArgument) as caught:
        rpc(collect_config, method, *args)
    assert list(caught.value.fields) == [field]


def test_collection_off_without_bots(container_factory, collect_config, collect_tables, bots_secret):
    bots_secret.delenv("TZR_COLLECT_BOTS")
    start(container_factory, collect_config)

    with pytest.raises(CollectionDisabled, match="set the secret TZR_COLLECT_BOTS"):
        rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 1})
    assert rpc(collect_config, "collect_jobs") == []


@pytest.mark.parametrize(
    "secret, message",
    [
        (f"{BOT_ONE}:{KEY_ONE}\nbroken-entry", "secret TZR_COLLECT_BOTS: entry 2 is not login:KEY"),
        ("Сборщик:0123456789abcdef", "the key of entry 1 \\(login 'Сборщик'\\) must be 40 uppercase"),
    ],
)
def test_malformed_bots_secret_stops_start(container_factory, collect_config, bots_secret, secret, message):
    bots_secret.setenv("TZR_COLLECT_BOTS", secret)
    container = container_factory(IngestService, collect_config)

    with pytest.raises(ConfigurationError, match=message) as caught:
        container.start()
    assert KEY_ONE not in str(caught.value)
    assert "0123456789abcdef" not in str(caught.value)


def test_wrong_bot_key_fails_job(container_factory, collect_config, collect_tables, bots_secret):
    bots_secret.setenv("TZR_COLLECT_BOTS", f"{BOT_ONE}:{KEY_ONE[:-1]}0,{BOT_TWO}:{KEY_ONE}")
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": FIRST_ID, "count": 3})
    ended = wait_for_job(collect_tables, job["id"])

    assert ended["status"] == "failed"
    assert "every bot account was rejected at LOGIN" in ended["error"]
    assert battle_rows(collect_tables) == {}


def test_gzip_log_fetched_as_served(container_factory, collect_config, collect_tables, game, logs_dir, folders):
    battle_id = FIRST_ID + 4
    plain = logs_dir / f"{battle_id}.tzb"
    with gzip.open(logs_dir / f"{battle_id}.tzb.gz", "wb") as stream:
        stream.write(plain.read_bytes())
    plain.unlink()
    start(container_factory, collect_config)

    job = rpc(collect_config, "collect_start", {"direction": "range", "start": battle_id, "count": 1})
    wait_for_job(collect_tables, job["id"])

    assert battle_rows(collect_tables)[battle_id]["status"] == "fetched"
    assert (folders["drop"] / f"{battle_id}.tzb").read_bytes().startswith(b"<BLOOK")
