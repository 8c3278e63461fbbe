"""Settings of the status service, from the STATUS config section."""

from dataclasses import dataclass

from nameko.extensions import DependencyProvider

from services.common.config import read_number
from services.common.config import section as config_section


CONFIG_SECTION = "STATUS"


@dataclass(frozen=True)
class StatusSettings:
    """Where the game listens and how long answers stay fresh."""

    game_host: str
    game_port: int
    probe_timeout: float
    query_timeout: float
    ttl: int

    @classmethod
    def from_config(cls, config: dict) -> "StatusSettings":
        section = config_section(config, CONFIG_SECTION)
        settings = cls(
            game_host=str(section.get("game_host", "127.0.0.1")),
            game_port=read_number(section, CONFIG_SECTION, "game_port", 5190, int, minimum=1),
            probe_timeout=read_number(section, CONFIG_SECTION, "probe_timeout", 2, minimum=0.001),
            query_timeout=read_number(section, CONFIG_SECTION, "query_timeout", 5, minimum=0.001),
            ttl=read_number(section, CONFIG_SECTION, "ttl", 30, int, minimum=1),
        )
        return settings


class StatusSettingsProvider(DependencyProvider):
    """Gives workers the checked :class:`StatusSettings`."""

    def setup(self):
        self.settings = StatusSettings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings
