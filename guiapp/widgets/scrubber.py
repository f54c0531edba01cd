"""After a run: a slider through every step's preview, and "continue from here"."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from guiapp.history import Run
from guiapp.widgets.buttons import push_button


class StepScrubber(QWidget):
    """Moves through the denoising trajectory of the last finished (or cancelled) run."""

    stepChosen = Signal(int)  # 1-based step whose preview should be shown
    continueRequested = Signal(int, int)  # (job id, step)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stepScrubber")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("scrubSlider")
        self.slider.setToolTip("Scrub through every step of the last run")
        self.label = QLabel("no run yet", self)
        self.label.setObjectName("stepLabel")
        self.label.setMinimumWidth(90)
        self.continue_button = push_button(
            self,
            "continue",
            "Continue from here",
            "Re-run the remaining steps from this step with the current prompt and seed",
            "continueButton",
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Steps", self))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        layout.addWidget(self.continue_button)
        self._run: Run | None = None
        self.slider.valueChanged.connect(self._moved)
        self.continue_button.clicked.connect(self._continue)
        self.set_run(None)

    @property
    def run(self) -> Run | None:
        return self._run

    @property
    def step(self) -> int:
        return self.slider.value()

    def set_run(self, run: Run | None) -> None:
        """Move through this run's steps (None: no run yet)."""
        self._run = run
        count = len(run.step_previews) if run is not None else 0
        self.slider.blockSignals(True)
        self.slider.setRange(1, max(1, count))
        self.slider.setValue(max(1, count))
        self.slider.blockSignals(False)
        self.slider.setEnabled(count > 0)
        self.continue_button.setEnabled(count > 0)
        self.label.setText(f"step {count}/{count}" if count else "no run yet")

    def _moved(self, step: int) -> None:
        self.label.setText(f"step {step}/{self.slider.maximum()}")
        self.stepChosen.emit(step)

    def _continue(self) -> None:
        if self._run is not None:
            self.continueRequested.emit(self._run.job_id, self.slider.value())
