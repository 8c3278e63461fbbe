"""Every way a job can go wrong, and what the website gets back: a signed error, or nothing for frames without an id.

Each test also checks that nothing ran that should not have: the game
simulator counts ADDUSER commands, and the game's users table contains the
accounts.
"""

import json
import signal
import time
import uuid

import pytest

from conftest import PASSWORD, TELEGRAM_ID, wait_until
from site_agent import crypto
from site_agent.site import build_job


pytestmark = pytest.mark.integration

STATUS_RESULT_KEYS = {"server_status", "rates", "generated_at", "revision"}


def register_payload(keys, login="Ranger Ola", password=PASSWORD, aes_key=None) -> dict:
    return {"login": login, "gender": 1, "telegram_id": TELEGRAM_ID,
            "password_encrypted": crypto.encrypt(password, aes_key or keys.aes_key)}


def accounts(gamedb) -> list[str]:
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT login FROM users ORDER BY login")
        return [row[0] for row in cursor.fetchall()]


def resign(job: dict, keys) -> dict:
    job = {name: value for name, value in job.items() if name != "sig"}
    job["sig"] = crypto.sign(job, crypto.JOB_SIGNED_FIELDS, keys.hmac_key)
    return job


def error_code(answer: dict) -> str:
    assert answer["verified"], answer
    result = answer["result"]
    assert result["ok"] is False, result
    assert result["result"] is None, result
    code, _, text = result["error"].partition(": ")
    assert text, result["error"]
    return code


def assert_still_serving(site):
    answer = site.job("get_server_status", wait=30)
    assert answer["verified"] and answer["result"]["ok"], answer


# SIGNATURE, AGE AND REPLAY


def test_tampered_signature(agent, site, keys, gamedb, simulator):
    job = build_job("register", register_payload(keys), keys.hmac_key)
    tampered = {**job, "payload": {**job["payload"], "login": "Intruder"}}
    assert error_code(site.send(tampered, tampered["id"])) == "invalid_signature"
    assert simulator.count_commands("ADDUSER") == 0

    # The forged frame did not claim the id: the genuine job with that id still runs.
    answer = site.send(resign(job, keys), job["id"], wait=30)
    assert answer["result"]["ok"], answer
    assert accounts(gamedb) == ["Ranger Ola"]


def test_signed_with_another_secret(agent, site, keys):
    job = build_job("get_server_status", {}, b"another-secret")
    assert error_code(site.send(job, job["id"])) == "invalid_signature"


@pytest.mark.parametrize("offset, code", [(-46, "job_expired"), (-3600, "job_expired"), (46, "job_from_future")])
def test_job_outside_the_ttl(agent, site, keys, simulator, offset, code):
    job = build_job("register", register_payload(keys), keys.hmac_key, now=time.time() + offset)
    assert error_code(site.send(job, job["id"])) == code
    assert simulator.count_commands("ADDUSER") == 0


def test_replayed_job_gets_the_stored_result(agent, site, keys, gamedb, simulator):
    job = build_job("register", register_payload(keys), keys.hmac_key)
    first = site.send(job, job["id"], wait=30)
    second = site.send(job, job["id"], wait=30)
    assert first["verified"] and second["verified"]
    assert first["result"]["ok"] and second["result"]["ok"]
    assert first["result"]["result"] == second["result"]["result"]
    # A fresh nonce and signature, so the site's own replay check passes.
    assert first["result"]["nonce"] != second["result"]["nonce"]
    assert simulator.count_commands("ADDUSER") == 1
    assert accounts(gamedb) == ["Ranger Ola"]
    agent.wait_log(f"job {job['id']}: repeated, sending the stored outcome")


def test_repeated_failure_is_stored_too(agent, site, keys, simulator):
    job = build_job("register", {**register_payload(keys), "login": "x"}, keys.hmac_key)
    assert error_code(site.send(job, job["id"])) == "validation_error"
    again = resign({**job, "nonce": str(uuid.uuid4()), "ts": int(time.time())}, keys)
    answer = site.send(again, job["id"])
    assert error_code(answer) == "validation_error"
    assert "login" in answer["result"]["error"]


def test_nonce_reused_under_another_id(agent, site, keys):
    first = build_job("get_server_status", {}, keys.hmac_key)
    assert site.send(first, first["id"])["result"]["ok"]
    second = resign({**first, "id": str(uuid.uuid4())}, keys)
    assert error_code(site.send(second, second["id"])) == "nonce_reused"


def test_job_id_reused_for_another_job(agent, site, keys, simulator):
    first = build_job("get_server_status", {}, keys.hmac_key)
    assert site.send(first, first["id"])["result"]["ok"]
    other = build_job("register", register_payload(keys), keys.hmac_key, job_id=first["id"])
    assert error_code(site.send(other, other["id"])) == "job_id_reused"
    assert simulator.count_commands("ADDUSER") == 0


