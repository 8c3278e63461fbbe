"""Defaults for config sections that the service config does not set.

``nameko run services`` without ``--config`` gives the services no sections
of their own. They then fall back to the packaged ``services/config.yml``,
read with nameko's ``${VAR:default}`` substitution, so the same environment
variables apply either way.
"""

from functools import lru_cache
from pathlib import Path

import yaml
from nameko.cli.main import setup_yaml_parser


PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "config.yml"


@lru_cache(maxsize=None)
def _packaged() -> dict:
    setup_yaml_parser()
    with PACKAGED_CONFIG.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def section(config: dict, name: str) -> dict:
    """Return the config section ``name``, or the packaged default for it."""
    value = config.get(name)
    if value:
        return value
    return dict(_packaged().get(name) or {})
