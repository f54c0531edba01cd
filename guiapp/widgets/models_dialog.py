"""The Models dialog: every model in the library with its kind, family, size, location
and last use; search, open its folder, remove from the list, add a folder, use it.

The scan runs in a child process (engine/library_scan.py). Its messages reach the table
in time slices of a few milliseconds (`ScanFeeder`), the end of the scan included (the
entries no longer found leave the table in slices too), so a folder of thousands of
files never freezes the window. Rows are formatted once when they arrive; `data()` only
looks them up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.asset_folders import AssetKind
from engine.library import DONE, FAILED, GONE, LibraryError, ModelEntry, ModelLibrary
from engine.library_scan import BackgroundScan
from guiapp.widgets.download_panel import DownloadPanel

# The library's family words (engine/library.py) as people write them; "flux" is what a
# FLUX.1 file's keys (and a FLUX LoRA's) say, "flux1" what a FLUX.1 folder's JSON says.
FAMILY_NAMES = {
    "sd1": "SD 1.x",
    "sd2": "SD 2.x",
    "sd1/sd2": "SD 1.x/2.x",
    "sdxl": "SDXL",
    "sdxl-refiner": "SDXL refiner",
    "sd3": "SD 3",
    "flux": "FLUX.1",
    "flux1": "FLUX.1",
    "flux2": "FLUX.2 klein",
    "zimage": "Z-Image",
    "sana": "SANA",
    "qwen_image": "Qwen-Image",
    "": "unknown",
}
KIND_NAMES = {
    AssetKind.CHECKPOINT: "model",
    AssetKind.LORA: "LoRA",
    AssetKind.EMBEDDING: "embedding",
    AssetKind.VAE: "VAE",
    AssetKind.CONTROLNET: "ControlNet",
    AssetKind.UPSCALER: "upscaler",
    AssetKind.TEXT_ENCODER: "text encoder",
}
COLUMNS = ("Name", "Kind", "Family", "Size", "Last used", "Location")
NAME, KIND, FAMILY, SIZE, LAST_USED, LOCATION = range(len(COLUMNS))
SLICE_SECONDS = 0.0025  # work done per turn of the event loop while rows arrive
BETWEEN_SLICES_MS = 4  # the rest of each turn is the window's: repaint, input, timers
IDLE_POLL_MS = 10  # how often to look for scan messages when none are waiting
# While rows pour in, the table repaints this often, not after every slice: a repaint
# costs more than a slice, and the two in one turn of the event loop would stall it.
REPAINT_MS = 100
# Roles as plain ints: data() runs for every visible cell and role on each repaint, and
# comparing against Qt's enum members costs more than the lookup itself.
DISPLAY = Qt.ItemDataRole.DisplayRole.value
TOOLTIP = Qt.ItemDataRole.ToolTipRole.value
ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole.value
RIGHT_ALIGNED = (Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value


def format_size(size: int) -> str:
    if size >= 10**9:
        return f"{size / 10**9:.1f} GB"
    if size >= 10**6:
        return f"{size / 10**6:.0f} MB"
    return f"{size / 10**3:.0f} kB" if size >= 10**3 else f"{size} B"


def format_last_use(when: float | None, now: float | None = None) -> str:
    if when is None:
        return "never"
    ago = max(0.0, (now or time.time()) - when)
    if ago < 60:
        return "just now"
    if ago < 3600:
        return f"{int(ago // 60)} min ago"
    if ago < 86400:
        return f"{int(ago // 3600)} h ago"
    if ago < 86400 * 60:
        return f"{int(ago // 86400)} days ago"
    return time.strftime("%Y-%m-%d", time.localtime(when))


class _Row:
    """One entry with its display texts and its search text, computed once."""

    __slots__ = ("entry", "texts", "haystack")

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.texts = (
            entry.name,
            KIND_NAMES.get(AssetKind(entry.kind), entry.kind)
            if entry.kind in AssetKind._value2member_map_
            else entry.kind,
            "unreadable" if entry.problem else FAMILY_NAMES.get(entry.family, entry.family),
            format_size(entry.size),
            "",
            entry.folder,
        )
        self.haystack = " ".join((*self.texts, entry.path)).casefold()


class LibraryTableModel(QAbstractTableModel):
    """The library's entries as table rows, keyed by path."""

    def __init__(self, library: ModelLibrary, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.rows: list[_Row] = []
        self._row_of: dict[str, int] = {}

    # ---- Qt model interface

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> object:
        if role == DISPLAY:
            row = self.rows[index.row()]
            column = index.column()
            if column == LAST_USED:
                return format_last_use(self.library.last_used(row.entry.path))
            return row.texts[column]
        if role == TOOLTIP:
            entry = self.rows[index.row()].entry
            return f"{entry.path}\n{entry.problem}" if entry.problem else entry.path
        if role == ALIGNMENT and index.column() == SIZE:
            return RIGHT_ALIGNED
        return None

    # ---- changes

    def entry_at(self, row: int) -> ModelEntry:
        return self.rows[row].entry

    def would_change(self, entries: Iterable[ModelEntry]) -> bool:
        """Whether put(entries) would add or alter a row."""
        for entry in entries:
            at = self._row_of.get(entry.path)
            if at is None or self.rows[at].entry != entry:
                return True
        return False

    def would_drop(self, paths: Iterable[str]) -> bool:
        return any(p in self._row_of for p in paths)

    def put(self, entries: Iterable[ModelEntry]) -> None:
        """Add new entries at the end; replace entries already listed (same path)."""
        new: list[_Row] = []
        for entry in entries:
            at = self._row_of.get(entry.path)
            if at is None:
                self._row_of[entry.path] = len(self.rows) + len(new)
                new.append(_Row(entry))
            elif self.rows[at].entry != entry:  # a rescan resends unchanged entries
                self.rows[at] = _Row(entry)
                self.dataChanged.emit(self.index(at, 0), self.index(at, len(COLUMNS) - 1))
        if new:
            first = len(self.rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self.rows.extend(new)
            self.endInsertRows()

    def drop(self, paths: Iterable[str]) -> None:
        """Remove the rows of paths, one contiguous range at a time."""
        doomed = sorted((self._row_of[p] for p in paths if p in self._row_of), reverse=True)
        if not doomed:
            return
        start = end = doomed[0]
        for row in [*doomed[1:], None]:
            if row is not None and row == start - 1:
                start = row
                continue
            self.beginRemoveRows(QModelIndex(), start, end)
            del self.rows[start : end + 1]
            self.endRemoveRows()
            if row is not None:
                start = end = row
        self._row_of = {r.entry.path: i for i, r in enumerate(self.rows)}

    def refresh_last_use(self, path: str) -> None:
        at = self._row_of.get(path)
        if at is not None:
            self.dataChanged.emit(self.index(at, LAST_USED), self.index(at, LAST_USED))


class ModelFilter(QSortFilterProxyModel):
    """Search words (all must appear in name, kind, family or path) and a kind; sorts on
    raw values (sizes as numbers, last use as times)."""

    def __init__(self, source: LibraryTableModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self._words: list[str] = []
        self._kind: str | None = None
        self.setSourceModel(source)

    def set_search(self, text: str) -> None:
        self._refilter(words=text.casefold().split(), kind=self._kind)

    def set_kind(self, kind: str | None) -> None:
        self._refilter(words=self._words, kind=kind)

    def _refilter(self, words: list[str], kind: str | None) -> None:
        if not hasattr(self, "beginFilterChange"):  # Qt before 6.9
            self._words, self._kind = words, kind
            self.invalidateRowsFilter()
            return
        self.beginFilterChange()
        self._words, self._kind = words, kind
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        row = self.source.rows[source_row]
        if self._kind is not None and row.entry.kind != self._kind:
            return False
        return all(word in row.haystack for word in self._words)

    def lessThan(
        self,
        source_left: QModelIndex | QPersistentModelIndex,
        source_right: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        column = source_left.column()
        left = self.source.rows[source_left.row()]
        right = self.source.rows[source_right.row()]
        if column == SIZE:
            return left.entry.size < right.entry.size
        if column == LAST_USED:
            used = self.source.library.last_used
            return (used(left.entry.path) or 0.0) < (used(right.entry.path) or 0.0)
        return left.texts[column].casefold() < right.texts[column].casefold()


class ScanFeeder(QObject):
    """Runs one background scan and feeds its messages to the table in time slices."""

    progressed = Signal(str)  # a status line
    ended = Signal(str)  # the closing status line (or the failure)

    def __init__(
        self,
        model: LibraryTableModel,
        parent: QObject | None = None,
        view: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.view = view  # repainted every REPAINT_MS while rows arrive
        self._repaint = QTimer(self)
        self._repaint.setInterval(REPAINT_MS)
        self._repaint.timeout.connect(self._show_rows)
        self._shown_at = 0.0
        self.scan: BackgroundScan | None = None
        self._pending: deque[tuple[str, list]] = deque()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._work)
        # Seconds each kind of message costs per item, learnt as rows arrive: a slice
        # takes as many items as fit in what is left of it.
        self._cost: dict[str, float] = {}
        self._seen = 0
        self._status_at = 0.0
        self.summary: dict = {}

    @property
    def running(self) -> bool:
        return self.scan is not None

    def start(self) -> None:
        self.stop()
        library = self.model.library
        self.summary = {}
        self._seen = 0
        try:
            self.scan = BackgroundScan(
                library.folders(), library.index_path, sorted(library.hidden())
            )
        except (OSError, RuntimeError) as exc:  # no process could start (limits, a bare script)
            self.ended.emit(f"The model scan could not start: {exc}".splitlines()[0])
            return
        self.progressed.emit("Scanning model folders…")
        self._timer.start(0)

    def stop(self) -> None:
        self._timer.stop()
        self._repaint.stop()
        if self.view is not None:
            self.view.setUpdatesEnabled(True)
        self._pending.clear()
        if self.scan is not None:
            self.scan.close()
            self.scan = None

    def _work(self) -> None:
        scan = self.scan
        if scan is None:
            return
        deadline = time.perf_counter() + SLICE_SECONDS
        while time.perf_counter() < deadline:
            if not self._pending:
                messages = scan.poll(1)
                if not messages:
                    break
                kind, payload = messages[0]
                if kind in (DONE, FAILED):
                    self._finish(kind, payload)
                    return
                self._pending.append((kind, list(payload)))
            self._apply_chunk(deadline)
        self._report()
        if self._pending or not scan.finished:
            self._timer.start(BETWEEN_SLICES_MS if self._pending else IDLE_POLL_MS)
        else:  # ended without a closing message: cancelled
            self.stop()

    def _hold_repaints(self) -> None:
        now = time.perf_counter()
        if self.view is not None and self.view.updatesEnabled() and now - self._shown_at > 0.02:
            self.view.setUpdatesEnabled(False)  # _show_rows turns them on again
            self._repaint.start()

    def _show_rows(self) -> None:
        # Re-enabling updates repaints the view in the next turn of the event loop; the
        # next slice (BETWEEN_SLICES_MS later at the earliest) turns them off again.
        self._repaint.stop()
        if self.view is not None:
            self._shown_at = time.perf_counter()
            self.view.setUpdatesEnabled(True)

    def _apply_chunk(self, deadline: float) -> None:
        kind, payload = self._pending[0]
        began = time.perf_counter()
        cost = self._cost.get(kind, 0.0005)
        count = max(1, int((deadline - began) / cost))
        chunk, rest = payload[:count], payload[count:]
        if rest:
            self._pending[0] = (kind, rest)
        else:
            self._pending.popleft()
        entries = self.model.library.apply((kind, chunk))
        if kind == GONE:
            paths: list[str] = entries  # type: ignore[assignment]
            if self.model.would_drop(paths):
                self._hold_repaints()
                self.model.drop(paths)
        else:
            rows: list[ModelEntry] = entries  # type: ignore[assignment]
            # A rescan resends every unchanged entry: those must not cost a repaint.
            if self.model.would_change(rows):
                self._hold_repaints()
                self.model.put(rows)
            self._seen += len(chunk)
        took = (time.perf_counter() - began) / len(chunk)
        self._cost[kind] = took if kind not in self._cost else (cost + took) / 2

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._status_at >= 0.25:
            self._status_at = now
            self.progressed.emit(f"Scanning model folders… {self._seen:,} models so far")

    def _finish(self, kind: str, payload: object) -> None:
        self.stop()
        if kind == FAILED:
            self.ended.emit(str(payload).splitlines()[0])
            return
        self.summary = dict(payload)  # type: ignore[call-overload]
        models = self.model.rowCount()
        self.ended.emit(
            f"{models:,} models · scanned {self.summary.get('files', 0):,} files in "
            f"{self.summary.get('seconds', 0.0):.1f} s"
        )


class ModelsDialog(QDialog):
    """The model library window. `modelChosen(path)` when the person uses a model."""

    modelChosen = Signal(str)

    def __init__(self, library: ModelLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsDialog")
        self.setWindowTitle("Models")
        self.resize(900, 560)
        self.library = library
        self._scanned = False
        self.model = LibraryTableModel(library, self)
        self.proxy = ModelFilter(self.model, self)
        self._build()
        self.feeder = ScanFeeder(self.model, self, self.table.viewport())
        self.feeder.progressed.connect(self.status.setText)
        self.feeder.ended.connect(self._scan_ended)
        if library.notice:
            self.status.setText(library.notice)
        if parent is not None:
            parent.installEventFilter(self)

    def _build(self) -> None:
        self.search = QLineEdit()
        self.search.setObjectName("modelSearch")
        self.search.setPlaceholderText("Search models by name, family or folder")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_search)
        self.kind = QComboBox()
        self.kind.addItem("All kinds", None)
        for kind, label in KIND_NAMES.items():
            self.kind.addItem(label, kind.value)
        self.kind.currentIndexChanged.connect(
            lambda _i: self.proxy.set_kind(self.kind.currentData())
        )
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.kind)

        self.table = QTableView()
        self.table.setObjectName("modelTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(NAME, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        # Fixed sizes: sizing to contents would measure every row on each insert.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in ((NAME, 240), (KIND, 90), (FAMILY, 100), (SIZE, 80), (LAST_USED, 100)):
            header.resizeSection(column, width)
        header.setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _index: self.use_selected())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        self.use_button = QPushButton("Use model")
        self.use_button.setObjectName("useModelButton")
        self.use_button.setDefault(True)
        self.use_button.clicked.connect(self.use_selected)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self.open_selected_folder)
        self.remove_button = QPushButton("Remove from list")
        self.remove_button.setToolTip("Hide it here; the file stays on disk")
        self.remove_button.clicked.connect(self.remove_selected)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip(
            "A folder of models, or an AUTOMATIC1111/Forge or ComfyUI models folder"
        )
        self.add_button.clicked.connect(self.add_folder_dialog)
        self.folders_button = QToolButton()
        self.folders_button.setText("Folders")
        self.folders_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.folders_menu = QMenu(self.folders_button)
        self.folders_menu.aboutToShow.connect(self._fill_folders_menu)
        self.folders_button.setMenu(self.folders_menu)
        self.rescan_button = QPushButton("Scan again")
        self.rescan_button.clicked.connect(self.rescan)
        buttons = QHBoxLayout()
        for widget in (self.add_button, self.folders_button, self.rescan_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        for widget in (self.open_button, self.remove_button, self.use_button):
            buttons.addWidget(widget)

        self.status = QLabel()
        self.status.setObjectName("libraryStatus")
        self.downloads = DownloadPanel(self.library.own_folder)
        self.downloads.downloaded.connect(lambda _path: self.rescan())
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.downloads)
        self._update_buttons()

    # ---- scanning

    def rescan(self) -> None:
        if self.feeder.running:
            self.feeder.stop()
        self.feeder.start()
        self.rescan_button.setEnabled(False)

    def _scan_ended(self, text: str) -> None:
        self.status.setText(text)
        self.rescan_button.setEnabled(True)
        self._scanned = self._scanned or bool(self.feeder.summary)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.feeder.running and not self._scanned:
            self.rescan()

    def hideEvent(self, event: QHideEvent) -> None:
        # A scan stopped half way is finished the next time the dialog opens; a download
        # keeps its part and goes on when Download is pressed again.
        self.feeder.stop()
        self.downloads.stop()
        self.rescan_button.setEnabled(True)
        super().hideEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parent() and event.type() == QEvent.Type.Close:
            self.close()  # the main window is closing: no scan outlives it
        return False

    # ---- selection

    def selected_entry(self) -> ModelEntry | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.entry_at(self.proxy.mapToSource(rows[0]).row())

    def select_path(self, path: str) -> bool:
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if self.model.entry_at(self.proxy.mapToSource(index).row()).path == path:
                self.table.selectRow(row)
                return True
        return False

    def _update_buttons(self) -> None:
        entry = self.selected_entry()
        for button in (self.open_button, self.remove_button):
            button.setEnabled(entry is not None)
        self.use_button.setEnabled(entry is not None and entry.kind == AssetKind.CHECKPOINT)

    # ---- actions

    def use_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        if entry.kind != AssetKind.CHECKPOINT:
            self.status.setText(
                f"{entry.name} is a {KIND_NAMES.get(AssetKind(entry.kind), entry.kind)}, "
                "not a model to generate with; choose a model."
            )
            return
        self._save(lambda: self.library.mark_used(entry.path))
        self.model.refresh_last_use(entry.path)
        self.modelChosen.emit(entry.path)
        self.status.setText(f"Using {entry.name}")

    def open_selected_folder(self) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        folder = Path(entry.folder)
        if not folder.is_dir():
            self.status.setText(f"{folder} is no longer there; scan again to update the list.")
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.status.setText(f"No file manager could open {folder}.")

    def remove_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        self._save(lambda: self.library.remove_from_list(entry.path))
        self.model.drop([entry.path])
        self.status.setText(f"{entry.name} is off the list (the file stays on disk).")
        self._update_buttons()

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models")
        if folder:
            self.add_folder(Path(folder))

    def add_folder(self, folder: Path) -> bool:
        try:
            added = self.library.add_folder(folder)
        except LibraryError as exc:
            self.status.setText(str(exc))
            return False
        except OSError as exc:
            self.status.setText(f"Could not save the library's list: {exc}")
            return False
        self.status.setText(f"Added {added}; scanning it…")
        self.rescan()
        return True

    def remove_folder(self, folder: Path) -> None:
        self._save(lambda: self.library.remove_folder(folder))
        root = str(folder)
        self.model.drop([r.entry.path for r in self.model.rows if r.entry.root == root])
        self.status.setText(f"{folder} is no longer in the library (its files stay on disk).")

    def _fill_folders_menu(self) -> None:
        self.folders_menu.clear()
        own = self.folders_menu.addAction(f"{self.library.own_folder} (DiffusionDesk's own)")
        own.setEnabled(False)
        for folder in self.library.added_folders():
            sub = self.folders_menu.addMenu(str(folder))
            sub.addAction("Remove from the library", partial(self.remove_folder, folder))

    def _save(self, change: Callable[[], None]) -> None:
        try:
            change()
        except OSError as exc:
            self.status.setText(f"Could not save the library's list: {exc}")


def note_model_used(window: QWidget, library: ModelLibrary, model: str) -> None:
    """Record that a job ran with `model`, if it is a file or folder of the library,
    and show the new last use in an open Models dialog."""
    path = Path(model).expanduser()
    if not path.exists():
        return  # the starter model or a hub id: not a library entry
    resolved = path.resolve()
    if not any(resolved.is_relative_to(f.expanduser().resolve()) for f in library.folders()):
        return  # a model opened from elsewhere is not on the list
    key = str(resolved)
    try:
        library.mark_used(key)
    except OSError:
        return  # the list could not be saved; the next use tries again
    dialog = window.findChild(ModelsDialog)
    if dialog is not None:
        dialog.model.refresh_last_use(key)


def show_models_dialog(
    window: QWidget, use_model: Callable[[str], None], library: ModelLibrary | None = None
) -> ModelsDialog:
    """Open (or bring back) the window's Models dialog; `use_model(path)` when the person
    picks one. The library lives in DiffusionDesk's data folder; pass the window's own so
    that the dialog and the window's last-use notes share one list."""
    dialog = window.findChild(ModelsDialog)
    if dialog is None:
        dialog = ModelsDialog(library if library is not None else ModelLibrary(), window)
        dialog.modelChosen.connect(use_model)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
