"""Checks of a deployment: its settings, backends, ports, disk, versions and clock."""

import datetime
import json
import os
import platform
import shutil
import socket
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit


OK, WARN, FAIL = "ok", "warn", "fail"

# Settings every deployment has; the services start with defaults without them.
REQUIRED_SETTINGS = ("TZR_MODE", "AMQP_URI", "TZR_PG_DSN", "TZR_GAMEDB_DSN", "TZR_REDIS_URL", "TZR_GATEWAY_ADDRESS",
                     "TZR_API_KEYS")
# Seconds that a backend's clock may differ from this host's.
MAX_CLOCK_SKEW = 2.0
# Seconds each network check waits.
TIMEOUT = 5


@dataclass
class Check:
    """The outcome of one check: ``level`` is ok, warn or fail, and ``detail`` describes what was found."""

    group: str
    name: str
    level: str
    detail: str
    # A backend's clock, for the clock check.
    clock: datetime.datetime | None = None


def _tcp_open(host: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return True, f"{host}:{port} accepts connections"
    except OSError as error:
        return False, f"{host}:{port}: {error.strerror or error}"


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, default_port
    return host.strip("[]"), int(port)


def check_postgresql(environment: dict) -> Check:
    """Connect to TZR_PG_DSN (password from PGPASSFILE) and read the server's version and clock."""
    import psycopg

    dsn = environment.get("TZR_PG_DSN", "")
    options = {"connect_timeout": TIMEOUT}
    if environment.get("PGPASSFILE"):
        options["passfile"] = environment["PGPASSFILE"]
    try:
        with psycopg.connect(dsn, **options) as connection:
            version, now = connection.execute("SELECT current_setting('server_version'), now()").fetchone()
            migrated = connection.execute("SELECT to_regclass('ingest_runs') IS NOT NULL").fetchone()[0]
    except psycopg.Error as error:
        return Check("backends", "postgresql", FAIL, f"{_redact(dsn)}: {str(error).strip()}")
    if not migrated:
        return Check("backends", "postgresql", FAIL, f"PostgreSQL {version}: no TZR Host schema; run `tzrctl migrate`", now)
    return Check("backends", "postgresql", OK, f"PostgreSQL {version} at {_redact(dsn)}", now)


def check_mariadb(environment: dict) -> Check:
    """Connect to TZR_GAMEDB_DSN with MARIADB_PASSWORD(_FILE) and read the server's version and clock."""
    import pymysql

    dsn = environment.get("TZR_GAMEDB_DSN", "")
    parts = urlsplit(dsn)
    try:
        password = _secret(environment, "MARIADB_PASSWORD") or ""
    except OSError as error:
        return Check("backends", "mariadb", FAIL, f"cannot read MARIADB_PASSWORD_FILE: {error}")
    try:
        connection = pymysql.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=unquote(parts.username or ""),
            password=password, database=parts.path.lstrip("/") or None, connect_timeout=TIMEOUT,
        )
    except pymysql.MySQLError as error:
        return Check("backends", "mariadb", FAIL, f"{_redact(dsn)}: {error}")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION(), UTC_TIMESTAMP(6)")
            version, now = cursor.fetchone()
    finally:
        connection.close()
    return Check("backends", "mariadb", OK, f"MariaDB {version} at {_redact(dsn)}", now.replace(tzinfo=datetime.UTC))


