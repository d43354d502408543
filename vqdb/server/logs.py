"""Rate-limited logging for ``vqdb serve``: a flood of one message cannot fill the disk.

Under a descriptor shortage asyncio's accept loop logs "socket.accept() out of system resource" with
a traceback once per queued connection (a 2,048 backlog), which wrote 47 MB in 5 s. A
:class:`RateLimitFilter` on every handler lets through ``burst`` records of each (logger, message
template) per ``window`` seconds and drops the rest; the next record let through says how many were
dropped. A dropped record costs a dict lookup, not a formatted traceback.
"""

from __future__ import annotations

import logging
import threading
import time

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "vqdb")


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per (logger, template) every ``window`` seconds. Thread-safe."""

    def __init__(self, *, burst: int = 10, window: float = 10.0):
        super().__init__()
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], list] = {}  # key -> [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            slot = self._seen.get(key)
            if slot is None or now - slot[0] >= self.window:
                dropped = slot[2] if slot is not None else 0
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                if dropped:
                    record.msg = (
                        f"{record.msg} [{dropped} similar message(s) dropped in the last {self.window:g} s]"
                    )
                return True
            slot[1] += 1
            if slot[1] <= self.burst:
                return True
            slot[2] += 1
            return False


def rate_limit_handlers(rate_filter: RateLimitFilter, loggers=LOGGERS) -> None:
    """Attach ``rate_filter`` to every handler of ``loggers`` (the root logger is ``""``)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if rate_filter not in handler.filters:
                handler.addFilter(rate_filter)
