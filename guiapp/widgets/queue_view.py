"""The jobs waiting, running or saving (guiapp.jobs.JobQueue), with a way to remove one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.api import GenerationRequest
from guiapp.jobs import Job, JobQueue
from guiapp.widgets.buttons import push_button

JOB_ROLE = Qt.ItemDataRole.UserRole


def _summary(request: GenerationRequest) -> str:
    prompt = " ".join(request.prompt.split())
    if len(prompt) > 40:
        prompt = prompt[:39] + "…"
    return f"{request.mode} · {prompt or '(empty prompt)'}"


class QueueView(QWidget):
    removeRequested = Signal(int)  # job id

    def __init__(self, jobs: JobQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queueView")
        self.list = QListWidget(self)
        self.list.setObjectName("queueList")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setToolTip("Jobs in order; select one and press Remove (or Delete)")
        self.remove_button = push_button(
            self,
            "remove",
            "Remove",
            "Remove the selected job from the queue (stops it if running)",
            "removeJobButton",
            self._remove_selected,
        )
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        for job in jobs:
            if not job.ended:
                self._add(job)
        jobs.jobAdded.connect(self._add)
        jobs.jobChanged.connect(self._show_status)
        jobs.ended.connect(self._remove)

    def job_ids(self) -> list[int]:
        return [self.list.item(i).data(JOB_ROLE) for i in range(self.list.count())]

    def _item(self, job_id: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(JOB_ROLE) == job_id:
                return self.list.item(i)
        return None

    def _add(self, job: Job) -> None:
        item = QListWidgetItem(self._text(job))
        item.setData(JOB_ROLE, job.id)
        self.list.addItem(item)

    @staticmethod
    def _text(job: Job) -> str:
        return f"#{job.id} {job.status} · {_summary(job.request)}"

    def _show_status(self, job: Job) -> None:
        item = self._item(job.id)
        if item is not None:
            item.setText(self._text(job))

    def _remove(self, job: Job) -> None:
        item = self._item(job.id)
        if item is not None:
            self.list.takeItem(self.list.row(item))

    def select(self, job_id: int) -> None:
        item = self._item(job_id)
        if item is not None:
            self.list.setCurrentItem(item)

    def _remove_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.removeRequested.emit(item.data(JOB_ROLE))
