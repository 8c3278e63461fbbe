"""The tzrctl command: status, logs, doctor, migrate, start, stop, restart, down, ingest."""

import json
import shutil
import subprocess
import sys
import time

import click

from tzrctl import checks, managers, state


EXIT_PROBLEM = 1
EXIT_USAGE = 2

_ALL = "all"


def _load(context) -> state.Deployment:
    try:
        return state.load(context.obj["state_file"])
    except state.StateError as error:
        raise click.ClickException(str(error)) from None


def _manager(deployment):
    return managers.for_deployment(deployment)


def _names(deployment, names) -> list:
    """Return the programs that ``names`` selects: every one for none or ``all``."""
    if not names or _ALL in names:
        return []
    unknown = [name for name in names if name not in deployment.programs]
    if unknown:
        raise click.UsageError(
            f"unknown program {', '.join(unknown)}; deployed: {', '.join(deployment.programs)}"
        )
    return list(names)


def _table(rows, headers) -> str:
    widths = [max(len(str(row[column])) for row in [headers, *rows]) for column in range(len(headers))]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


@click.group()
@click.option("--state-file", envvar=state.STATE_FILE_ENV, default=state.DEFAULT_STATE_FILE, show_default=True,
              help="The deployment's state file, written by playbooks/deploy.yml.")
@click.pass_context
def main(context, state_file):
    """Operate the TZR Host deployment on this host."""
    context.ensure_object(dict)
    context.obj["state_file"] = state_file


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(context, as_json):
    """Show every program and backend and its state; exit 1 when any is down."""
    deployment = _load(context)
    rows = []
    try:
        program_states = _manager(deployment).states()
    except managers.ManagerError as error:
        raise click.ClickException(str(error)) from None
    for program in program_states:
        rows.append(("program", program.name, deployment.kinds.get(program.name, ""),
                     program.state, program.running, program.detail))
    for check in checks.backend_checks(deployment.environment):
        rows.append(("backend", check.name, "", "UP" if check.level == checks.OK else "DOWN",
                     check.level == checks.OK, check.detail))
    for path, name in (("/health", "health"), ("/ready", "ready")):
        check = checks.check_http(deployment.gateway_url + path, name)
        rows.append(("gateway", name, "", "UP" if check.level == checks.OK else "DOWN",
                     check.level == checks.OK, check.detail))

    healthy = all(row[4] for row in rows)
    if as_json:
        keys = ("group", "name", "kind", "state", "up", "detail")
        click.echo(json.dumps({"mode": deployment.mode, "manager": deployment.manager, "healthy": healthy,
                               "parts": [dict(zip(keys, row)) for row in rows]}, indent=2))
    else:
        click.echo(f"TZR Host, {deployment.mode} mode, release {deployment.release or '?'}, {deployment.manager}")
        click.echo(_table([(group, name, state_, detail) for group, name, _, state_, _, detail in rows],
                          ("PART", "NAME", "STATE", "DETAIL")))
    context.exit(0 if healthy else EXIT_PROBLEM)


@main.command()
@click.argument("name", default=_ALL)
@click.option("-n", "--lines", type=click.IntRange(1, 100000), default=50, show_default=True,
              help="Lines to show from the end of each log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (one program only).")
@click.pass_context
def logs(context, name, lines, follow):
    """Show the log of one program, or the end of every log."""
    deployment = _load(context)
    selected = _names(deployment, [name])
    if follow and not selected:
        raise click.UsageError("--follow needs one program name")
    manager = _manager(deployment)
    for program in selected or deployment.programs:
        if not selected:
            click.echo(f"==> {program} <==")
        command = manager.log_command(program, lines, follow)
        try:
            subprocess.run(command, check=False)
        except FileNotFoundError:
            raise click.ClickException(f"{command[0]} not found") from None


