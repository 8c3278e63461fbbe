"""Good jobs through the reference site, the agent and the running services."""

import pytest

from conftest import PASSWORD, TELEGRAM_ID


pytestmark = pytest.mark.integration


def accounts(gamedb) -> list[str]:
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT login FROM users ORDER BY login")
        return [row[0] for row in cursor.fetchall()]


def test_status_job(agent, site):
    answer = site.job("get_server_status")
    assert answer["verified"], answer
    result = answer["result"]
    assert result["ok"] is True
    assert result["error"] is None
    status = result["result"]
    assert status["server_status"] == 1
    assert status["rates"] == {"exp": 1.0, "pvp": 1.0, "pve": 1.0, "color_mob": 1.0, "skill": 1.0}
    assert status["generated_at"].endswith("+00:00")
    assert isinstance(status["revision"], int)


def test_register_job(agent, site, gamedb, simulator):
    payload = {"login": "Странник", "gender": 1, "telegram_id": TELEGRAM_ID, "username": "wanderer"}
    answer = site.job("register", payload, password=PASSWORD)
    assert answer["verified"], answer
    assert answer["result"]["ok"] is True, answer
    assert answer["result"]["result"] == {"ok": True, "user_id": None, "error": None}
    assert accounts(gamedb) == ["Странник"]
    assert simulator.count_commands("ADDUSER") == 1
    agent.wait_log(f"job {answer['id']}: done")


def test_recover_job(agent, site, gamedb, simulator):
    payload = {"login": "Ranger Ola", "gender": 0, "telegram_id": TELEGRAM_ID}
    assert site.job("register", payload, password=PASSWORD)["result"]["ok"]
    answer = site.job("recover", {"telegram_id": TELEGRAM_ID}, password="newpass99")
    assert answer["verified"], answer
    assert answer["result"]["ok"] is True, answer
    assert answer["result"]["result"] == {"ok": True, "logins": ["Ranger Ola"], "failed": []}
    assert simulator.count_commands("NEWPAS") == 1


def test_passwords_never_logged(agent, site, gamedb):
    payload = {"login": "Ranger Ola", "gender": 0, "telegram_id": TELEGRAM_ID}
    answer = site.job("register", payload, password=PASSWORD)
    assert answer["result"]["ok"], answer
    agent.wait_log(f"job {answer['id']}: done")
    assert PASSWORD not in agent.text()
