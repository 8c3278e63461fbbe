"""TZR Host's Nameko services: ``nameko run services`` starts every one of them.

psycopg is switched to its pure-Python implementation before anything
imports it, because only that one waits on sockets through eventlet's
patched ``select`` (the C implementation blocks the whole hub).
"""

import os
import warnings

os.environ.setdefault("PSYCOPG_IMPL", "python")
# nameko 2.14 runs on eventlet, which warns on import that it is deprecated;
# the services know, and the warning would open every log.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from services.battles.service import BattlesService  # noqa: E402
from services.gateway.service import GatewayService  # noqa: E402
from services.ingest.service import IngestService  # noqa: E402
from services.registration.service import RegistrationService  # noqa: E402
from services.shop.service import ShopService  # noqa: E402
from services.status.service import StatusService  # noqa: E402


__all__ = ["BattlesService", "GatewayService", "IngestService", "RegistrationService", "ShopService", "StatusService"]
