"""The deployment's state file and settings files, as tzrctl reads them."""

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


DEFAULT_STATE_FILE = "/etc/tzr-host/tzrctl.json"
STATE_FILE_ENV = "TZRCTL_STATE"


class StateError(Exception):
    """The state file or a settings file is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Deployment:
    """The deployment that playbooks/deploy.yml made on this host."""

    path: Path
    mode: str
    manager: str
    programs: list
    kinds: dict
    supervisor: dict
    systemd_unit_prefix: str
    env_files: list
    exec_path: str
    log_dir: Path
    data_dir: Path
    credentials_dir: Path
    gateway_url: str
    game_server: str
    release: str
    environment: dict = field(default_factory=dict, repr=False)

    def unit(self, program: str) -> str:
        """Return the systemd unit name of ``program``."""
        return f"{self.systemd_unit_prefix}{program}.service"


_REQUIRED = ("mode", "manager", "programs", "env_files", "log_dir", "data_dir", "gateway_url")


def state_path(path=None) -> Path:
    """Return the state file to read: ``path``, else $TZRCTL_STATE, else the default."""
    return Path(path or os.environ.get(STATE_FILE_ENV) or DEFAULT_STATE_FILE)


def load(path=None) -> Deployment:
    """Read the state file and the settings files it names.

    Raises StateError when the state file is missing (no deployment on this
    host), is not JSON, lacks a key, or names an unreadable settings file.
    """
    path = state_path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(
            f"{path} not found: this host has no TZR Host deployment; run playbooks/deploy.yml "
            f"or set {STATE_FILE_ENV}"
        ) from None
    except (OSError, ValueError) as error:
        raise StateError(f"cannot read the state file {path}: {error}") from None
    if not isinstance(document, dict):
        raise StateError(f"{path} must hold a JSON object, got {type(document).__name__}")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise StateError(f"{path} lacks {', '.join(missing)}; deploy again to rewrite it")
    if document["manager"] not in ("supervisord", "systemd"):
        raise StateError(f"{path}: manager must be supervisord or systemd, got {document['manager']!r}")

    return Deployment(
        path=path,
        mode=document["mode"],
        manager=document["manager"],
        programs=list(document["programs"]),
        kinds=dict(document.get("kinds", {})),
        supervisor=dict(document.get("supervisor", {})),
        systemd_unit_prefix=document.get("systemd_unit_prefix", "tzr-"),
        env_files=list(document["env_files"]),
        exec_path=document.get("exec", ""),
        log_dir=Path(document["log_dir"]),
        data_dir=Path(document["data_dir"]),
        credentials_dir=Path(document.get("credentials_dir", "")),
        gateway_url=document["gateway_url"].rstrip("/"),
        game_server=document.get("game_server", ""),
        release=document.get("release", ""),
        environment=read_environment(document["env_files"]),
    )


def read_environment(paths) -> dict:
    """Merge the settings of ``paths`` in order, reading a folder's ``*.env`` files in sorted order.

    Each file contains shell-quoted ``NAME=value`` lines, as the deployment
    writes them; blank lines and ``#`` comments are skipped.
    """
    environment = {}
    for entry in paths:
        entry = Path(entry)
        files = sorted(entry.glob("*.env")) if entry.is_dir() else [entry]
        for file in files:
            environment.update(parse_env_file(file))
    return environment


def parse_env_file(path) -> dict:
    """Parse one settings file; raise StateError naming the file and line of a bad entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StateError(f"cannot read the settings file {path}: {error}") from None
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, raw = line.partition("=")
        if not separator or not name.isidentifier():
            raise StateError(f"{path}:{number}: expected NAME=value, got {line[:40]!r}")
        try:
            words = shlex.split(raw, comments=False, posix=True)
        except ValueError as error:
            raise StateError(f"{path}:{number}: {name} has bad quoting: {error}") from None
        values[name] = " ".join(words)
    return values
