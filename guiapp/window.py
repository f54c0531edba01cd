"""The main window: puts the panels together and drives jobs through the bridge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import QMimeData, QSize, Qt
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from engine.api import (
    Cancelled,
    Failed,
    Finished,
    GenerationRequest,
    ModelLoading,
    Queued,
    ResumeFrom,
    Started,
    Step,
)
from guiapp.bridge import EngineBridge
from guiapp.canvas import Canvas
from guiapp.error_area import ErrorArea
from guiapp.history_strip import HistoryEntry, HistoryStrip
from guiapp.icons import icon
from guiapp.imaging import array_to_qimage, composite_in_mask, pil_to_qimage, qimage_to_array
from guiapp.mask_toolbar import MaskToolBar
from guiapp.output_writer import OutputWriter, SavedJob, read_parameters
from guiapp.parameter_panel import ParameterPanel
from guiapp.progress_panel import ProgressPanel
from guiapp.prompt_panel import PromptPanel
from guiapp.queue_view import QueueView
from guiapp.scrubber import StepScrubber
from guiapp.settings import AppSettings
from guiapp.state import ViewModel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
ERROR_TITLES = {
    "bad_input": "Check the input",
    "model": "Model problem",
    "out_of_memory": "Out of memory",
    "internal": "Internal error",
}


def input_problems(request: GenerationRequest) -> list[str]:
    """The engine's own checks (engine.validation, no torch), run before submitting."""
    try:
        from engine.validation import problems
    except ImportError:  # pragma: no cover - only while engine.validation is being written
        return []
    return problems(request)


@dataclass
class JobRecord:
    request: GenerationRequest
    base: np.ndarray | None = None  # inpaint: the picture the preview is shown inside
    mask: np.ndarray | None = None
    total: int = 0
    last_step: int = 0
    previews: list[np.ndarray] = field(default_factory=list, repr=False)


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
        self.model = ViewModel(self.settings.load_form(), self)
        self.output_folder = self.settings.output_folder()
        self.writer = OutputWriter(self)
        self._jobs: dict[int, JobRecord] = {}
        self._running: int | None = None
        self.closed = False

        self._build_widgets()
        self._build_actions()
        self._connect()
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
        self._update_engine_status()
        if self.settings.notice:
            self.error_area.show_error(self.settings.notice)

    def _default_size(self) -> QSize:
        """1280x820, shrunk to fit a smaller screen (a restored geometry may override)."""
        size = QSize(1280, 820)
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            size = size.boundedTo(screen.availableGeometry().size())
        return size

    # ------------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        self.canvas = Canvas()
        self.caption = QLabel(self.canvas.viewport())
        self.caption.setObjectName("canvasCaption")
        self.caption.setStyleSheet(
            "background: rgba(16,16,20,180); color: #e0e0e8; padding: 3px 8px; border-radius: 3px;"
        )
        self.caption.move(8, 8)
        self.caption.hide()
        self.error_area = ErrorArea()
        self.mask_toolbar = MaskToolBar(self.canvas, self)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.mask_toolbar)
        self.progress = ProgressPanel()
        self.progress.noisy_check.setChecked(self.model.show_noisy)
        self.scrubber = StepScrubber()

        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.error_area)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.scrubber)
        self.setCentralWidget(centre)

        # left: prompt, parameters, generate buttons
        self.prompt_panel = PromptPanel(self.model)
        self.parameter_panel = ParameterPanel(self.model)
        self.generate_button = QPushButton(icon("generate"), "Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip(
            "Text to image (Ctrl+Enter). Press again to queue another job."
        )
        self.img2img_button = QPushButton(icon("img2img"), "Image to image")
        self.img2img_button.setObjectName("img2imgButton")
        self.img2img_button.setToolTip("Repaint the whole canvas picture (strength)")
        self.inpaint_button = QPushButton(icon("inpaint"), "Inpaint")
        self.inpaint_button.setObjectName("inpaintButton")
        self.inpaint_button.setToolTip("Repaint only the masked area (Ctrl+Shift+Enter)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.img2img_button)
        buttons.addWidget(self.inpaint_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.prompt_panel, 1)
        left_layout.addWidget(self.generate_button)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.parameter_panel)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        # Scroll up and down only: the dock is never narrower than its form.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(
            left.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4
        )
        self.controls_dock = self._dock("Prompt and parameters", "controlsDock", scroll)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)

        self.queue_view = QueueView()
        self.queue_dock = self._dock("Queue", "queueDock", self.queue_view)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.queue_dock)

        self.history = HistoryStrip()
        self.history_dock = self._dock("History", "historyDock", self.history)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.history_dock)

        self.device_label = QLabel("engine starting…")
        self.device_label.setObjectName("deviceLabel")
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        self.folder_label = QLabel()
        self.folder_label.setObjectName("folderLabel")
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().addPermanentWidget(self.folder_label)
        self._show_model_name(self.model.model)
        self._show_folder()

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        return dock

    def _action(self, text: str, shortcut: str | list[str], slot, icon_name: str = "") -> QAction:  # noqa: ANN001
        action = QAction(icon(icon_name) if icon_name else icon("none"), text, self)
        shortcuts = [shortcut] if isinstance(shortcut, str) else shortcut
        action.setShortcuts([QKeySequence(s) for s in shortcuts if s])
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.generate_action = self._action(
            "Generate", ["Ctrl+Return", "Ctrl+Enter"], self.generate, "generate"
        )
        self.inpaint_action = self._action(
            "Inpaint", ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"], self.inpaint, "inpaint"
        )
        self.img2img_action = self._action("Image to image", "", self.image_to_image, "img2img")
        self.cancel_action = self._action("Cancel", "Esc", self.cancel_current, "cancel")
        self.open_action = self._action("Open image…", "Ctrl+O", self.open_image_dialog, "image")
        self.save_as_action = self._action("Save as…", "Ctrl+Shift+S", self.save_as_dialog, "save")
        self.copy_action = self._action("Copy image", "Ctrl+Shift+C", self.copy_image, "copy")
        self.paste_action = self._action("Paste image", "Ctrl+Shift+V", self.paste_image)
        self.folder_action = self._action("Output folder…", "", self.choose_output_folder, "folder")
        self.quit_action = self._action("Quit", "Ctrl+Q", self.close)

        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        for action in (self.open_action, self.save_as_action, self.folder_action):
            file_menu.addAction(action)
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
            self.cancel_action,
        ):
            run_menu.addAction(action)
        view_menu = menus.addMenu("&View")
        for dock in (self.controls_dock, self.queue_dock, self.history_dock):
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addAction(self.mask_toolbar.toggleViewAction())

    def _connect(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.img2img_button.clicked.connect(self.image_to_image)
        self.inpaint_button.clicked.connect(self.inpaint)
        self.progress.cancelRequested.connect(self.cancel_current)
        self.progress.noisy_check.toggled.connect(lambda on: setattr(self.model, "show_noisy", on))
        self.model.show_noisyChanged.connect(self.progress.noisy_check.setChecked)
        self.model.show_noisyChanged.connect(lambda _on: self._show_scrubbed(self.scrubber.step))
        self.model.modelChanged.connect(self._show_model_name)
        self.parameter_panel.reuseLastSeedRequested.connect(self.reuse_last_seed)
        self.scrubber.stepChosen.connect(self._show_scrubbed)
        self.scrubber.continueRequested.connect(self.continue_from)
        self.queue_view.removeRequested.connect(self.remove_job)
        self.history.entrySelected.connect(self.show_entry)
        self.history.reuseRequested.connect(self.reuse_parameters)
        self.history.saveAsRequested.connect(lambda entry: self.save_as_dialog(entry))
        self.history.copyRequested.connect(lambda entry: self.copy_image(entry))
        self.writer.saved.connect(self._on_saved)

        b = self.bridge
        b.engineAttached.connect(lambda _device: self._update_engine_status())
        b.queued.connect(self._on_queued)
        b.modelLoading.connect(self._on_model_loading)
        b.started.connect(self._on_started)
        b.step.connect(self._on_step)
        b.finished.connect(self._on_finished)
        b.cancelled.connect(self._on_cancelled)
        b.failed.connect(self._on_failed)

    # ------------------------------------------------------------------ status

    def _update_engine_status(self) -> None:
        ready = self.bridge.ready
        engine = self.bridge.engine
        self.device_label.setText(engine.device_description if engine else "engine starting…")
        for widget in (self.generate_button, self.img2img_button, self.inpaint_button):
            widget.setEnabled(ready)
        for action in (self.generate_action, self.img2img_action, self.inpaint_action):
            action.setEnabled(ready)

    def _show_model_name(self, name: str) -> None:
        shown = name if len(name) <= 48 else "…" + name[-47:]
        self.model_label.setText(f"model: {shown}")
        self.model_label.setToolTip(name)

    def _show_folder(self) -> None:
        self.folder_label.setText(f"saving to {self.output_folder}")

    def _set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.adjustSize()
        self.caption.setVisible(bool(text))

    # ------------------------------------------------------------------ submitting

    def _submit(self, request: GenerationRequest) -> int | None:
        problems = input_problems(request)
        if problems:
            self.error_area.show_error("Check the input: " + "; ".join(problems) + ".")
            return None
        if not self.bridge.ready:
            self.error_area.show_error("The engine is still starting; try again in a moment.")
            return None
        job_id = self.bridge.submit(request)
        record = JobRecord(request)
        if request.mask is not None and request.init_image is not None:
            record.base = np.asarray(request.init_image.convert("RGB"))
            record.mask = np.asarray(request.mask.convert("L"))
        self._jobs[job_id] = record
        self.queue_view.add_job(job_id, request)
        self.error_area.clear()
        self.settings.save_form(self.model.values())
        return job_id

    def generate(self) -> int | None:
        """Text to image with the form's parameters (queued behind running jobs)."""
        return self._submit(self.model.build_request())

    def _canvas_picture(self) -> Image.Image | None:
        image = self.canvas.image()
        if image is None:
            self.error_area.show_error(
                "There is no picture on the canvas: open one (Ctrl+O), drop or paste one, "
                "or generate one first."
            )
            return None
        return Image.fromarray(qimage_to_array(image, 3), "RGB")

    def image_to_image(self) -> int | None:
        picture = self._canvas_picture()
        if picture is None:
            return None
        request = self.model.build_request(init_image=picture)
        return self._submit(request.with_changes(width=picture.width, height=picture.height))

    def inpaint(self) -> int | None:
        picture = self._canvas_picture()
        if picture is None:
            return None
        mask = self.canvas.mask_image()
        if mask is None:
            self.error_area.show_error(
                "Paint a mask first: brush over the part of the picture to repaint."
            )
            return None
        request = self.model.build_request(init_image=picture, mask=mask)
        return self._submit(request.with_changes(width=picture.width, height=picture.height))

    def continue_from(self, job_id: int, step: int) -> int | None:
        """Branch: re-run the steps after `step` of job `job_id` with the form's prompt and seed."""
        source = self._jobs.get(job_id)
        base = source.request if source is not None else self.model.build_request()
        form = self.model.build_request()
        request = base.with_changes(
            prompt=form.prompt,
            negative_prompt=form.negative_prompt,
            guidance_scale=form.guidance_scale,
            seed=form.seed,
            resume=ResumeFrom(job_id, step),
        )
        return self._submit(request)

    def cancel_current(self) -> None:
        """Esc / Cancel: stop the running job, or else the newest queued one."""
        if self._running is not None:
            self.bridge.cancel(self._running)
            self.progress.show_idle("cancelling…", True)
            return
        waiting = self.queue_view.job_ids()
        if waiting:
            self.bridge.cancel(waiting[-1])

    def remove_job(self, job_id: int) -> None:
        self.bridge.cancel(job_id)
        if job_id != self._running:
            self.queue_view.remove_job(job_id)

    def reuse_last_seed(self) -> None:
        if self.model.last_seed is not None:
            self.model.seed = self.model.last_seed
            self.model.random_seed = False

    # ------------------------------------------------------------------ events

    def _on_queued(self, event: Queued) -> None:
        if event.job_id in self._jobs and event.job_id != self._running:
            ahead = f"queued ({event.position} ahead)" if event.position else "queued"
            self.queue_view.set_status(event.job_id, ahead)

    def _on_model_loading(self, event: ModelLoading) -> None:
        self._running = event.job_id  # Esc during loading cancels this job
        self.queue_view.set_status(event.job_id, "loading model")
        self.progress.show_loading(event.stage, event.progress)
        self.statusBar().showMessage(f"Loading model {event.model}: {event.stage}")

    def _on_started(self, event: Started) -> None:
        self._running = event.job_id
        record = self._jobs.get(event.job_id)
        if record is not None:
            record.total = event.total_steps
        self.queue_view.set_status(event.job_id, "running")
        self.progress.show_started(event.total_steps)
        self.device_label.setText(event.device)
        self._show_model_name(event.model)
        if event.seeds:
            self.model.last_seed = event.seeds[0]
        self._set_caption(f"job #{event.job_id} · seed {', '.join(map(str, event.seeds))}")
        self.statusBar().clearMessage()

    def _on_step(self, event: Step) -> None:
        record = self._jobs.get(event.job_id)
        self.progress.show_step(event)
        if record is not None:
            record.last_step = event.step
        preview = event.noisy_preview if self.model.show_noisy else event.preview
        self._show_array(preview, record)

    def _show_array(self, preview: np.ndarray, record: JobRecord | None) -> None:
        if record is not None and record.base is not None and record.mask is not None:
            image = array_to_qimage(composite_in_mask(record.base, preview, record.mask))
            self.canvas.show_preview(image, QSize(record.base.shape[1], record.base.shape[0]))
        else:
            size = QSize(record.request.width, record.request.height) if record else None
            self.canvas.show_preview(array_to_qimage(preview), size)

    def _on_finished(self, event: Finished) -> None:
        self.queue_view.set_status(event.job_id, "saving")
        self.writer.write(event, self.output_folder)

    def _on_saved(self, saved: SavedJob) -> None:
        if self.closed:
            return
        event = saved.event
        if event.job_id == self._running:
            self._running = None
        self.queue_view.remove_job(event.job_id)
        if saved.error:
            self.error_area.show_error(saved.error)
        entries = []
        for image, seed, path in zip(event.images, event.seeds, saved.paths, strict=False):
            entry = HistoryEntry(
                path=path,
                image=pil_to_qimage(image.convert("RGB")),
                request=event.request.with_changes(seed=seed),
                seed=seed,
                job_id=event.job_id,
                step_previews=event.step_previews,
                noisy_step_previews=event.noisy_step_previews,
            )
            entries.append(entry)
        for entry in reversed(entries):
            self.history.add(entry)
        if entries:
            self.canvas.set_image(entries[0].image, keep_mask=True)
        self.scrubber.set_run(event.job_id, event.step_previews, event.noisy_step_previews)
        total = event.timings.get("total", 0.0)
        self.progress.show_done(total, busy_remaining=bool(self.queue_view.job_ids()))
        seeds = ", ".join(map(str, event.seeds))
        self._set_caption(f"job #{event.job_id} done · seed {seeds}")
        if event.warnings:
            self.error_area.show_error("Note: " + " ".join(event.warnings))
        if saved.paths:
            self.statusBar().showMessage(f"Saved {saved.paths[0].name}", 5000)

    def _on_cancelled(self, event: Cancelled) -> None:
        self.queue_view.remove_job(event.job_id)
        record = self._jobs.get(event.job_id)
        if event.job_id == self._running or self._running is None:
            self._running = None
            total = record.total if record else 0
            text = f"cancelled at step {event.step}/{total}" if total else "cancelled"
            self.progress.show_idle(text, bool(self.queue_view.job_ids()))
            if total:
                self._set_caption(f"job #{event.job_id} cancelled at step {event.step}")

    def _on_failed(self, event: Failed) -> None:
        self.queue_view.remove_job(event.job_id)
        if event.job_id == self._running or self._running is None:
            self._running = None
            self.progress.show_idle("failed", bool(self.queue_view.job_ids()))
            self.canvas.show_document()
            self._set_caption("")
        title = ERROR_TITLES.get(str(event.error), "Error")
        self.error_area.show_error(f"{title}: {event.message}", event.detail)

    # ------------------------------------------------------------------ history & scrubbing

    def _show_scrubbed(self, step: int) -> None:
        frame = self.scrubber.preview(step, noisy=self.model.show_noisy)
        if frame is None or self._running is not None:
            return
        record = self._jobs.get(self.scrubber.job_id) if self.scrubber.job_id is not None else None
        self._show_array(frame, record)
        self._set_caption(f"job #{self.scrubber.job_id} · step {step}")

    def show_entry(self, entry: HistoryEntry) -> None:
        self.canvas.set_image(entry.image, keep_mask=True)
        if entry.job_id is not None and entry.step_previews:
            self.scrubber.set_run(entry.job_id, entry.step_previews, entry.noisy_step_previews)
        self._set_caption(entry.path.name)

    def reuse_parameters(self, entry: HistoryEntry) -> None:
        if entry.request is None:
            self.error_area.show_error(f"{entry.path.name} carries no generation parameters.")
            return
        self.model.apply_request(entry.request)
        self.statusBar().showMessage(f"Parameters of {entry.path.name} are in the form", 5000)

    # ------------------------------------------------------------------ files

    def open_image(self, path: Path) -> bool:
        """Put a picture on the canvas; a PNG with parameters also goes into the history."""
        try:
            with Image.open(path) as opened:
                picture = opened.convert("RGB")
                request = read_parameters(opened)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            self.error_area.show_error(f"Could not open {path.name}: {exc}")
            return False
        self._put_on_canvas(picture)
        if request is not None:
            entry = HistoryEntry(path=path, image=pil_to_qimage(picture), request=request)
            entry.seed = request.seed
            self.history.add(entry)
            self.statusBar().showMessage(
                f"{path.name} carries parameters: 'Reuse parameters' fills the form", 8000
            )
        return True

    def _put_on_canvas(self, picture: Image.Image) -> None:
        """The canvas works in multiples of 8 pixels (the latent grid): crop the rest."""
        w, h = picture.width - picture.width % 8, picture.height - picture.height % 8
        if (w, h) != picture.size and w > 0 and h > 0:
            picture = picture.crop((0, 0, w, h))
        self.canvas.set_image(pil_to_qimage(picture), keep_mask=True)
        self._set_caption("")

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if path:
            self.open_image(Path(path))

    def save_as_dialog(self, entry: HistoryEntry | None = None) -> None:
        entry = entry or self.history.current()
        if entry is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save as", entry.path.name, "PNG (*.png)")
        if path:
            self.save_entry_as(entry, Path(path))

    def save_entry_as(self, entry: HistoryEntry, path: Path) -> None:
        try:
            path.write_bytes(entry.path.read_bytes())
        except OSError as exc:
            self.error_area.show_error(f"Could not save {path}: {exc}")

    def copy_image(self, entry: HistoryEntry | None = None) -> None:
        entry = entry or self.history.current()
        image = entry.image if entry is not None else self.canvas.image()
        if image is not None:
            QApplication.clipboard().setImage(image)

    def paste_image(self) -> None:
        self._paste_from(QApplication.clipboard().mimeData())

    def _paste_from(self, mime: QMimeData | None) -> None:
        if mime is None:
            return
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self._put_on_canvas(Image.fromarray(qimage_to_array(image, 3), "RGB"))
                return
        for url in mime.urls():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in IMAGE_SUFFIXES:
                self.open_image(path)
                return

    def choose_output_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", str(self.output_folder))
        if folder:
            self.set_output_folder(Path(folder))

    def set_output_folder(self, folder: Path) -> None:
        self.output_folder = folder
        self.settings.set_output_folder(folder)
        self._show_folder()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasImage() or any(
            Path(u.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES for u in mime.urls()
        ):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self._paste_from(event.mimeData())
        event.acceptProposedAction()

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.closed:
            self.closed = True
            self.settings.save_form(self.model.values())
            self.settings.set_output_folder(self.output_folder)
            self.settings.set_brush_size(self.canvas.brush_size)
            self.settings.save_window(self.saveGeometry(), self.saveState())
            self.settings.sync()
            self.bridge.shutdown(timeout=5.0)
            self.writer.close(timeout=5.0)
        super().closeEvent(event)