@main.command()
@click.option("--min-free-gib", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Free disk space, in GiB, below which the data and log folders fail.")
@click.pass_context
def doctor(context, min_free_gib):
    """Check the settings, each backend, the ports, disk space, versions and the clock."""
    deployment = _load(context)
    results = [checks.Check("config", "state file", checks.OK, str(deployment.path))]
    results += checks.check_settings(deployment)
    backend_results = checks.backend_checks(deployment.environment)
    results += backend_results
    results.append(checks.check_gateway_port(deployment.environment))
    results.append(checks.check_game_server(deployment.game_server))
    results.append(checks.check_http(deployment.gateway_url + "/ready", "ready"))
    for path in (deployment.data_dir, deployment.log_dir):
        results.append(checks.check_disk(path, int(min_free_gib * 2**30)))
    results += checks.check_versions(deployment)
    results.append(checks.check_clock(backend_results))

    click.echo(_table([(check.level.upper(), check.group, check.name, check.detail) for check in results],
                      ("RESULT", "GROUP", "CHECK", "DETAIL")))
    failed = [check for check in results if check.level == checks.FAIL]
    click.echo(f"{len(failed)} failed, {len(results) - len(failed)} passed")
    context.exit(EXIT_PROBLEM if failed else 0)


@main.command()
@click.pass_context
def migrate(context):
    """Apply the PostgreSQL and MariaDB migrations (and the test tables in test mode)."""
    deployment = _load(context)
    commands = [["tzr-ingest", "migrate"]]
    if deployment.mode == "test":
        commands.append(["tzr-gamedb", "test-schema"])
    commands.append(["tzr-gamedb", "migrate"])
    for command in commands:
        click.echo(f"$ {' '.join(command)}")
        result = subprocess.run([deployment.exec_path, *command], check=False)
        if result.returncode != 0:
            raise click.ClickException(f"`{' '.join(command)}` failed with exit status {result.returncode}")


def _control(context, action, names):
    deployment = _load(context)
    selected = _names(deployment, names)
    try:
        output = _manager(deployment).control(action, selected)
    except managers.ManagerError as error:
        raise click.ClickException(str(error)) from None
    if output:
        click.echo(output)


@main.command()
@click.argument("names", nargs=-1)
@click.pass_context
def start(context, names):
    """Start programs by name, or every one (`all` or no name)."""
    _control(context, "start", names)


@main.command()
@click.argument("names", nargs=-1)
@click.pass_context
def stop(context, names):
    """Stop programs by name, or every one (`all` or no name)."""
    _control(context, "stop", names)


@main.command()
@click.argument("names", nargs=-1)
@click.pass_context
def restart(context, names):
    """Restart programs by name, or every one (`all` or no name)."""
    _control(context, "restart", names)


@main.command()
@click.option("--delete-data", is_flag=True,
              help="Also delete the battle-log folders and the analytics database, and in test mode the game's test database.")
@click.option("--yes", is_flag=True, help="Do not ask before deleting data.")
@click.pass_context
def down(context, delete_data, yes):
    """Stop every program and the service manager's daemon; keep the data unless --delete-data."""
    deployment = _load(context)
    try:
        click.echo(_manager(deployment).shutdown())
    except managers.ManagerError as error:
        raise click.ClickException(str(error)) from None
    if not delete_data:
        click.echo(f"data kept in {deployment.data_dir} and the databases")
        return

    targets = _data_targets(deployment)
    click.echo("about to delete:")
    for target in targets:
        click.echo(f"  {target}")
    if not yes and not click.confirm("delete this data for good?", default=False):
        raise click.ClickException("nothing deleted")
    _delete_data(deployment)
    click.echo("data deleted; deploy again to recreate the databases and folders")


def _data_targets(deployment) -> list:
    targets = [f"the contents of {deployment.data_dir}",
               f"PostgreSQL database {_database_name(deployment.environment.get('TZR_PG_DSN', ''))}"]
    if deployment.mode == "test":
        targets.append(f"MariaDB test database {_database_name(deployment.environment.get('TZR_GAMEDB_DSN', ''))}")
    return targets


def _database_name(dsn: str) -> str:
    return dsn.rsplit("/", 1)[-1] if "/" in dsn else dsn


def _delete_data(deployment):
    """Delete the data folder's contents, the analytics database and, in test mode only, the game's test database."""
    import psycopg
    import pymysql

    environment = deployment.environment
    pg_dsn = environment["TZR_PG_DSN"]
    database = _database_name(pg_dsn)
    options = {"passfile": environment["PGPASSFILE"]} if environment.get("PGPASSFILE") else {}
    maintenance = pg_dsn[: -len(database)] + "postgres"
    with psycopg.connect(maintenance, autocommit=True, **options) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    # The game's database belongs to the game server: only its test copy is ever dropped.
    if deployment.mode == "test":
        mariadb = checks.urlsplit(environment["TZR_GAMEDB_DSN"])
        connection = pymysql.connect(host=mariadb.hostname, port=mariadb.port or 3306, user=mariadb.username,
                                     password=checks._secret(environment, "MARIADB_PASSWORD") or "")
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{mariadb.path.lstrip('/')}`")
        finally:
            connection.close()
    for child in deployment.data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@main.command()
@click.option("--timeout", type=click.IntRange(1), default=600, show_default=True,
              help="Seconds to wait for the run to end.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.pass_context
def ingest(context, timeout, as_json):
    """Ingest the drop folder now through the ingest service and print the run's summary."""
    deployment = _load(context)
    summary = _run_ingestion(deployment.environment["AMQP_URI"], timeout)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(", ".join(f"{key} {value}" for key, value in summary.items()))
    context.exit(0 if not summary.get("failed") else EXIT_PROBLEM)


def _run_ingestion(amqp_uri: str, timeout: int) -> dict:
    """Call the ingest service's run_now; when a run is already going, wait for it and return its summary."""
    import warnings

    # nameko imports eventlet, which warns on import that it is deprecated.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from nameko.exceptions import RemoteError
    from nameko.standalone.rpc import ClusterRpcProxy

    deadline = time.monotonic() + timeout
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as rpc:
        try:
            return rpc.ingest.run_now()
        except RemoteError as error:
            if error.exc_type != "RunInProgress":
                raise click.ClickException(f"the ingestion failed: {error.exc_type}: {error.value}") from None
        while time.monotonic() < deadline:
            latest = rpc.ingest.last_runs(1)[0]
            if latest["status"] != "running":
                return latest
            time.sleep(2)
    raise click.ClickException(f"the running ingestion did not end within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
