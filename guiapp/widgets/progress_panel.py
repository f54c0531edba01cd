"""The progress bar (step k/N, speed, time left), the noisy-latent toggle and Cancel.

It shows guiapp.progress.Progress; which job's progress that is, the workspace decides.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QProgressBar, QWidget

from guiapp.progress import Progress
from guiapp.state import ViewModel
from guiapp.widgets.binding import bind, follow
from guiapp.widgets.buttons import push_button


class ProgressPanel(QWidget):
    cancelRequested = Signal()

    def __init__(self, progress: Progress, form: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("progressPanel")
        self.bar = QProgressBar(self)
        self.bar.setObjectName("progressBar")
        self.bar.setTextVisible(True)
        self.noisy_check = QCheckBox("Noisy latent", self)
        self.noisy_check.setObjectName("noisyToggle")
        self.noisy_check.setToolTip(
            "Show the noisy latent x_t instead of the estimate of the final image"
        )
        self.cancel_button = push_button(
            self, "cancel", "Cancel", "Stop the running job (Esc)", "cancelButton"
        )
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.noisy_check)
        layout.addWidget(self.cancel_button)

        self._progress = progress
        follow(progress, "maximum", self._show_range)
        bind(progress, "value", self.bar)
        follow(progress, "text", self.bar.setFormat)
        follow(progress, "can_cancel", self.cancel_button.setEnabled)
        bind(form, "show_noisy", self.noisy_check)

    def _show_range(self, maximum: int) -> None:
        self.bar.setRange(0, maximum)  # 0..0: Qt's busy indicator
        self.bar.setValue(min(self._progress.value, maximum))

    def text(self) -> str:
        return self.bar.format()
