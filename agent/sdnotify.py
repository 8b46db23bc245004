"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A datagram to ``$NOTIFY_SOCKET`` per message (``sd_notify(3)``): a filesystem path, or
``@name`` for the abstract namespace. The few lines here replace a dependency. The
variables are removed from the environment once read, as ``sd_notify`` does with
``unset_environment``, so that nothing the agent starts can speak for it.
"""

from __future__ import annotations

import socket
from collections.abc import MutableMapping

import structlog

logger = structlog.get_logger("agent")


class Notifier:
    """Sends notify messages to systemd; does nothing when not started by systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False
        self.dropped = 0
        """Messages dropped because the receiver's queue was full."""

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str]) -> Notifier:
        return cls(environ.pop("NOTIFY_SOCKET", None) or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One message of ``KEY=value`` fields; a failure is logged once, never raised."""
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                # Never blocking: a message systemd has no room for is dropped (the next
                # one follows within a second) rather than stalling the event loop.
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._socket = socket.socket(socket.AF_UNIX, kind)
            self._socket.sendto("\n".join(fields).encode(), target)
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd", socket=self.address, error=str(exc))
                self._failed = True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_seconds(environ: MutableMapping[str, str], pid: int) -> float | None:
    """The watchdog timeout systemd set for this process (``WatchdogSec=``), or None."""
    usec = environ.pop("WATCHDOG_USEC", "")
    owner = environ.pop("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000
