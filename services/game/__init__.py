"""The game server's socket protocol: framing, messages, replies, clients and a simulator.

The simulator lives in :mod:`services.game.simulator` and is not imported
here, so that ``python -m services.game.simulator`` runs it cleanly.
"""

from services.game.client import (
    AdminClient,
    BattleIdMismatch,
    BotSession,
    BotSettings,
    GameConnectFailed,
    GameLoginFailed,
    GameNoReply,
    GameRefused,
    retry_connect_failures,
    send_admin_command,
)
from services.game.framing import (
    FrameReader,
    FrameTooLarge,
    GameConnectionClosed,
    GameError,
    GameHalfFrame,
    GameProtocolError,
    GameTimeout,
    encode_frame,
)
from services.game.messages import ClientIdentity
from services.game.password import transform_password
from services.game.replies import Reply, parse_reply


__all__ = [
    "AdminClient",
    "BattleIdMismatch",
    "BotSession",
    "BotSettings",
    "ClientIdentity",
    "FrameReader",
    "FrameTooLarge",
    "GameConnectFailed",
    "GameConnectionClosed",
    "GameError",
    "GameHalfFrame",
    "GameLoginFailed",
    "GameNoReply",
    "GameProtocolError",
    "GameRefused",
    "GameTimeout",
    "Reply",
    "encode_frame",
    "parse_reply",
    "retry_connect_failures",
    "send_admin_command",
    "transform_password",
]
