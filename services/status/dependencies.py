"""Settings of the status service, from the STATUS config section."""

from dataclasses import dataclass

from nameko.extensions import DependencyProvider

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
            game_port=int(section.get("game_port", 5190)),
            probe_timeout=float(section.get("probe_timeout", 2)),
            query_timeout=float(section.get("query_timeout", 5)),
            ttl=int(section.get("ttl", 30)),
        )
        if settings.ttl < 1 or settings.probe_timeout <= 0 or settings.query_timeout <= 0:
            raise ValueError(f"config {CONFIG_SECTION}: ttl and timeouts must be positive, got {settings}")
        return settings


class StatusSettingsProvider(DependencyProvider):
    """Gives workers the checked :class:`StatusSettings`."""

    def setup(self):
        self.settings = StatusSettings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings
