"""The ``tzr-ingest`` command: ingest battle logs, inspect one, manage the schema.

``tzr-ingest PATH...`` is short for ``tzr-ingest ingest PATH...``.
Exit status: 0 when every file loaded or was a duplicate, 1 when any file was
quarantined or failed, 2 for a usage error, 3 when the run could not start
(database unreachable, schema outdated, another run in progress).
"""

import contextlib
import json
import logging
import re
import sys
from pathlib import Path

import click
import psycopg
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipelines import db
from pipelines.battlelogs import marts
from pipelines.battlelogs.settings import (
    DEFAULT_ARCHIVE_LEVEL,
    DEFAULT_BATCH_SIZE,
    IngestSettings,
    default_data_dir,
)
from pipelines.battlelogs.read import DEFAULT_MAX_BYTES, Rejected, SourceFile
from pipelines.battlelogs.runner import RunInProgress, run_ingest


EXIT_FILES_REJECTED = 1
EXIT_CANNOT_RUN = 3


class _DefaultToIngest(click.Group):
    """Routes ``tzr-ingest PATH...`` to the ingest command.

    The group's own options are flags without values. The first argument
    after them names the command; when it names none, the arguments are the
    ingest options and paths. A command name that follows options (``--dsn
    URI runs``) is moved to the front, so options may come first; a path
    that happens to be called like a command needs a ``./`` prefix.
    """

    _GROUP_FLAGS = re.compile(r"^(-v+|--verbose|-q|--quiet|--version|--help|-h)$")

    def parse_args(self, ctx, args):
        for index, arg in enumerate(args):
            if self._GROUP_FLAGS.match(arg):
                continue
            if arg not in self.commands:
                rest = args[index:]
                named = next((position for position, word in enumerate(rest) if word in self.commands), None)
                if arg.startswith("-") and named is not None:
                    rest = [rest[named], *rest[:named], *rest[named + 1:]]
                else:
                    rest = ["ingest", *rest]
                args = [*args[:index], *rest]
            break
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToIngest)
@click.version_option(package_name="tzr-host")
@click.option("-v", "--verbose", count=True, help="Log more: -v for debug messages.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
def main(verbose: int, quiet: bool) -> None:
    """Load TimeZero battle logs (.tzb, .tzb.gz) into PostgreSQL.

    `tzr-ingest PATH...` is short for `tzr-ingest ingest PATH...`.
    """
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    elif verbose:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


_dsn_option = click.option(
    "--dsn", envvar=db.DSN_ENV, default=db.DEFAULT_DSN, show_default=True,
    help=f"PostgreSQL connection URI (environment: {db.DSN_ENV}).",
)

_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def _check_server(ctx, param, value: str) -> str:
    if not _SERVER_NAME_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a server name: use 1 to 32 letters, digits, '_', '.' or '-'")
    return value


_server_option = click.option(
    "--server", envvar="TZR_SERVER", default="main", show_default=True, callback=_check_server,
    help="Name of the game server the logs come from; battle ids repeat across servers "
         "(environment: TZR_SERVER).",
)


def _fail_to_start(error: Exception, dsn: str) -> None:
    """Print why the command could not work with the database, and exit with status 3."""
    if isinstance(error, (RunInProgress, db.SchemaOutdated)):
        message = str(error)
    elif isinstance(error, psycopg.errors.UndefinedTable):
        message = f"the database at {db.redacted(dsn)} has no TZR Host schema; run `tzr-ingest migrate`"
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = (
            f"cannot use PostgreSQL at {db.redacted(dsn)}: {reason}; "
            f"check --dsn or {db.DSN_ENV}"
        )
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_CANNOT_RUN)


_START_ERRORS = (RunInProgress, db.SchemaOutdated, psycopg.Error, ValueError)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_dsn_option
@_server_option
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes that parse and load batches in parallel.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Files per batch; each batch loads in one transaction.")
@click.option("--archive", "archive_root", type=click.Path(path_type=Path),
              help="Archive root of this server [default: $TZR_DATA_DIR/archive/SERVER, TZR_DATA_DIR=var].")
@click.option("--quarantine", "quarantine_root", type=click.Path(path_type=Path),
              help="Folder for files that cannot be loaded [default: $TZR_DATA_DIR/quarantine].")
@click.option("--move/--copy", default=False, show_default=True,
              help="Move input files into the archive or quarantine instead of copying them.")
@click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Largest uncompressed log accepted, in bytes.")
@click.option("--archive-level", type=click.IntRange(1, 9), default=DEFAULT_ARCHIVE_LEVEL, show_default=True,
              help="gzip level for archived logs.")
