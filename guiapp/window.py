"""The main window: lays out the widgets and wires them to the workspace.

Nothing here holds a job, a picture or a parameter: the form is guiapp.state, the
picture guiapp.document, the results guiapp.history, the jobs guiapp.jobs, and the
commands and what is on screen guiapp.workspace. A new dock is one `add_dock` call in
`_build_docks` (the View menu lists it by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from engine.library import ModelLibrary
from guiapp.bridge import EngineBridge
from guiapp.engine_location import EngineLocation
from guiapp.engine_switch import EngineSwitcher
from guiapp.history import HistoryEntry
from guiapp.icons import icon
from guiapp.output_writer import SavedJob
from guiapp.settings import AppSettings
from guiapp.state import ViewModel
from guiapp.widgets.addons_dock import AddonsDock
from guiapp.widgets.binding import follow
from guiapp.widgets.buttons import push_button
from guiapp.widgets.canvas import Canvas
from guiapp.widgets.control_dock import ControlDock
from guiapp.widgets.engine_dialog import show_engine_dialog
from guiapp.widgets.error_area import ErrorArea
from guiapp.widgets.expand_dialog import ExpandDialog
from guiapp.widgets.forward_panel import ForwardPanel
from guiapp.widgets.history_strip import HistoryStrip
from guiapp.widgets.mask_toolbar import MaskToolBar
from guiapp.widgets.models_dialog import note_model_used, show_models_dialog
from guiapp.widgets.parameter_panel import ParameterPanel
from guiapp.widgets.progress_panel import ProgressPanel
from guiapp.widgets.prompt_panel import PromptPanel
from guiapp.widgets.queue_view import QueueView
from guiapp.widgets.regions_dock import RegionsDock
from guiapp.widgets.save_format import save_format_menu
from guiapp.widgets.scrubber import StepScrubber
from guiapp.widgets.speed_panel import SpeedPanel
from guiapp.workspace import IMAGE_SUFFIXES, Workspace

CAPTION_STYLE = (
    "background: rgba(16,16,20,180); color: #e0e0e8; padding: 3px 8px; border-radius: 3px;"
)


def _shorten(name: str, most: int = 48) -> str:
    return name if len(name) <= most else "…" + name[-(most - 1) :]


class MainWindow(QMainWindow):
    def __init__(
        self,
        bridge: EngineBridge,
        settings: AppSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("DiffusionDesk")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.bridge = bridge
        self.settings = settings or AppSettings()
        self.form = ViewModel(self.settings.load_form(), self)
        self.workspace = Workspace(bridge, self.form, self.settings.output_folder(), self)
        self.workspace.writer.picture_format = self.settings.save_format()
        self.workspace.writer.saved.connect(self._note_model_use)
        self._library: ModelLibrary | None = None
        # The application gives it the local engine's factory (guiapp/app.py).
        self.engines = EngineSwitcher(bridge, self.workspace, parent=self)
        self.docks: list[QDockWidget] = []

        self._build_centre()
        self._build_docks()
        self._build_status_bar()
        self._build_actions()
        self._connect()
        self._restore_layout()
        if self.settings.notice:  # settings set aside: say so, without blocking anything
            self.workspace.show_error(self.settings.notice)

    @property
    def closed(self) -> bool:
        return self.workspace.closed

    # ------------------------------------------------------------------ layout

    def _build_centre(self) -> None:
        """Error strip, canvas (with its caption), progress and step scrubber."""
        ws = self.workspace
        centre = QWidget(self)
        self.error_area = ErrorArea(ws, centre)
        self.canvas = Canvas(ws.document, centre)
        self.caption = QLabel(self.canvas.viewport())
        self.caption.setObjectName("canvasCaption")
        self.caption.setStyleSheet(CAPTION_STYLE)
        self.caption.move(8, 8)
        self.caption.hide()
        self.progress = ProgressPanel(ws.progress, self.form, centre)
        self.scrubber = StepScrubber(centre)
        self.mask_toolbar = MaskToolBar(self.canvas, self)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.mask_toolbar)
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.error_area)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.scrubber)
        self.setCentralWidget(centre)

    def _build_docks(self) -> None:
        self.controls_dock = self.add_dock(
            "Prompt and parameters", "controlsDock", self._build_controls(), "left"
        )
        self.queue_view = QueueView(self.workspace.jobs, self)
        self.queue_dock = self.add_dock("Queue", "queueDock", self.queue_view, "right")
        self.history_strip = HistoryStrip(self.workspace.history, self)
        self.history_dock = self.add_dock("History", "historyDock", self.history_strip, "bottom")
        self.addons_dock = AddonsDock(self.form, self)
        addons = self.add_dock("LoRA and embeddings", "addonsDock", self.addons_dock, "right")
        self.forward_panel = ForwardPanel(self.workspace, self)
        self.forward_dock = self.add_dock(
            "Forward process", "forwardDock", self.forward_panel, "right"
        )
        self.tabifyDockWidget(addons, self.forward_dock)
        self.forward_dock.hide()  # View > Forward process
        self.control_dock = ControlDock(self.canvas, self)
        self.add_dock("ControlNet", "controlNetDock", self.control_dock, "right").hide()
        self.regions_dock = RegionsDock(self.canvas, self)
        self.add_dock("Regions", "regionsDock", self.regions_dock, "right").hide()
        self.workspace.request_extras += [self.control_dock.extend, self.regions_dock.extend]
        self.workspace.reuse_hooks += [
            self.control_dock.restore,
            self.regions_dock.restore,
            self.forward_panel.restore,
        ]

    def add_dock(self, title: str, name: str, widget: QWidget, area: str) -> QDockWidget:
        """Put `widget` in a dock at "left", "right", "top" or "bottom" (and the View menu)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        areas = {
            "left": Qt.DockWidgetArea.LeftDockWidgetArea,
            "right": Qt.DockWidgetArea.RightDockWidgetArea,
            "top": Qt.DockWidgetArea.TopDockWidgetArea,
            "bottom": Qt.DockWidgetArea.BottomDockWidgetArea,
        }
        self.addDockWidget(areas[area], dock)
        self.docks.append(dock)
        return dock

    def _build_controls(self) -> QWidget:
        """Prompt, Generate / Image to image / Inpaint, parameters; scrolls up and down."""
        scroll = QScrollArea(self)
        left = QWidget(scroll)
        self.prompt_panel = PromptPanel(self.form, left)
        self.parameter_panel = ParameterPanel(self.form, left)
        self.generate_button = push_button(
            left,
            "generate",
            "Generate",
            "Text to image (Ctrl+Enter). Press again to queue another job.",
            "generateButton",
        )
        self.img2img_button = push_button(
            left,
            "img2img",
            "Image to image",
            "Repaint the whole canvas picture (strength)",
            "img2imgButton",
        )
        self.inpaint_button = push_button(
            left,
            "inpaint",
            "Inpaint",
            "Repaint only the masked area (Ctrl+Shift+Enter)",
            "inpaintButton",
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.img2img_button)
        buttons.addWidget(self.inpaint_button)
        layout = QVBoxLayout(left)
        layout.addWidget(self.prompt_panel, 1)
        layout.addWidget(self.generate_button)
        layout.addLayout(buttons)
        layout.addWidget(self.parameter_panel)
        self.speed_panel = SpeedPanel(self.form, self.settings, left)
        layout.addWidget(self.speed_panel)
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        # Scroll up and down only: the dock is never narrower than its form.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(
            left.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4
        )
        return scroll

    def _build_status_bar(self) -> None:
        ws = self.workspace
        self.model_label = QLabel(self)
        self.model_label.setObjectName("modelLabel")
        self.device_label = QLabel(self)
        self.device_label.setObjectName("deviceLabel")
        self.folder_label = QLabel(self)
        self.folder_label.setObjectName("folderLabel")
        for label in (self.model_label, self.device_label, self.folder_label):
            self.statusBar().addPermanentWidget(label)
        follow(ws, "loaded_model", self._show_model_name)
        follow(ws, "loaded_label", lambda _: self._show_model_name(ws.loaded_model))
        follow(ws, "device", self.device_label.setText)
        follow(ws, "output_folder", lambda folder: self.folder_label.setText(f"saving to {folder}"))

    def _show_model_name(self, name: str) -> None:
        family = self.workspace.loaded_label
        self.model_label.setText(f"model: {_shorten(name)}" + (f" · {family}" if family else ""))
        self.model_label.setToolTip(name + (f" ({family})" if family else ""))

    def _restore_layout(self) -> None:
        self.resize(self._default_size())
        self.resizeDocks(
            [self.controls_dock, self.queue_dock], [360, 210], Qt.Orientation.Horizontal
        )
        geometry, state = self.settings.geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.canvas.set_brush_size(self.settings.brush_size())

    def _default_size(self) -> QSize:
        """1280x820, shrunk to fit a smaller screen (a restored geometry may override)."""
        size = QSize(1280, 820)
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            size = size.boundedTo(screen.availableGeometry().size())
        return size

    # ------------------------------------------------------------------ actions and menus

    def _action(
        self, text: str, shortcut: str | list[str], slot: Callable[[], object], icon_name: str = ""
    ) -> QAction:
        action = QAction(icon(icon_name or "none"), text, self)
        shortcuts = [shortcut] if isinstance(shortcut, str) else shortcut
        action.setShortcuts([QKeySequence(s) for s in shortcuts if s])
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_actions(self) -> None:
        ws = self.workspace
        self.generate_action = self._action(
            "Generate", ["Ctrl+Return", "Ctrl+Enter"], ws.generate, "generate"
        )
        self.inpaint_action = self._action(
            "Inpaint", ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"], ws.inpaint, "inpaint"
        )
        self.img2img_action = self._action("Image to image", "", ws.image_to_image, "img2img")
        self.upscale_action = self._action(
            "Upscale picture", "Ctrl+U", ws.upscale_picture, "upscale"
        )
        self.cancel_action = self._action("Cancel", "Esc", ws.cancel_current, "cancel")
        self.open_action = self._action("Open image…", "Ctrl+O", self.open_image_dialog, "image")
        self.save_as_action = self._action("Save as…", "Ctrl+Shift+S", self.save_as_dialog, "save")
        self.copy_action = self._action("Copy image", "Ctrl+Shift+C", self.copy_image, "copy")
        self.paste_action = self._action(
            "Paste image",
            "Ctrl+Shift+V",
            lambda: ws.paste(QApplication.clipboard().mimeData()),
        )
        self.folder_action = self._action("Output folder…", "", self.choose_output_folder, "folder")
        self.models_action = self._action(
            "Models…",
            "Ctrl+M",
            lambda: show_models_dialog(self, self.use_model, self.library()),
            "folder",
        )
        self.engine_action = self._action("Engine location…", "", self.engine_dialog)
        self.expand_action = self._action(
            "Expand canvas…", "Ctrl+Shift+E", self.expand_dialog, "expand"
        )
        self.expand_action.setToolTip("Outpaint: add pixels around the picture (Ctrl+Shift+E)")
        self.mask_toolbar.addSeparator()
        self.mask_toolbar.addAction(self.expand_action)
        self.quit_action = self._action("Quit", "Ctrl+Q", self.close)
        self._build_menus()

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        for action in (
            self.open_action,
            self.save_as_action,
            self.folder_action,
            self.models_action,
            self.engine_action,
        ):
            file_menu.addAction(action)
        file_menu.addMenu(
            save_format_menu(self, self.workspace.writer.picture_format, self.set_save_format)
        )
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menus.addMenu("&Edit")
        for action in (self.copy_action, self.paste_action):
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        for action in self.mask_toolbar.shortcut_actions():
            edit_menu.addAction(action)
        run_menu = menus.addMenu("&Generate")
        for action in (
            self.generate_action,
            self.img2img_action,
            self.inpaint_action,
            self.upscale_action,
            self.expand_action,
            self.cancel_action,
        ):
            run_menu.addAction(action)
        view_menu = menus.addMenu("&View")
        for dock in self.docks:
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addAction(self.mask_toolbar.toggleViewAction())

    def _connect(self) -> None:
        ws = self.workspace
        self.generate_button.clicked.connect(self.generate_action.trigger)
        self.img2img_button.clicked.connect(self.img2img_action.trigger)
        self.inpaint_button.clicked.connect(self.inpaint_action.trigger)
        self.progress.cancelRequested.connect(ws.cancel_current)
        self.parameter_panel.reuseLastSeedRequested.connect(ws.reuse_last_seed)
        self.scrubber.stepChosen.connect(ws.scrub_to)
        self.scrubber.continueRequested.connect(ws.continue_from)
        ws.runShown.connect(self.scrubber.set_run)
        self.queue_view.removeRequested.connect(ws.remove_job)
        self.history_strip.entrySelected.connect(ws.show_entry)
        self.history_strip.reuseRequested.connect(ws.reuse_parameters)
        self.history_strip.reuseRequested.connect(lambda e: self.addons_dock.check_picture(e.path))
        self.history_strip.saveAsRequested.connect(self.save_as_dialog)
        self.history_strip.copyRequested.connect(self.copy_image)
        self.history_strip.upscaleRequested.connect(ws.upscale_entry)
        ws.previewShown.connect(self.canvas.show_preview)
        ws.documentShown.connect(self.canvas.show_document)
        ws.statusMessage.connect(self._show_status)
        ws.jobs.jobAdded.connect(lambda _job: self.settings.save_form(self.form.values()))
        follow(ws, "caption", self._set_caption)
        self.bridge.engineAttached.connect(lambda _device: self._enable_generating())
        self._enable_generating()

    def _enable_generating(self) -> None:
        ready = self.bridge.ready
        for widget in (self.generate_button, self.img2img_button, self.inpaint_button):
            widget.setEnabled(ready)
        for action in (self.generate_action, self.img2img_action, self.inpaint_action):
            action.setEnabled(ready)

    def _set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.adjustSize()
        self.caption.setVisible(bool(text))

    def _show_status(self, text: str, milliseconds: int) -> None:
        if text:
            self.statusBar().showMessage(text, milliseconds)
        else:
            self.statusBar().clearMessage()

    # ------------------------------------------------------------------ dialogs and clipboard

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if path:
            self.workspace.open_image(Path(path))

    def expand_dialog(self) -> ExpandDialog:
        """Ask how to expand the canvas; Expand submits the outpaint job (non-modal)."""
        picture = self.workspace.document.image
        size = (picture.width(), picture.height()) if picture is not None else None
        dialog = ExpandDialog(size, self)
        if self.workspace.expand_choice is not None:
            dialog.set_choice(*self.workspace.expand_choice)
        dialog.accepted.connect(
            lambda: self.workspace.expand(
                dialog.choice().expand, dialog.choice().piece_by_piece, dialog.choice().strength
            )
        )
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def save_as_dialog(self, entry: HistoryEntry | None = None) -> None:
        entry = entry or self.workspace.history.current
        if entry is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save as", entry.name, "Pictures (*.png *.jpg *.jpeg *.webp)"
        )
        if path:
            self.workspace.save_entry_as(entry, Path(path))

    def copy_image(self, entry: HistoryEntry | None = None) -> None:
        entry = entry or self.workspace.history.current
        image = entry.image if entry is not None else self.workspace.document.image
        if image is not None:
            QApplication.clipboard().setImage(image)

    def choose_output_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Output folder", str(self.workspace.output_folder)
        )
        if folder:
            self.set_output_folder(Path(folder))

    def set_save_format(self, picture_format: str) -> None:
        """PNG, JPEG or WEBP for the pictures saved from now on."""
        self.workspace.writer.picture_format = picture_format
        self.settings.set_save_format(picture_format)

    def use_model(self, path: str) -> None:
        self.form.model = path

    def library(self) -> ModelLibrary:
        """The model library the Models dialog shows (read from the data folder once)."""
        if self._library is None:
            self._library = ModelLibrary()
        return self._library

    def _note_model_use(self, saved: SavedJob) -> None:
        if saved.event.images:
            note_model_used(self, self.library(), saved.event.request.model)

    def engine_dialog(self) -> None:
        """File → Engine location…: this computer or a server; applies at once."""
        current = self.engines.location or self.settings.engine_location()
        self.engine_location_dialog = show_engine_dialog(
            self, current, self.settings.settings_file(), self.use_engine_location
        )

    def use_engine_location(self, location: EngineLocation) -> None:
        """Remember the location and switch to its engine (the window stays usable)."""
        if self.engines.switch_to(location) is not None:
            self.settings.set_engine_location(location)

    def set_output_folder(self, folder: Path) -> None:
        self.workspace.output_folder = folder
        self.settings.set_output_folder(folder)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasImage() or any(
            Path(u.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES for u in mime.urls()
        ):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.workspace.paste(event.mimeData())
        event.acceptProposedAction()

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.closed:
            self.settings.save_form(self.form.values())
            self.settings.set_output_folder(self.workspace.output_folder)
            self.settings.set_brush_size(self.canvas.brush_size)
            self.settings.save_window(self.saveGeometry(), self.saveState())
            self.settings.sync()
            self.forward_panel.close_jobs()
            self.workspace.close()
        super().closeEvent(event)