def test_concurrent_deliveries_of_one_job_run_it_once(agent, site, keys, gamedb, simulator):
    simulator.set_fault("slow", commands={"ADDUSER"}, delay=1.5)
    job = build_job("register", register_payload(keys), keys.hmac_key)
    assert site.send(job, None)["sent"]
    agent.wait_log(f"job {job['id']}: register received")
    again = resign({**job, "nonce": str(uuid.uuid4())}, keys)
    answer = site.send(again, job["id"], wait=30)
    assert answer["verified"] and answer["result"]["ok"], answer
    agent.wait_log(f"job {job['id']}: repeated while it runs, waiting for its outcome")
    assert simulator.count_commands("ADDUSER") == 1
    assert accounts(gamedb) == ["Ranger Ola"]


# BAD CONTENT


def test_wrong_aes_key(agent, site, keys, gamedb, simulator):
    payload = register_payload(keys, aes_key=bytes(32))
    answer = site.send(build_job("register", payload, keys.hmac_key), None)
    job = build_job("register", payload, keys.hmac_key)
    code = error_code(site.send(job, job["id"]))
    assert code == "decryption_failed"
    assert answer["sent"]
    assert simulator.count_commands("ADDUSER") == 0
    assert accounts(gamedb) == []
    assert PASSWORD not in agent.text()


@pytest.mark.parametrize("frame", ["{not json", "[1, 2]", '"job"', '{"type": "job"}', '{"type": "ping", "id": "x"}',
                                   '{"type": "job", "id": 17}', "\udcff"[:0] + "\x00"])
def test_frames_without_a_job_id_are_dropped(agent, site, frame):
    answer = site.send(frame, None, wait=0)
    assert answer["sent"]
    agent.wait_log("dropped a frame")
    assert_still_serving(site)


def test_missing_fields_get_a_signed_error(agent, site, keys):
    job = build_job("get_server_status", {}, keys.hmac_key)
    del job["nonce"]
    answer = site.send(job, job["id"])
    assert error_code(answer) == "malformed_job"
    assert "nonce" in answer["result"]["error"]


@pytest.mark.parametrize("change", [{"ts": "1760000000"}, {"ts": True}, {"payload": []}, {"sig": "xyz"},
                                    {"job_type": 5}])
def test_badly_typed_fields_get_a_signed_error(agent, site, keys, change):
    job = {**build_job("get_server_status", {}, keys.hmac_key), **change}
    assert error_code(site.send(job, job["id"])) == "malformed_job"


def test_unknown_job_type(agent, site, keys):
    job = build_job("drop_database", {}, keys.hmac_key)
    answer = site.send(job, job["id"])
    assert error_code(answer) == "unknown_job_type"
    assert "drop_database" in answer["result"]["error"]


def test_unsigned_unknown_type_fails_signature(agent, site, keys):
    job = {**build_job("drop_database", {}, keys.hmac_key), "sig": "0" * 64}
    assert error_code(site.send(job, job["id"])) == "invalid_signature"


def test_register_payload_missing_fields(agent, site, keys, simulator):
    job = build_job("register", {"login": "Ranger Ola"}, keys.hmac_key)
    answer = site.send(job, job["id"])
    assert error_code(answer) == "malformed_job"
    assert "password_encrypted" in answer["result"]["error"]


def test_service_error_codes_come_through(agent, site, keys, gamedb, simulator):
    simulator.add_account("Ranger Ola", "x" * 40)
    answer = site.job("register", {"login": "Ranger Ola", "gender": 1, "telegram_id": TELEGRAM_ID},
                      password=PASSWORD)
    assert error_code(answer) == "login_taken"
    assert "Этот логин уже занят" in answer["result"]["error"]


# FRAMES AND CONNECTIONS


def test_oversized_frame_closes_the_connection_and_runs_nothing(agent, site, keys, simulator):
    payload = {**register_payload(keys), "username": "x" * (70 * 1024)}
    job = build_job("register", payload, keys.hmac_key)
    answer = site.send(job, job["id"], wait=2)
    assert answer["result"] is None
    wait_until(lambda: site.state()["connections"] >= 2, what="the agent to reconnect")
    agent.wait_log("sent 1009 (message too big)")
    assert simulator.count_commands("ADDUSER") == 0
    assert_still_serving(site)


def test_site_restarting_mid_job(agent, site, keys, gamedb, simulator):
    simulator.set_fault("slow", commands={"ADDUSER"}, delay=2)
    answer = site.job("register", {"login": "Ranger Ola", "gender": 1, "telegram_id": TELEGRAM_ID},
                      password=PASSWORD, wait=0)
    job_id = answer["id"]
    agent.wait_log(f"job {job_id}: register received")
    site.stop(signal.SIGKILL)
    site.start()
    # The restarted site sends the job again from its journal, with a new nonce.
    final = site.result(job_id, wait=30)
    assert final["verified"] and final["result"]["ok"], final
    assert simulator.count_commands("ADDUSER") == 1
    assert accounts(gamedb) == ["Ranger Ola"]
    assert site.state()["pending"] == []


