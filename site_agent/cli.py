"""``tzr-agent``: run the site agent until SIGTERM or SIGINT.

Exit status: 0 after a graceful stop, 2 when a setting or the token is
unusable at start (the message names it).
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from site_agent import config
from site_agent.agent import Agent
from site_agent.auth import TokenError, TokenFile
from site_agent.backend import RpcBackend
from site_agent.jobs import JobRunner
from site_agent.store import JobStore


_log = logging.getLogger("site_agent")


async def serve(settings, tokens) -> None:
    """Run the agent with its backend and store until SIGTERM or SIGINT."""
    backend = RpcBackend(settings.amqp_uri, workers=settings.concurrency)
    store = JobStore(settings.redis_url, settings.job_ttl, settings.running_keep, settings.result_keep)
    runner = JobRunner(backend, settings.aes_key, settings.register_timeout, settings.query_timeout)
    agent = Agent(settings, runner, store, tokens)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, agent.stop)
    loop.add_signal_handler(signal.SIGINT, agent.stop)
    loop.add_signal_handler(signal.SIGHUP, agent.token_hint)
    try:
        await agent.run()
    finally:
        await store.close()
        await loop.run_in_executor(None, backend.close)
        _log.info("stopped")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tzr-agent", description="Carry the website's jobs to TZR Host's services.")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR (default: LOG_LEVEL or INFO)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=arguments.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every frame at DEBUG, and the AMQP libraries every
    # message; their INFO lines repeat ours.
    for noisy in ("websockets", "amqp", "kombu", "nameko"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        settings = config.from_environment()
        tokens = TokenFile(settings.jwt_file)
        tokens.check_usable()
    except (config.SettingsError, TokenError) as error:
        print(f"tzr-agent: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
