"""Thumbnails of guiapp.history.History; click shows one, "Reuse parameters" fills the form."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal, SignalInstance
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from guiapp.history import History, HistoryEntry
from guiapp.widgets.buttons import push_button

THUMB = 72
ENTRY_ROLE = Qt.ItemDataRole.UserRole


class HistoryStrip(QWidget):
    entrySelected = Signal(object)  # HistoryEntry
    reuseRequested = Signal(object)  # HistoryEntry
    saveAsRequested = Signal(object)
    copyRequested = Signal(object)
    upscaleRequested = Signal(object)

    def __init__(self, history: History, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyStrip")
        self._history = history
        self._showing_model = False  # selection changes made by the model, not a person
        self._build_list()
        buttons = self._build_buttons()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        for entry in reversed(history.entries()):
            self._add(entry)
        history.added.connect(self._add)
        history.removed.connect(self._remove)
        history.currentChanged.connect(self._show_current)
        self._update_buttons()

    def _build_list(self) -> None:
        self.list = QListWidget(self)
        self.list.setObjectName("historyList")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setFlow(QListView.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setFixedHeight(THUMB + 34)
        self.list.setSpacing(4)
        self.list.setToolTip("Finished images: click to show, double-click to reuse parameters")
        self.list.itemClicked.connect(lambda item: self.entrySelected.emit(self._entry(item)))
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemDoubleClicked.connect(
            lambda item: self.reuseRequested.emit(self._entry(item))
        )

    def _build_buttons(self) -> QVBoxLayout:
        self.reuse_button = push_button(
            self,
            "recycle",
            "Reuse parameters",
            "Fill the form with this image's parameters",
            "reuseButton",
            lambda: self._emit_current(self.reuseRequested),
        )
        self.save_button = push_button(
            self,
            "save",
            "Save as…",
            "Save the selected image elsewhere (Ctrl+Shift+S)",
            on_click=lambda: self._emit_current(self.saveAsRequested),
        )
        self.copy_button = push_button(
            self,
            "copy",
            "Copy",
            "Copy the selected image to the clipboard (Ctrl+Shift+C)",
            on_click=lambda: self._emit_current(self.copyRequested),
        )
        self.upscale_button = push_button(
            self,
            "upscale",
            "Upscale",
            "Enlarge the selected image with the Upscale settings (parameter panel)",
            "upscaleButton",
            lambda: self._emit_current(self.upscaleRequested),
        )
        buttons = QVBoxLayout()
        for button in (self.reuse_button, self.save_button, self.copy_button, self.upscale_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        return buttons

    @staticmethod
    def _entry(item: QListWidgetItem) -> HistoryEntry:
        return item.data(ENTRY_ROLE)

    def entries(self) -> list[HistoryEntry]:
        return [self._entry(self.list.item(i)) for i in range(self.list.count())]

    def current(self) -> HistoryEntry | None:
        return self._history.current

    def _item(self, entry: HistoryEntry | None) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self._entry(self.list.item(i)) is entry:
                return self.list.item(i)
        return None

    def _add(self, entry: HistoryEntry) -> None:
        thumb = QPixmap.fromImage(entry.image).scaled(
            THUMB,
            THUMB,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        item = QListWidgetItem(QIcon(thumb), "" if entry.seed is None else str(entry.seed))
        item.setData(ENTRY_ROLE, entry)
        tip = entry.request.prompt if entry.request is not None else "(no parameters)"
        where = f"\nran on {entry.where}" if entry.where else ""
        item.setToolTip(f"{entry.name}\n{tip}{where}")
        self.list.insertItem(0, item)
        self._update_buttons()

    def _remove(self, entry: HistoryEntry) -> None:
        item = self._item(entry)
        if item is not None:
            self.list.takeItem(self.list.row(item))
        self._update_buttons()

    def _show_current(self, entry: HistoryEntry | None) -> None:
        self._showing_model = True
        try:
            item = self._item(entry)
            if item is None:
                self.list.clearSelection()
                self.list.setCurrentRow(-1)
            else:
                self.list.setCurrentItem(item)
        finally:
            self._showing_model = False
        self._update_buttons()

    def _current_changed(self, current: QListWidgetItem | None, _previous: object) -> None:
        self._update_buttons()
        if current is not None and not self._showing_model:
            self.entrySelected.emit(self._entry(current))

    def _emit_current(self, signal: SignalInstance) -> None:
        entry = self.current()
        if entry is not None:
            signal.emit(entry)

    def _update_buttons(self) -> None:
        entry = self.current()
        self.reuse_button.setEnabled(entry is not None and entry.request is not None)
        self.save_button.setEnabled(entry is not None)
        self.copy_button.setEnabled(entry is not None)
        self.upscale_button.setEnabled(entry is not None)
