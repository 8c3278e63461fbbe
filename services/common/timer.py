"""A Nameko timer whose interval comes from the service config."""

from nameko.timer import Timer


class ConfigTimer(Timer):
    """Timer entrypoint that reads its interval, in seconds, at container setup.

    ``section`` and ``key`` name the config value, e.g. ``("INGEST",
    "interval")``; ``default`` applies when the config lacks it. Like nameko's
    timer, a tick never starts while the previous one is still running.
    """

    def __init__(self, section: str, key: str, default: float, eager: bool = False, **kwargs):
        self.section = section
        self.key = key
        self.default = default
        super().__init__(interval=default, eager=eager, **kwargs)

    def setup(self):
        value = self.container.config.get(self.section, {}).get(self.key, self.default)
        try:
            self.interval = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"config {self.section}.{self.key} must be a number of seconds, got {value!r}"
            ) from None
        if self.interval <= 0:
            raise ValueError(f"config {self.section}.{self.key} must be positive, got {value!r}")
        super().setup()


config_timer = ConfigTimer.decorator