def check_redis(environment: dict) -> Check:
    """PING TZR_REDIS_URL and read the server's version."""
    import redis

    url = environment.get("TZR_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        client.ping()
        version = client.info("server").get("redis_version", "?")
        client.close()
    except redis.RedisError as error:
        return Check("backends", "redis", FAIL, f"{_redact(url)}: {error}")
    return Check("backends", "redis", OK, f"Redis {version} at {_redact(url)}")


def check_rabbitmq(environment: dict) -> Check:
    """Log in to AMQP_URI and read the broker's version."""
    import kombu

    uri = environment.get("AMQP_URI", "")
    try:
        with kombu.Connection(uri, connect_timeout=TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, timeout=TIMEOUT)
            properties = connection.connection.server_properties
    except Exception as error:  # noqa: BLE001 - kombu raises transport-specific errors
        return Check("backends", "rabbitmq", FAIL, f"{_redact(uri)}: {error}")
    version = properties.get("version", "?")
    if isinstance(version, bytes):
        version = version.decode()
    return Check("backends", "rabbitmq", OK, f"RabbitMQ {version} at {_redact(uri)}")


def check_http(url: str, name: str) -> Check:
    """GET ``url``; ok on 200, with the JSON body's failing checks named otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return Check("gateway", name, OK, f"{url}: {response.status}")
    except urllib.error.HTTPError as error:
        detail = f"{url}: {error.code}"
        try:
            body = json.loads(error.read())
            failing = [key for key, value in (body.get("checks") or {}).items() if value is not True]
            if failing:
                detail += f"; failing: {', '.join(failing)}"
        except (ValueError, AttributeError):
            pass
        return Check("gateway", name, FAIL, detail)
    except (urllib.error.URLError, OSError) as error:
        return Check("gateway", name, FAIL, f"{url}: {getattr(error, 'reason', error)}")


def check_game_server(address: str) -> Check:
    """Check that the game server (the simulator in test mode) accepts connections."""
    if not address:
        return Check("ports", "game-server", WARN, "no game server in the state file")
    host, port = _host_port(address, 5190)
    is_open, detail = _tcp_open(host, port)
    return Check("ports", "game-server", OK if is_open else FAIL, detail)


def check_gateway_port(environment: dict) -> Check:
    """Check that the gateway's TZR_GATEWAY_ADDRESS accepts connections."""
    host, port = _host_port(environment.get("TZR_GATEWAY_ADDRESS", "127.0.0.1:8000"), 8000)
    is_open, detail = _tcp_open("127.0.0.1" if host in ("0.0.0.0", "") else host, port)
    return Check("ports", "gateway", OK if is_open else FAIL, detail)


def check_settings(deployment) -> list:
    """Check the required settings and every secret file that a ``*_FILE`` setting names."""
    checks = []
    environment = deployment.environment
    missing = [name for name in REQUIRED_SETTINGS if not environment.get(name)]
    if missing:
        checks.append(Check("config", "settings", FAIL, f"missing: {', '.join(missing)}"))
    else:
        checks.append(Check("config", "settings", OK, f"{len(environment)} settings, mode {environment['TZR_MODE']}"))
    if environment.get("TZR_MODE") and environment["TZR_MODE"] != deployment.mode:
        checks.append(Check("config", "mode", FAIL,
                            f"TZR_MODE is {environment['TZR_MODE']} but the deployment is in {deployment.mode} mode"))
    for name, path in sorted(environment.items()):
        if name.endswith("_FILE") or name == "PGPASSFILE":
            checks.append(check_secret_file(name, path))
    return checks


def check_secret_file(name: str, path: str) -> Check:
    """Check that the secret file exists, is not empty and is readable by its owner alone."""
    try:
        info = os.stat(path)
    except OSError as error:
        return Check("config", name, FAIL, f"{path}: {error.strerror}")
    if info.st_size == 0:
        return Check("config", name, FAIL, f"{path} is empty")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check("config", name, FAIL, f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; expected 0600")
    return Check("config", name, OK, f"{path} (0600)")


def check_disk(path: Path, min_free_bytes: int) -> Check:
    """Fail when the file system of ``path`` has less than ``min_free_bytes`` free."""
    try:
        usage = shutil.disk_usage(path)
    except OSError as error:
        return Check("disk", str(path), FAIL, f"{error.strerror}")
    free_gib = usage.free / 2**30
    detail = f"{free_gib:.1f} GiB free of {usage.total / 2**30:.1f} GiB"
    if usage.free < min_free_bytes:
        return Check("disk", str(path), FAIL, f"{detail}; below {min_free_bytes / 2**30:.1f} GiB")
    return Check("disk", str(path), OK, detail)


def check_versions(deployment) -> list:
    """Report the versions of Python, the application and Nameko, and the deployed release."""
    versions = {"python": platform.python_version()}
    for distribution in ("tzr-host", "nameko"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    detail = ", ".join(f"{name} {version}" for name, version in versions.items())
    return [Check("versions", "software", OK, f"{detail}, release {deployment.release or '?'}")]


def check_clock(backend_checks, now=None) -> Check:
    """Compare this host's clock with each backend's; fail beyond MAX_CLOCK_SKEW seconds."""
    now = now or datetime.datetime.now(datetime.UTC)
    skews = {check.name: (check.clock - now).total_seconds() for check in backend_checks if check.clock}
    zone = datetime.datetime.now().astimezone().tzname()
    if not skews:
        return Check("clock", "skew", WARN, f"no backend reported its clock; local time zone {zone}")
    detail = ", ".join(f"{name} {skew:+.2f} s" for name, skew in skews.items()) + f"; local time zone {zone}"
    worst = max(abs(skew) for skew in skews.values())
    return Check("clock", "skew", FAIL if worst > MAX_CLOCK_SKEW else OK, detail)


def backend_checks(environment: dict) -> list:
    """Run the four backend checks."""
    return [check(environment) for check in (check_postgresql, check_mariadb, check_redis, check_rabbitmq)]


def _secret(environment: dict, name: str) -> str | None:
    if environment.get(name):
        return environment[name]
    path = environment.get(name + "_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    return None


def _redact(uri: str) -> str:
    """Return ``uri`` without its password."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
