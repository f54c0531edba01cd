"""The jobs waiting or running, with a way to remove a queued one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.api import GenerationRequest
from guiapp.icons import icon

JOB_ROLE = Qt.ItemDataRole.UserRole


def _summary(request: GenerationRequest) -> str:
    prompt = " ".join(request.prompt.split())
    if len(prompt) > 40:
        prompt = prompt[:39] + "…"
    return f"{request.mode} · {prompt or '(empty prompt)'}"


class QueueView(QWidget):
    removeRequested = Signal(int)  # job id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queueView")
        self.list = QListWidget()
        self.list.setObjectName("queueList")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setToolTip("Jobs in order; select one and press Remove (or Delete)")
        self.remove_button = QPushButton(icon("remove"), "Remove")
        self.remove_button.setObjectName("removeJobButton")
        self.remove_button.setToolTip(
            "Remove the selected job from the queue (stops it if running)"
        )
        self.remove_button.clicked.connect(self._remove_selected)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._requests: dict[int, GenerationRequest] = {}

    def job_ids(self) -> list[int]:
        return [self.list.item(i).data(JOB_ROLE) for i in range(self.list.count())]

    def _item(self, job_id: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(JOB_ROLE) == job_id:
                return self.list.item(i)
        return None

    def add_job(self, job_id: int, request: GenerationRequest) -> None:
        self._requests[job_id] = request
        item = QListWidgetItem(f"#{job_id} queued · {_summary(request)}")
        item.setData(JOB_ROLE, job_id)
        self.list.addItem(item)

    def set_status(self, job_id: int, status: str) -> None:
        item = self._item(job_id)
        request = self._requests.get(job_id)
        if item is not None and request is not None:
            item.setText(f"#{job_id} {status} · {_summary(request)}")

    def remove_job(self, job_id: int) -> None:
        item = self._item(job_id)
        if item is not None:
            self.list.takeItem(self.list.row(item))
        self._requests.pop(job_id, None)

    def select(self, job_id: int) -> None:
        item = self._item(job_id)
        if item is not None:
            self.list.setCurrentItem(item)

    def _remove_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.removeRequested.emit(item.data(JOB_ROLE))
