"""What the progress bar says: step k/N, speed and time left, loading, done or cancelled.

An observable model (no widgets): guiapp.widgets.progress_panel shows it. `maximum`
0 means "busy, amount unknown" (Qt's busy indicator).
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from guiapp.properties import Observable, Property


def describe_step(step: int, total: int, elapsed: float) -> str:
    """ "step 5/20 · 2.5 it/s · 6 s left" (rate and time left once they are known)."""
    text = f"step {step}/{total}"
    if step > 0 and elapsed > 0:
        rate = step / elapsed
        left = (total - step) / rate
        speed = f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"
        text += f" · {speed} · {left:.0f} s left"
    return text


class Progress(Observable):
    text = Property("idle", persist=False)
    value = Property(0, persist=False)
    maximum = Property(1, persist=False)
    can_cancel = Property(False, persist=False)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)

    def loading(self, stage: str, progress: float) -> None:
        self.can_cancel = True
        if progress < 0:
            self.maximum = 0
        else:
            self.maximum, self.value = 1000, int(progress * 1000)
        self.text = f"loading model: {stage}"

    def started(self, total: int) -> None:
        self.can_cancel = True
        self.maximum, self.value = max(1, total), 0
        self.text = f"step 0/{total}"

    def step(self, step: int, total: int, elapsed: float) -> None:
        self.maximum, self.value = max(1, total), step
        self.text = describe_step(step, total, elapsed)

    def idle(self, text: str, busy_remaining: bool = False) -> None:
        self.can_cancel = busy_remaining
        if self.maximum == 0:
            self.maximum = 1
        self.text = text

    def done(self, seconds: float, busy_remaining: bool) -> None:
        self.value = self.maximum
        self.idle(f"done in {seconds:.1f} s", busy_remaining)
