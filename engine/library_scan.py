"""A model-library scan in a child process at lower priority, read without blocking.

Why a process and not a thread: the scan's work (walking folders, parsing headers) is
Python code holding the GIL, and a busy thread makes the GUI thread wait up to the
interpreter's switch interval (5 ms) every time it needs the GIL back, which a window
does hundreds of times a frame. A child process shares no GIL, runs niced below the
window, and writes the index itself, so the window never parses or writes it.

The child is started with the "spawn" method (forking a process that runs Qt threads is
unsafe) and sends engine.library's scan messages over a pipe; `poll()` returns what has
arrived so far and never waits. No Qt here: the window drives `poll()` from a timer.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from engine.library import DONE, FAILED, Message, run_scan

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

CHILD_NICENESS = 10
# Scans closed while their child still runs: the child may not yet have opened the pipe
# and the cancel flag, which must live until it has (dropping them early makes the
# starting child fail with a traceback).
_retired: list[BackgroundScan] = []


def _child(
    conn: Connection,
    cancel: Event,
    folders: list[str],
    index_path: str,
    hidden: list[str],
    batch_size: int,
) -> None:
    with contextlib.suppress(OSError, AttributeError):  # no os.nice on Windows
        os.nice(CHILD_NICENESS)
    try:
        for message in run_scan(
            [Path(f) for f in folders], Path(index_path), hidden, cancel.is_set, batch_size
        ):
            conn.send(message)
    except (BrokenPipeError, EOFError):
        return  # the window went away
    except Exception as exc:  # reported to the window as one sentence
        with contextlib.suppress(OSError):
            conn.send((FAILED, f"The model scan failed: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


class BackgroundScan:
    """One scan of `folders` in a child process. Call `poll()` until `finished`."""

    def __init__(
        self,
        folders: Sequence[Path],
        index_path: Path,
        hidden: Sequence[str] = (),
        batch_size: int = 64,
    ) -> None:
        _retired[:] = [scan for scan in _retired if scan.alive]
        context = multiprocessing.get_context("spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._cancel = context.Event()
        self._process = context.Process(
            target=_child,
            args=(
                sender,
                self._cancel,
                [str(f) for f in folders],
                str(index_path),
                list(hidden),
                batch_size,
            ),
            name="diffusiondesk-library-scan",
            daemon=True,
        )
        self._process.start()
        sender.close()  # the child holds the only writing end: EOF tells us it ended
        self.finished = False

    def poll(self, max_messages: int = 1) -> list[Message]:
        """Up to max_messages messages that have arrived; never waits. After the last
        one (DONE, FAILED, or a FAILED made up here when the child died or was
        cancelled), `finished` is True."""
        messages: list[Message] = []
        while not self.finished and len(messages) < max_messages:
            try:
                if not self._receiver.poll():
                    break
                message = self._receiver.recv()
            except (EOFError, OSError):
                self._end()
                if not self._cancel.is_set():
                    messages.append((FAILED, self._death_message()))
                break
            messages.append(message)
            if message[0] in (DONE, FAILED):
                self._end()
        return messages

    def _death_message(self) -> str:
        self._process.join(0.5)
        code = self._process.exitcode
        return f"The model scan stopped unexpectedly (exit status {code}); scan again."

    def cancel(self) -> None:
        """Ask the child to stop; it ends at the next file."""
        self._cancel.set()

    def _end(self) -> None:
        self.finished = True
        with contextlib.suppress(OSError):
            self._receiver.close()

    def close(self, wait: float = 0.0) -> None:
        """Stop listening and ask the child to stop. Waits up to `wait` seconds for it
        (then terminates it); with the default 0 it never blocks: a finished child's
        exit takes a moment, and multiprocessing reaps it at the next start or at exit."""
        self.cancel()
        if not self.finished:
            self._end()
        if wait > 0:
            self._process.join(wait)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(1.0)
        if self.alive and self not in _retired:
            _retired.append(self)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()
