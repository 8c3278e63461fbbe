"""Defaults for config sections that the service config does not set.

``nameko run services`` without ``--config`` gives the services no sections
of their own. They then fall back to the packaged ``services/config.yml``,
read with nameko's ``${VAR:default}`` substitution, so the same environment
variables apply either way.
"""

import re
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


_PLACEHOLDER_RE = re.compile(r"\$\{([A-Z0-9_]+):")


@lru_cache(maxsize=None)
def _environment_names() -> dict[tuple[str, str], str]:
    # Maps (section, key) to the variable that the packaged config reads it
    # from, as in "  game_port: ${TZR_GAME_PORT:5190}" under "STATUS:".
    names = {}
    section = ""
    for line in PACKAGED_CONFIG.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(":")
        if not line.startswith(" "):
            section = key
        found = _PLACEHOLDER_RE.search(value)
        if found:
            names[(section if line.startswith(" ") else "", key)] = found.group(1)
    return names


def describe_setting(section: str, key: str) -> str:
    """Return how messages name a setting: ``config STATUS.game_port (TZR_GAME_PORT)``."""
    variable = _environment_names().get((section, key))
    name = f"config {section}.{key}"
    return f"{name} ({variable})" if variable else name


def read_number(values: dict, section: str, key: str, default, kind=float, minimum=None):
    """Return ``values[key]`` (or ``default``) as ``kind``; raise ValueError naming the setting.

    With ``minimum``, smaller values are rejected too.
    """
    value = values.get(key, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{describe_setting(section, key)} must be {what}, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{describe_setting(section, key)} must be at least {minimum}, got {value!r}")
    return number
