"""The Models dialog's download row: a hub repo id or a file URL, a token field, a
progress bar with speed, Download and Cancel.

engine/downloads.py does the work in a worker thread (planning, then fetching); its
results come back as queued signals, so the window never waits on the network. A
download over 2 GB asks first; a failed or cancelled one keeps its part, and pressing
Download again resumes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from engine import downloads
from engine.asset_folders import AssetKind
from engine.downloads import Download, DownloadCancelled, DownloadError, DownloadPlan

KINDS = (
    (AssetKind.CHECKPOINT, "model"),
    (AssetKind.LORA, "LoRA"),
    (AssetKind.EMBEDDING, "embedding"),
    (AssetKind.VAE, "VAE"),
    (AssetKind.CONTROLNET, "ControlNet"),
    (AssetKind.UPSCALER, "upscaler"),
)


class _Relay(QObject):
    """Signals emitted on the worker thread, delivered on the GUI thread."""

    planned = Signal(object)  # DownloadPlan
    progressed = Signal(object)  # DownloadProgress
    finished = Signal(object)  # Path
    failed = Signal(str)
    cancelled = Signal()


class DownloadPanel(QWidget):
    """Download a model into `models_folder`; `downloaded(path)` when one is complete."""

    downloaded = Signal(object)

    def __init__(self, models_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models_folder = models_folder
        self.download: Download | None = None
        self._thread: threading.Thread | None = None
        self._relay = _Relay(self)
        queued = Qt.ConnectionType.QueuedConnection
        self._relay.planned.connect(self._planned, queued)
        self._relay.progressed.connect(self._progressed, queued)
        self._relay.finished.connect(self._finished, queued)
        self._relay.failed.connect(self._failed, queued)
        self._relay.cancelled.connect(self._cancelled, queued)
        self._build()

    def _build(self) -> None:
        self.source = QLineEdit()
        self.source.setObjectName("downloadSource")
        self.source.setPlaceholderText(
            "Download: a Hugging Face repo id (owner/name) or a model file's URL"
        )
        self.source.returnPressed.connect(self.start)
        self.kind = QComboBox()
        self.kind.setToolTip("What a downloaded file is (which folder it goes into)")
        for kind, label in KINDS:
            self.kind.addItem(label, kind.value)
        self.token = QLineEdit()
        self.token.setObjectName("downloadToken")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Token (gated repos; or set HF_TOKEN)")
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.download_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.hide()
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.source, 0, 0)
        grid.addWidget(self.kind, 0, 1)
        grid.addWidget(self.token, 0, 2)
        grid.addWidget(self.download_button, 0, 3)
        grid.addWidget(self.cancel_button, 0, 4)
        grid.addWidget(self.bar, 1, 0, 1, 5)
        grid.addWidget(self.status, 2, 0, 1, 5)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(2, 1)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- steps

    def start(self) -> None:
        if self.busy:
            return
        source, kind, token = (
            self.source.text().strip(),
            str(self.kind.currentData()),
            self.token.text().strip() or None,
        )
        self._set_busy(True, "Looking it up…")
        self._run(
            lambda: self._relay.planned.emit(
                downloads.plan(source, self.models_folder, kind=kind, token=token)
            )
        )

    def _planned(self, plan: DownloadPlan) -> None:
        self._join()
        if plan.is_hub and plan.to_fetch == 0:
            self._set_busy(False, f"{plan.source} is already downloaded, in {plan.target}.")
            self.downloaded.emit(plan.target)
            return
        if plan.ask_first:
            size = downloads.format_bytes(plan.to_fetch)
            answer = QMessageBox.question(
                self,
                "Large download",
                f"{plan.source} is {size}. Download it into {plan.target.parent}?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                self._set_busy(False, "Download not started.")
                return
        self.download = Download(plan)
        download = self.download
        self._set_busy(True, f"Downloading {plan.target.name}…")
        self.bar.show()
        self.bar.setRange(0, 1000 if plan.total else 0)
        self._run(lambda: self._relay.finished.emit(download.run(self._relay.progressed.emit)))

    def _run(self, work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except DownloadCancelled:
                self._relay.cancelled.emit()
            except DownloadError as exc:
                self._relay.failed.emit(str(exc))
            except Exception as exc:  # a bug ends this download only
                self._relay.failed.emit(f"The download failed: {exc}")

        self._thread = threading.Thread(target=guarded, name="diffusiondesk-download", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        if self.download is not None:
            self.download.cancel()
            self.status.setText("Cancelling…")

    # ---- results (GUI thread)

    def _progressed(self, progress: downloads.DownloadProgress) -> None:
        if progress.total:
            self.bar.setValue(int(1000 * progress.fraction))
        self.status.setText(f"Downloading {self._name()}: {progress.text()}")

    def _finished(self, path: Path) -> None:
        self._join()
        self.bar.setValue(1000)
        self._set_busy(False, f"Downloaded {path}.")
        self.downloaded.emit(path)

    def _failed(self, message: str) -> None:
        self._join()
        self._set_busy(False, message)

    def _cancelled(self) -> None:
        self._join()
        self._set_busy(False, "Cancelled; press Download again to go on where it stopped.")

    # ---- helpers

    def _name(self) -> str:
        return self.download.plan.target.name if self.download is not None else ""

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _set_busy(self, busy: bool, text: str) -> None:
        self.download_button.setEnabled(not busy)
        self.source.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.status.setText(text)
        if not busy:
            self.download = None
            self.bar.setVisible(self.bar.value() > 0 and text.startswith("Downloaded"))

    def stop(self, wait: float = 5.0) -> None:
        """Cancel a running download and wait for its thread (the part stays)."""
        if self.download is not None:
            self.download.cancel()
        if self._thread is not None:
            self._thread.join(wait)