@click.option("--min-age", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Inside folders, skip files whose modification time is less than this many seconds ago.")
@click.option("--no-marts", is_flag=True,
              help="Do not rebuild the marts for the days loaded; run `tzr-ingest marts` afterwards.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object on stdout: files, loaded (replaced included), "
                   "duplicates, quarantined (reason: count), failed, seconds.")
@click.option("--trigger", type=click.Choice(["cli", "timer", "rpc", "collect"]), default="cli", hidden=True)
def ingest(paths, dsn, server, workers, batch_size, archive_root, quarantine_root, move,
           max_bytes, archive_level, min_age, no_marts, as_json, trigger):
    """Ingest the log files and folders PATHS (walked recursively)."""
    data_dir = default_data_dir()
    settings = IngestSettings(
        dsn=dsn,
        server=server,
        archive_root=archive_root or data_dir / "archive" / server,
        quarantine_root=quarantine_root or data_dir / "quarantine",
        move=move,
        max_bytes=max_bytes,
        batch_size=batch_size,
        archive_level=archive_level,
    )
    bar = None

    def show_progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="file", dynamic_ncols=True, file=sys.stderr)
        bar.update(done - bar.n)

    on_terminal = sys.stderr.isatty()
    try:
        # Log lines go through tqdm on a terminal, so they do not tear the bar.
        with logging_redirect_tqdm() if on_terminal else contextlib.nullcontext():
            result = run_ingest(
                paths, settings, workers=workers, trigger=trigger, min_age=min_age,
                refresh_marts=not no_marts, progress=show_progress if on_terminal else None,
            )
    except _START_ERRORS as error:
        _fail_to_start(error, dsn)
    finally:
        if bar is not None:
            bar.close()

    summary = result.summary
    if as_json:
        keys = ("files", "loaded", "duplicates", "quarantined", "failed", "seconds")
        click.echo(json.dumps({key: summary[key] for key in keys}, ensure_ascii=False))
    else:
        click.echo(_describe_summary(result.run_id, summary))
    if summary["quarantined"] or summary["failed"]:
        sys.exit(EXIT_FILES_REJECTED)


def _describe_summary(run_id: int, summary: dict) -> str:
    quarantined = sum(summary["quarantined"].values())
    reasons = ", ".join(f"{reason}: {count}" for reason, count in summary["quarantined"].items())
    line = (
        f"run {run_id}: {summary['files']} file(s) in {summary['seconds']:.1f} s: "
        f"{summary['loaded']} loaded ({summary['replaced']} replaced), "
        f"{summary['duplicates']} duplicate(s), {quarantined} quarantined"
    )
    if reasons:
        line += f" ({reasons})"
    return line + f", {summary['failed']} failed"


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_server_option
@click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Largest uncompressed log accepted, in bytes.")
def show(file: Path, server: str, max_bytes: int) -> None:
    """Parse one log without a database and print it as JSON.

    Applies the checks of a run: a file that a run would quarantine prints
    {"file", "rejected": reason, "detail"} and exits with status 1.
    """
    from pipelines.battlelogs.parse import load_log

    try:
        _raw, battle = load_log(SourceFile.from_path(file), max_bytes)
    except Rejected as rejection:
        click.echo(json.dumps({"file": str(file), "rejected": rejection.reason, "detail": rejection.detail},
                              ensure_ascii=False))
        sys.exit(EXIT_FILES_REJECTED)
    click.echo(json.dumps(battle_summary(battle, server), ensure_ascii=False, indent=2))


def battle_summary(battle, server: str) -> dict:
    """Return the ``show`` view of a parsed battle (see :mod:`pipelines.battlelogs.summary`)."""
    from pipelines.battlelogs.summary import battle_summary as summarize_battle

    return summarize_battle(battle, server)


@main.command()
@_dsn_option
def migrate(dsn: str) -> None:
    """Apply pending schema migrations."""
    try:
        applied = db.migrate(dsn)
    except _START_ERRORS as error:
        _fail_to_start(error, dsn)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date")


@main.command("marts")
@_dsn_option
def rebuild_marts(dsn: str) -> None:
    """Rebuild every mart from the battle tables."""
    try:
        db.require_current_schema(dsn)
        with db.connect(dsn, autocommit=True) as connection:
            marts.refresh(connection, None)
    except _START_ERRORS as error:
        _fail_to_start(error, dsn)
    click.echo(f"rebuilt {len(marts.mart_files())} mart file(s)")


@main.command()
@_dsn_option
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Runs to list.")
def runs(dsn: str, limit: int) -> None:
    """List the latest ingestion runs, newest first."""
    try:
        with db.connect(dsn) as connection:
            rows = connection.execute(
                "SELECT id, trigger, status, started_at, files, loaded, replaced, duplicates, quarantined, failed,"
                " seconds"
                " FROM ingest_runs ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()
    except _START_ERRORS as error:
        _fail_to_start(error, dsn)
    for row in rows:
        run_id, trigger, status, started_at, files, loaded, replaced, duplicates, quarantined, failed, seconds = row
        click.echo(
            f"{run_id:>6} {started_at:%Y-%m-%d %H:%M:%S} {trigger:<5} {status:<22} files={files} "
            f"loaded={loaded} replaced={replaced} duplicates={duplicates} quarantined={sum(quarantined.values())} "
            f"failed={failed} seconds={seconds if seconds is None else round(seconds, 1)}"
        )


if __name__ == "__main__":
    main()
