"""tzrctl against a real supervisord and this host's real backends."""

import json
import time

import pytest
from click.testing import CliRunner

from tzrctl import cli, state


def wait_for(predicate, seconds=20.0):
    """Poll ``predicate`` until it returns true or ``seconds`` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def run(state_file, *arguments, input=None):
    return CliRunner().invoke(cli.main, ["--state-file", str(state_file), *arguments], input=input)


def program_states(state_file) -> dict:
    result = run(state_file, "status", "--json")
    return {part["name"]: part["state"] for part in json.loads(result.output)["parts"] if part["group"] == "program"}


def test_no_deployment(tmp_path):
    result = run(tmp_path / "missing.json", "status")
    assert result.exit_code == 1
    assert "has no TZR Host deployment" in result.output


def test_status_with_supervisord_down(deployment):
    result = run(deployment, "status")
    assert result.exit_code == 1
    assert "STOPPED" in result.output
    assert "supervisord is not running" in result.output


def test_start_status_stop(deployment):
    assert run(deployment, "start").exit_code == 0
    assert wait_for(lambda: set(program_states(deployment).values()) == {"RUNNING"})

    result = run(deployment, "status")
    lines = {line.split()[1]: line for line in result.output.splitlines()[2:]}
    assert "RUNNING" in lines["alpha"]
    assert "UP" in lines["redis"]
    assert "UP" in lines["rabbitmq"]
    assert "UP" in lines["postgresql"]
    assert "UP" in lines["mariadb"]
    # Nothing listens at the gateway's address, so the deployment is unhealthy.
    assert "DOWN" in lines["health"]
    assert result.exit_code == 1

    assert run(deployment, "stop", "beta").exit_code == 0
    assert program_states(deployment) == {"alpha": "RUNNING", "beta": "STOPPED"}
    assert run(deployment, "restart", "all").exit_code == 0
    assert wait_for(lambda: program_states(deployment) == {"alpha": "RUNNING", "beta": "RUNNING"})


def test_unknown_program(deployment):
    result = run(deployment, "restart", "gamma")
    assert result.exit_code == 2
    assert "unknown program gamma; deployed: alpha, beta" in result.output


def test_logs_of_one_program(deployment):
    run(deployment, "start")
    log = state.load(deployment).log_dir / "alpha.log"
    assert wait_for(log.exists)
    assert wait_for(lambda: "alpha started" in log.read_text())
    result = CliRunner().invoke(cli.main, ["--state-file", str(deployment), "logs", "alpha", "-n", "5"])
    assert result.exit_code == 0


def test_logs_follow_needs_a_name(deployment):
    result = run(deployment, "logs", "--follow")
    assert result.exit_code == 2
    assert "--follow needs one program name" in result.output


def test_doctor_finds_the_problems(deployment):
    secret = state.load(deployment).credentials_dir / "mariadb_password"
    (deployment.parent / "env.d" / "secrets.env").write_text(f"MARIADB_PASSWORD_FILE={secret}\n")
    secret.chmod(0o644)

    result = run(deployment, "doctor")
    rows = {line.split()[2]: line.split()[0] for line in result.output.splitlines()[1:-1]}
    assert result.exit_code == 1
    assert rows["settings"] == "OK"
    assert rows["MARIADB_PASSWORD_FILE"] == "FAIL"
    assert "has mode 0644; expected 0600" in result.output
    assert rows["redis"] == "OK"
    assert rows["rabbitmq"] == "OK"
    assert rows["postgresql"] == "OK"
    assert rows["gateway"] == "FAIL"
    assert rows["game-server"] == "FAIL"
    assert rows["skew"] == "OK"


def test_doctor_reports_a_missing_setting(deployment):
    main = deployment.parent / "tzr.env"
    main.write_text(main.read_text().replace("TZR_API_KEYS='site:00'\n", ""))
    result = run(deployment, "doctor")
    assert result.exit_code == 1
    assert "missing: TZR_API_KEYS" in result.output


def test_doctor_unreachable_backend(deployment):
    main = deployment.parent / "tzr.env"
    main.write_text(main.read_text().replace("redis://127.0.0.1:6379/0", "redis://127.0.0.1:1/0"))
    result = run(deployment, "doctor")
    line = next(line for line in result.output.splitlines() if " redis " in line)
    assert line.startswith("FAIL")
    assert "redis://127.0.0.1:1/0" in line


def test_down_keeps_data(deployment):
    run(deployment, "start")
    marker = state.load(deployment).data_dir / "archive.tzb.gz"
    marker.write_text("x")
    result = run(deployment, "down")
    assert result.exit_code == 0
    assert "data kept" in result.output
    assert marker.exists()
    assert "supervisord is not running" in run(deployment, "status").output


def test_down_delete_data_needs_confirmation(deployment):
    marker = state.load(deployment).data_dir / "archive.tzb.gz"
    marker.write_text("x")
    result = run(deployment, "down", "--delete-data", input="n\n")
    assert result.exit_code == 1
    assert "about to delete:" in result.output
    assert "nothing deleted" in result.output
    assert marker.exists()


@pytest.mark.parametrize("command", ["start", "stop", "restart"])
def test_control_without_supervisor(deployment, command):
    document = json.loads(deployment.read_text())
    document["supervisor"]["supervisorctl"] = "/nonexistent/supervisorctl"
    deployment.write_text(json.dumps(document))
    result = run(deployment, command, "alpha")
    assert result.exit_code == 1
    assert "/nonexistent/supervisorctl not found; deploy again to install supervisor" in result.output
