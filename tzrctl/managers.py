"""Start, stop and inspect the deployment's programs through supervisord or systemd."""

import os
import subprocess
from dataclasses import dataclass


class ManagerError(Exception):
    """The service manager could not be reached or refused a command."""


@dataclass(frozen=True)
class ProgramState:
    """One program's state as its manager reports it; ``running`` is True only when it is up."""

    name: str
    state: str
    running: bool
    detail: str


def for_deployment(deployment, runner=subprocess.run):
    """Return the manager object of ``deployment``."""
    if deployment.manager == "systemd":
        return Systemd(deployment, runner)
    return Supervisor(deployment, runner)


class Supervisor:
    """supervisord, driven through its own supervisorctl and configuration."""

    # supervisorctl's exit status when a program is not running (LSB: 3).
    NOT_RUNNING = 3

    def __init__(self, deployment, runner=subprocess.run):
        self.deployment = deployment
        self.runner = runner
        self.supervisorctl = deployment.supervisor.get("supervisorctl", "supervisorctl")
        self.supervisord = deployment.supervisor.get("supervisord", "supervisord")
        self.config = deployment.supervisor.get("config", "")

    def _ctl(self, *arguments, check=True):
        command = [self.supervisorctl, "-c", self.config, *arguments]
        try:
            result = self.runner(command, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise ManagerError(f"{self.supervisorctl} not found; deploy again to install supervisor") from None
        except subprocess.TimeoutExpired:
            raise ManagerError(f"`supervisorctl {' '.join(arguments)}` timed out after 120 s") from None
        if check and result.returncode not in (0, self.NOT_RUNNING):
            message = (result.stderr or result.stdout).strip()
            raise ManagerError(f"`supervisorctl {' '.join(arguments)}` failed ({result.returncode}): {message}")
        return result

    def daemon_running(self) -> bool:
        """Return True when supervisord accepts commands on its socket."""
        result = self._ctl("pid", check=False)
        return result.returncode == 0 and result.stdout.strip().isdigit()

    def start_daemon(self) -> bool:
        """Start supervisord (and with it every program) unless it runs; return True if it was started."""
        if self.daemon_running():
            return False
        try:
            result = self.runner([self.supervisord, "-c", self.config], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise ManagerError(f"{self.supervisord} not found; deploy again to install supervisor") from None
        if result.returncode != 0:
            raise ManagerError(f"supervisord did not start: {(result.stderr or result.stdout).strip()}")
        return True

    def states(self) -> list:
        """Return a ProgramState per deployed program; all are `STOPPED (supervisord down)` without the daemon."""
        if not self.daemon_running():
            return [ProgramState(name, "STOPPED", False, "supervisord is not running") for name in self.deployment.programs]
        reported = {}
        for line in self._ctl("status").stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2:
                reported[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        states = []
        for name in self.deployment.programs:
            state, detail = reported.get(name, ("MISSING", "not in supervisord's configuration"))
            states.append(ProgramState(name, state, state == "RUNNING", detail.strip()))
        return states

    def control(self, action: str, names) -> str:
        """Run ``start``, ``stop`` or ``restart`` on ``names`` (all programs when empty); return the output."""
        if action in ("start", "restart") and self.start_daemon():
            if action == "start" and not names:
                return "started supervisord and its programs"
        return self._ctl(action, *(names or ["all"])).stdout.strip()

    def shutdown(self) -> str:
        """Stop every program and supervisord itself."""
        if not self.daemon_running():
            return "supervisord is not running"
        return self._ctl("shutdown").stdout.strip()

    def log_command(self, name: str, lines: int, follow: bool) -> list:
        """Return the command that prints (or follows) the log of ``name``."""
        path = os.path.join(self.deployment.log_dir, f"{name}.log")
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), path]


class Systemd:
    """systemd units named ``<prefix><program>.service``, read through systemctl and journalctl."""

    def __init__(self, deployment, runner=subprocess.run):
        self.deployment = deployment
        self.runner = runner

    def _run(self, command, check=True):
        try:
            result = self.runner(command, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise ManagerError(f"{command[0]} not found: is systemd installed?") from None
        if check and result.returncode != 0:
            raise ManagerError(f"`{' '.join(command)}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
        return result

    def states(self) -> list:
        """Return a ProgramState per deployed unit from ``systemctl show``."""
        states = []
        for name in self.deployment.programs:
            result = self._run(
                ["systemctl", "show", "--property=ActiveState,SubState,MainPID", self.deployment.unit(name)], check=False
            )
            properties = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
            active = properties.get("ActiveState", "unknown")
            detail = f"{properties.get('SubState', '?')}, pid {properties.get('MainPID', '?')}"
            states.append(ProgramState(name, active.upper(), active == "active", detail))
        return states

    def control(self, action: str, names) -> str:
        """Run ``systemctl start|stop|restart`` on the units of ``names`` (all when empty)."""
        units = [self.deployment.unit(name) for name in (names or self.deployment.programs)]
        self._run(["systemctl", action, *units])
        return f"{action}: {' '.join(units)}"

    def shutdown(self) -> str:
        """Stop every unit."""
        return self.control("stop", [])

    def log_command(self, name: str, lines: int, follow: bool) -> list:
        """Return the journalctl command for the unit of ``name``."""
        return ["journalctl", "-u", self.deployment.unit(name), "-n", str(lines), "--no-pager", *(["-f"] if follow else [])]
