"""Polling for tests that run services in-process."""

import time

import eventlet


def wait_for(condition, timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return its last value.

    The pauses are eventlet sleeps, so in-process services and simulators keep running meanwhile.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        eventlet.sleep(step)
    return condition()
