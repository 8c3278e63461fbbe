"""A deployment for tzrctl in a temporary folder: a real supervisord running
`sleep` programs, settings that point at this host's real backends, and a
gateway address where nothing listens."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


SUPERVISORD = Path(sys.executable).with_name("supervisord")
SUPERVISORCTL = Path(sys.executable).with_name("supervisorctl")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def deployment(tmp_path, pg_dsn):
    """Write a state file, settings and a supervisord configuration; yield the state file's path."""
    if not SUPERVISORD.exists():
        pytest.skip("supervisor is not installed in this virtualenv (pip install -e '.[test]')")
    etc, data, logs, run = (tmp_path / name for name in ("etc", "data", "log", "run"))
    for folder in (etc / "env.d", etc / "credentials", etc / "supervisor.d", data, logs, run):
        folder.mkdir(parents=True)

    secret = etc / "credentials" / "mariadb_password"
    secret.write_text("unused\n")
    secret.chmod(0o600)

    (etc / "tzr.env").write_text(
        "# settings as the deployment writes them\n"
        "TZR_MODE=test\n"
        "AMQP_URI='pyamqp://guest:guest@127.0.0.1:5672/'\n"
        f"TZR_PG_DSN='{pg_dsn}'\n"
        "TZR_GAMEDB_DSN='mysql://root@127.0.0.1:3306/'\n"
        "TZR_REDIS_URL=redis://127.0.0.1:6379/0\n"
        f"TZR_GATEWAY_ADDRESS=127.0.0.1:{_free_port()}\n"
        "TZR_API_KEYS='site:00'\n"
    )
    (etc / "env.d" / "ingest.env").write_text("TZR_INGEST_INTERVAL=60\n")

    config = etc / "supervisord.conf"
    config.write_text(
        f"[unix_http_server]\nfile={run}/supervisor.sock\nchmod=0700\n"
        f"[supervisord]\nlogfile={logs}/supervisord.log\npidfile={run}/supervisord.pid\nchildlogdir={logs}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{run}/supervisor.sock\n"
        f"[include]\nfiles = {etc}/supervisor.d/*.conf\n"
    )
    for name in ("alpha", "beta"):
        (etc / "supervisor.d" / f"{name}.conf").write_text(
            f"[program:{name}]\ncommand=sh -c 'echo {name} started; exec sleep 600'\n"
            f"startsecs=1\nredirect_stderr=true\nstdout_logfile={logs}/{name}.log\n"
        )

    state = etc / "tzrctl.json"
    state.write_text(json.dumps({
        "mode": "test",
        "manager": "supervisord",
        "programs": ["alpha", "beta"],
        "kinds": {"alpha": "service", "beta": "service"},
        "supervisor": {"config": str(config), "supervisorctl": str(SUPERVISORCTL), "supervisord": str(SUPERVISORD)},
        "env_files": [str(etc / "tzr.env"), str(etc / "env.d")],
        "exec": "/bin/false",
        "log_dir": str(logs),
        "data_dir": str(data),
        "credentials_dir": str(etc / "credentials"),
        "gateway_url": "http://127.0.0.1:1",
        "game_server": f"127.0.0.1:{_free_port()}",
        "release": "0123456789ab",
    }))
    yield state
    subprocess.run([str(SUPERVISORCTL), "-c", str(config), "shutdown"], capture_output=True, timeout=60)
    shutil.rmtree(tmp_path, ignore_errors=True)