def test_site_unreachable_then_back(agent_process, site, keys):
    site.stop()
    agent_process.start()
    wait_until(lambda: agent_process.text().count("cannot connect") >= 3, what="three failed connections")
    site.start()
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    assert_still_serving(site)


def test_half_open_connection_is_detected(agent_process, site):
    agent_process.start(TZR_AGENT_PING_INTERVAL=0.3, TZR_AGENT_PING_TIMEOUT=0.5, TZR_AGENT_OPEN_TIMEOUT=1)
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    # A stopped process keeps its sockets open but never sends a pong.
    site.process.send_signal(signal.SIGSTOP)
    try:
        agent_process.wait_log("connection closed", timeout=10)
    finally:
        site.process.send_signal(signal.SIGCONT)
    wait_until(lambda: site.state()["connections"] >= 2, what="the agent to reconnect")
    assert_still_serving(site)


def test_too_many_pending_jobs_get_agent_busy(agent_process, site, keys, simulator):
    agent_process.start(TZR_AGENT_CONCURRENCY=1, TZR_AGENT_MAX_PENDING=1)
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    simulator.set_fault("slow", commands={"ADDUSER"}, delay=1.5)
    first = build_job("register", register_payload(keys), keys.hmac_key)
    second = build_job("get_server_status", {}, keys.hmac_key)
    site.send(first, None)
    agent_process.wait_log(f"job {first['id']}: register received")
    assert error_code(site.send(second, second["id"])) == "agent_busy"
    assert site.result(first["id"], wait=30)["result"]["ok"]


def test_graceful_shutdown_finishes_jobs_in_flight(agent, site, keys, gamedb, simulator):
    simulator.set_fault("slow", commands={"ADDUSER"}, delay=1.5)
    job = build_job("register", register_payload(keys), keys.hmac_key)
    site.send(job, None)
    agent.wait_log(f"job {job['id']}: register received")
    assert agent.stop(signal.SIGTERM) == 0
    answer = site.result(job["id"], wait=5)
    assert answer["verified"] and answer["result"]["ok"], answer
    assert accounts(gamedb) == ["Ranger Ola"]


# TOKENS


def test_expired_token_stops_the_start(agent_process, site):
    agent_process.write_token(lifetime=-60)
    agent_process.start()
    assert agent_process.wait_exit() == 2
    assert "expired at" in agent_process.text()
    assert "put a new token" in agent_process.text()
    assert site.state()["connections"] == 0


def test_refused_token_waits_for_a_new_one(agent_process, site):
    agent_process.write_token(secret="not-the-site-secret-" + "x" * 32)
    agent_process.start()
    agent_process.wait_log("waiting for a new one")
    refused = site.state()["refused"]
    time.sleep(1)
    # No knocking with the same token while waiting.
    assert site.state()["refused"] == refused
    agent_process.write_token()
    wait_until(lambda: site.state()["connected"], what="the agent to connect with the new token")
    assert_still_serving(site)


def test_sighup_reads_the_token_again(agent_process, site):
    agent_process.write_token(secret="not-the-site-secret-" + "x" * 32)
    agent_process.start()
    agent_process.wait_log("waiting for a new one")
    agent_process.write_token()
    agent_process.process.send_signal(signal.SIGHUP)
    wait_until(lambda: site.state()["connected"], what="the agent to connect after SIGHUP")


# READ-ONLY QUERIES


def test_battle_query_not_found(agent, site):
    answer = site.job("get_battle", {"battle_id": 123456789})
    assert error_code(answer) == "battle_not_found"


def test_player_query_with_bad_params(agent, site):
    answer = site.job("top_players", {"params": {"metric": "nonsense"}})
    assert error_code(answer) == "validation_error"


def test_top_players_on_an_empty_database(agent, site, pg):
    answer = site.job("top_players", {"params": {}})
    assert answer["verified"] and answer["result"]["ok"], answer
    assert answer["result"]["result"]["items"] == []


def test_results_are_plain_json(agent, site):
    answer = site.job("get_server_status")
    assert set(answer["result"]["result"]) == STATUS_RESULT_KEYS
    json.dumps(answer["result"])


# BACKENDS DOWN


def closed_port() -> int:
    from conftest import free_port

    return free_port()


def test_redis_down_rejects_jobs_retryably(agent_process, site, keys, simulator):
    agent_process.start(TZR_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    job = build_job("register", register_payload(keys), keys.hmac_key)
    assert error_code(site.send(job, job["id"], wait=30)) == "service_unavailable"
    assert simulator.count_commands("ADDUSER") == 0
    agent_process.wait_log("rejected because Redis is unavailable")


def test_rabbitmq_down_is_retryable_and_not_stored(agent_process, site, keys, redis_client):
    agent_process.start(AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:{closed_port()}/")
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    job = build_job("get_server_status", {}, keys.hmac_key)
    assert error_code(site.send(job, job["id"], wait=30)) == "service_unavailable"
    # A retryable failure is forgotten, so the site may send the job again.
    assert redis_client.get(f"tzr:agent:job:{job['id']}") is None
    agent_process.wait_log("cannot reach RabbitMQ")
