"""Runs the battle-log pipeline for the ingest service, off the eventlet hub."""

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

from eventlet.green import subprocess
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from pipelines.battlelogs.read import discover
from services.common.config import section as config_section
from services.ingest.exceptions import IngestFailed, RunInProgress


_log = getLogger(__name__)

CONFIG_SECTION = "INGEST"
# tzr-ingest's exit status when a run cannot start (see pipelines.battlelogs.cli).
_EXIT_CANNOT_RUN = 3
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class RunnerSettings:
    """The INGEST config section, checked."""

    dsn: str
    server: str
    drop_dir: Path
    archive_dir: Path
    quarantine_dir: Path
    workers: int
    min_age: float
    timeout: float

    @classmethod
    def from_config(cls, config: dict) -> "RunnerSettings":
        section = config_section(config, CONFIG_SECTION)
        missing = [key for key in ("dsn", "drop_dir", "archive_dir", "quarantine_dir") if not section.get(key)]
        if missing:
            raise ValueError(f"config {CONFIG_SECTION} lacks {', '.join(missing)}")
        return cls(
            dsn=section["dsn"],
            server=str(section.get("server", "main")),
            drop_dir=Path(section["drop_dir"]),
            archive_dir=Path(section["archive_dir"]),
            quarantine_dir=Path(section["quarantine_dir"]),
            workers=int(section.get("workers", 2)),
            min_age=float(section.get("min_age", 2)),
            timeout=float(section.get("timeout", 3600)),
        )


class RepeatedLog:
    """Logs a message, then the same message again at most every few minutes.

    A timer that fails on every tick (the database is down, say) would
    otherwise write the same error every interval.
    """

    def __init__(self, logger, every: float = 600.0):
        self.logger = logger
        self.every = every
        self.last_text = None
        self.last_logged = 0.0
        self.suppressed = 0

    def log(self, level: int, message: str, *args) -> None:
        text = message % args
        now = time.monotonic()
        if text == self.last_text and now - self.last_logged < self.every:
            self.suppressed += 1
            return
        if text == self.last_text and self.suppressed:
            text = f"{text} (repeated {self.suppressed} more time(s))"
        self.logger.log(level, "%s", text)
        self.last_text = message % args
        self.last_logged = now
        self.suppressed = 0

    def reset(self) -> None:
        self.last_text = None
        self.suppressed = 0


class IngestRunner(DependencyProvider):
    """Runs ``tzr-ingest`` on the drop folder in a child process.

    Parsing is CPU-bound, so it never runs in the service process: the child
    has its own process pool and no eventlet, and the service only waits on
    its pipes, which keeps the hub (and the broker heartbeats) responsive.
    One run at a time per service process; the pipeline's advisory lock in
    PostgreSQL also keeps runs from other processes apart.
    """

    def setup(self):
        self.settings = RunnerSettings.from_config(self.container.config)
        self.lock = Semaphore(1)
        self.process = None
        self.repeats = RepeatedLog(_log)

    def start(self):
        for folder in (self.settings.drop_dir, self.settings.archive_dir, self.settings.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _log.info("watching drop folder %s for battle logs", self.settings.drop_dir)

    def kill(self):
        process = self.process
        if process is not None and process.poll() is None:
            _log.warning("killing ingestion run (pid %s)", process.pid)
            os.killpg(process.pid, signal.SIGKILL)

    def get_dependency(self, worker_ctx):
        return self

    def has_pending_files(self) -> bool:
        for _ in discover([self.settings.drop_dir], min_age=self.settings.min_age):
            return True
        return False

    def run(self, trigger: str) -> dict:
        """Ingest the drop folder now and return the run's summary.

        Raises :class:`RunInProgress` when a run is already going on in this
        service or elsewhere, and :class:`IngestFailed` when the run could
        not start or crashed.
        """
        if not self.lock.acquire(blocking=False):
            raise RunInProgress("an ingestion run is already in progress in this service")
        try:
            return self._run_child(trigger)
        finally:
            self.lock.release()

    def _command(self, trigger: str) -> list[str]:
        settings = self.settings
        return [
            sys.executable, "-m", "pipelines.battlelogs.cli", "ingest",
            str(settings.drop_dir),
            "--json", "--move", "--trigger", trigger,
            "--server", settings.server,
            "--workers", str(settings.workers),
            "--min-age", str(settings.min_age),
            "--archive", str(settings.archive_dir / settings.server),
            "--quarantine", str(settings.quarantine_dir),
        ]

    def _run_child(self, trigger: str) -> dict:
        # The DSN goes through the environment, never the command line, where
        # any local user could read a password in the process list.
        environment = dict(os.environ, TZR_PG_DSN=self.settings.dsn)
        started = time.monotonic()
        _log.info("ingestion run starting (%s)", trigger)
        self.process = subprocess.Popen(
            self._command(trigger),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            start_new_session=True,
        )
        try:
            stdout, stderr = self.process.communicate(timeout=self.settings.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()
            raise IngestFailed(f"the ingestion run exceeded {self.settings.timeout:.0f} s and was killed") from None
        finally:
            returncode = self.process.returncode
            self.process = None

        output = stderr.decode("utf-8", "replace").strip()
        # The child logs one line per quarantined file and the run's start
        # and end; they belong in this service's log.
        for line in output.splitlines():
            _log.info("tzr-ingest: %s", line)
        error_text = output[-_STDERR_TAIL:]
        if returncode == _EXIT_CANNOT_RUN:
            if "in progress" in error_text:
                raise RunInProgress(error_text)
            raise IngestFailed(error_text or "the ingestion run could not start")
        if returncode not in (0, 1):
            _log.error("ingestion run exited with status %s: %s", returncode, error_text)
            raise IngestFailed(f"the ingestion run exited with status {returncode}: {error_text}")
        try:
            summary = json.loads(stdout.decode("utf-8").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise IngestFailed(f"the ingestion run printed no summary: {error_text}") from None
        _log.info("ingestion run (%s) done in %.1f s: %s", trigger, time.monotonic() - started, summary)
        return summary
