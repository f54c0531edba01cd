"""After a run: a slider through every step's preview, and "continue from here"."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from guiapp.icons import icon


class StepScrubber(QWidget):
    """Moves through the denoising trajectory of the last finished (or cancelled) run."""

    stepChosen = Signal(int)  # 1-based step whose preview should be shown
    continueRequested = Signal(int, int)  # (job id, step)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stepScrubber")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("scrubSlider")
        self.slider.setToolTip("Scrub through every step of the last run")
        self.label = QLabel("no run yet")
        self.label.setObjectName("stepLabel")
        self.label.setMinimumWidth(90)
        self.continue_button = QPushButton(icon("continue"), "Continue from here")
        self.continue_button.setObjectName("continueButton")
        self.continue_button.setToolTip(
            "Re-run the remaining steps from this step with the current prompt and seed"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Steps"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        layout.addWidget(self.continue_button)
        self._job_id: int | None = None
        self._previews: tuple[np.ndarray, ...] = ()
        self._noisy: tuple[np.ndarray, ...] = ()
        self.slider.valueChanged.connect(self._moved)
        self.continue_button.clicked.connect(self._continue)
        self.set_run(None, (), ())

    @property
    def job_id(self) -> int | None:
        return self._job_id

    @property
    def step(self) -> int:
        return self.slider.value()

    def set_run(
        self,
        job_id: int | None,
        previews: tuple[np.ndarray, ...],
        noisy: tuple[np.ndarray, ...],
    ) -> None:
        self._job_id = job_id
        self._previews = previews
        self._noisy = noisy
        enabled = job_id is not None and len(previews) > 0
        self.slider.blockSignals(True)
        self.slider.setRange(1, max(1, len(previews)))
        self.slider.setValue(max(1, len(previews)))
        self.slider.blockSignals(False)
        self.slider.setEnabled(enabled)
        self.continue_button.setEnabled(enabled)
        self.label.setText(f"step {len(previews)}/{len(previews)}" if enabled else "no run yet")

    def preview(self, step: int, noisy: bool = False) -> np.ndarray | None:
        frames = self._noisy if noisy and self._noisy else self._previews
        if not frames or not 1 <= step <= len(frames):
            return None
        return frames[step - 1]

    def _moved(self, step: int) -> None:
        self.label.setText(f"step {step}/{len(self._previews)}")
        self.stepChosen.emit(step)

    def _continue(self) -> None:
        if self._job_id is not None:
            self.continueRequested.emit(self._job_id, self.slider.value())
