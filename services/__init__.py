"""TZR Host's Nameko services: ``nameko run services`` starts every one of them.

psycopg is switched to its pure-Python implementation before anything
imports it, because only that one waits on sockets through eventlet's
patched ``select`` (the C implementation blocks the whole hub).
"""

import os

os.environ.setdefault("PSYCOPG_IMPL", "python")

from services.ingest.service import IngestService  # noqa: E402


__all__ = ["IngestService"]
