"""Listeners: the thread-safe list of callbacks an engine (local or remote) calls with its
events. A listener that raises is logged and skipped; the others still hear the event."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")
log = logging.getLogger(__name__)


class Listeners(Generic[P]):
    """Callbacks taking P; add, remove and call them from any thread."""

    def __init__(self, what: str = "an engine listener") -> None:
        self._what = what
        self._lock = threading.Lock()
        self._items: list[Callable[P, None]] = []

    def add(self, listener: Callable[P, None]) -> None:
        with self._lock:
            self._items.append(listener)

    def remove(self, listener: Callable[P, None]) -> None:
        with self._lock:
            if listener in self._items:
                self._items.remove(listener)

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every listener (outside the lock, so a listener may add or remove)."""
        with self._lock:
            items = list(self._items)
        for listener in items:
            try:
                listener(*args, **kwargs)
            except Exception:
                log.exception("%s failed on %s", self._what, type(args[0]).__name__ if args else "")
