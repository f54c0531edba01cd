"""Progress of the running job: step k/N, iterations per second, time left, Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QProgressBar, QPushButton, QWidget

from engine.api import Step
from guiapp.icons import icon


def describe_step(step: int, total: int, elapsed: float) -> str:
    """ "step 5/20 · 2.5 it/s · 6 s left" (rate and time left once they are known)."""
    text = f"step {step}/{total}"
    if step > 0 and elapsed > 0:
        rate = step / elapsed
        left = (total - step) / rate
        speed = f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"
        text += f" · {speed} · {left:.0f} s left"
    return text


class ProgressPanel(QWidget):
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("progressPanel")
        self.bar = QProgressBar()
        self.bar.setObjectName("progressBar")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        self.bar.setTextVisible(True)
        self.noisy_check = QCheckBox("Noisy latent")
        self.noisy_check.setObjectName("noisyToggle")
        self.noisy_check.setToolTip(
            "Show the noisy latent x_t instead of the estimate of the final image"
        )
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop the running job (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.noisy_check)
        layout.addWidget(self.cancel_button)

    def text(self) -> str:
        return self.bar.format()

    def show_loading(self, stage: str, progress: float) -> None:
        self.cancel_button.setEnabled(True)
        if progress < 0:
            self.bar.setRange(0, 0)  # busy indicator
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(progress * 1000))
        self.bar.setFormat(f"loading model: {stage}")

    def show_started(self, total: int) -> None:
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(0)
        self.bar.setFormat(f"step 0/{total}")

    def show_step(self, event: Step) -> None:
        self.bar.setRange(0, max(1, event.total))
        self.bar.setValue(event.step)
        self.bar.setFormat(describe_step(event.step, event.total, event.elapsed))

    def show_idle(self, text: str, busy_remaining: bool = False) -> None:
        self.cancel_button.setEnabled(busy_remaining)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.bar.setFormat(text)

    def show_done(self, seconds: float, busy_remaining: bool) -> None:
        self.bar.setValue(self.bar.maximum())
        self.show_idle(f"done in {seconds:.1f} s", busy_remaining)
