"""The services' error classes and user messages, loaded without the ``services`` package.

``services/__init__.py`` imports every service, and with them eventlet and
the database drivers; none of that belongs in the agent's asyncio process.
The two modules the agent shares with the services depend on nothing else
in the package (``errors`` needs only ``nameko.exceptions``), so they are
loaded here from their files under their own names. Their classes then
keep the module path the services use (``services.common.errors.LoginTaken``),
which is what nameko's error registry matches a remote error on: an
error raised by a service comes back to the agent as itself, with its code,
fields and parameters.
"""

import importlib.util
import sys
from pathlib import Path


_COMMON = Path(__file__).resolve().parent.parent / "services" / "common"


def _load(name: str):
    qualified = f"services.common.{name}"
    module = sys.modules.get(qualified)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(qualified, _COMMON / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    return module


errors = _load("errors")
messages = _load("messages")
