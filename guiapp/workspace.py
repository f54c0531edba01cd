"""The window's commands and what is on screen, without a single widget.

The workspace owns the models (form, document, history, jobs, progress), submits
requests through the bridge, saves finished images through the output writer and
decides what the canvas, caption and progress show: the running job's previews while
it runs, a result once it is saved, a scrubbed step after a run. MainWindow lays out
widgets that show these models and connects its actions to the commands here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import QMimeData, QObject, QSize, Signal
from PySide6.QtGui import QImage

from engine import outpaint
from engine.api import (
    ErrorKind,
    Expand,
    ForwardProcess,
    GenerationRequest,
    JobState,
    ResumeFrom,
)
from engine.atomic_file import SaveError, atomic_write
from engine.control.metadata import UnitSetting, settings_of
from engine.foreign_metadata import read_picture_settings
from engine.library import resolve_model_name
from engine.validation import problems
from guiapp import family_form, upscale_form
from guiapp.bridge import EngineBridge, EngineChanged
from guiapp.document import Document
from guiapp.file_io import copy_file, open_picture
from guiapp.history import History, HistoryEntry, Run
from guiapp.imaging import pil_to_qimage, qimage_to_pil
from guiapp.jobs import Job, JobQueue
from guiapp.output_writer import OutputWriter, SavedJob, save_picture
from guiapp.progress import Progress
from guiapp.properties import Observable, Property
from guiapp.state import ViewModel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
ERROR_TITLES = {
    ErrorKind.BAD_INPUT: "Check the input",
    ErrorKind.MODEL: "Model problem",
    ErrorKind.OUT_OF_MEMORY: "Out of memory",
    ErrorKind.INTERNAL: "Internal error",
}
CLOSE_TIMEOUT = 30.0  # seconds closing waits for the engine, then for the writer


class Workspace(Observable):
    """Commands a person gives, and the state the window shows."""

    caption = Property("", persist=False)  # over the canvas: job, seed, step or file
    error = Property("", persist=False)  # the inline error strip ("" hides it)
    error_detail = Property("", persist=False)  # behind its Copy button (a traceback)
    device = Property("engine starting…", persist=False)
    loaded_model = Property("", persist=False)
    loaded_label = Property("", persist=False)  # the loaded model's family and variant
    output_folder = Property(Path(), persist=False)

    previewShown = Signal(object, QSize)  # a preview array, shown at this picture size
    documentShown = Signal()  # the canvas shows the document again
    runShown = Signal(object)  # Run or None: what the step scrubber moves through
    statusMessage = Signal(str, int)  # text, milliseconds (0: until replaced)

    def __init__(
        self,
        bridge: EngineBridge,
        form: ViewModel,
        output_folder: Path,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.form = form
        self.document = Document(self)
        self.history = History(parent=self)
        self.jobs = JobQueue(parent=self)
        self.progress = Progress(self)
        self.writer = OutputWriter(self)
        self.output_folder = output_folder
        self.loaded_model = form.model
        self._run: Run | None = None  # the run the scrubber moves through
        # Functions that add a dock's fields to each submitted request (ControlNet, regions).
        self.request_extras: list[Callable[[GenerationRequest], GenerationRequest]] = []
        # Functions that put a reused picture's units, regions, expansion or forward
        # process back into a dock or panel; each returns sentences for what it could not.
        self.reuse_hooks: list[Callable[[GenerationRequest, tuple[UnitSetting, ...]], list[str]]]
        self.reuse_hooks = []
        self.expand_choice: tuple[Expand, bool, float] | None = None  # the dialog's next values
        self._scrubbed_step = 0
        self.closed = False

        bridge.eventArrived.connect(self.jobs.handle_event)
        bridge.engineAttached.connect(self._engine_attached)
        if bridge.engine is not None:
            self.device = bridge.engine.device_description
        self.jobs.jobChanged.connect(self._job_changed)
        self.jobs.stepped.connect(self._job_stepped)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.ended.connect(self._job_ended)
        self.writer.saved.connect(self._saved)
        form.signal("model").connect(self._set_loaded_model)
        form.signal("show_noisy").connect(self._noisy_toggled)
        family_form.follow_model(form)

    # ------------------------------------------------------------------ messages

    def show_error(self, message: str, detail: str = "") -> None:
        if message == self.error:
            self.error = ""  # said again (maybe with other details): show it afresh
        self.error_detail = detail
        self.error = message

    def clear_error(self) -> None:
        self.error = ""
        self.error_detail = ""

    def _set_loaded_model(self, name: str) -> None:
        self.loaded_model = name
        self.loaded_label = ""

    def _engine_attached(self, device: str) -> None:
        self.device = device

    # ------------------------------------------------------------------ submitting

    def submit(self, request: GenerationRequest) -> int | None:
        """Check the request (engine.validation), queue it, and return its job id."""
        for extend in self.request_extras:  # the docks' ControlNet units and regions
            try:
                request = extend(request)
            except ValueError as exc:
                self.show_error(f"Check the input: {exc}")
                return None
        found = problems(request)
        if found:
            self.show_error("Check the input: " + "; ".join(found) + ".")
            return None
        if not self.bridge.ready:
            self.show_error("The engine is still starting; try again in a moment.")
            return None
        try:
            job_id = self.bridge.submit(request)
        except EngineChanged as exc:
            self.show_error(str(exc))
            return None
        self.jobs.add(job_id, request)
        self.clear_error()
        return job_id

    def generate(self) -> int | None:
        """Text to image with the form's parameters (queued behind running jobs)."""
        return self.submit(self.form.build_request())

    def _picture(self) -> Image.Image | None:
        picture = self.document.picture()
        if picture is None:
            self.show_error(
                "There is no picture on the canvas: open one (Ctrl+O), drop or paste one, "
                "or generate one first."
            )
        return picture

    def image_to_image(self) -> int | None:
        picture = self._picture()
        if picture is None:
            return None
        request = self.form.build_request(init_image=picture)
        return self.submit(request.with_changes(width=picture.width, height=picture.height))

    def inpaint(self) -> int | None:
        picture = self._picture()
        if picture is None:
            return None
        mask = self.document.mask_image()
        if mask is None:
            self.show_error("Paint a mask first: brush over the part of the picture to repaint.")
            return None
        request = self.form.build_request(init_image=picture, mask=mask)
        return self.submit(request.with_changes(width=picture.width, height=picture.height))

    def upscale_picture(self) -> int | None:
        """Enlarge the canvas picture with the form's Upscale settings."""
        picture = self._picture()
        if picture is None:
            return None
        return self.submit(upscale_form.upscale_request(self.form, picture))

    def upscale_entry(self, entry: HistoryEntry) -> int | None:
        """Enlarge a finished picture from the history (one action)."""
        picture = qimage_to_pil(entry.image)
        return self.submit(upscale_form.upscale_request(self.form, picture))

    def expand(
        self, expand: Expand, only_masked: bool = False, strength: float = 1.0
    ) -> int | None:
        """Outpaint the canvas picture by `expand`'s sides with the form's prompt; the
        result replaces the picture as one undoable edit."""
        picture = self._picture()
        if picture is None:
            return None
        width, height = outpaint.expanded_size(picture.size, expand)
        self.expand_choice = (expand, only_masked, strength)  # the dialog offers it again
        request = self.form.build_request(init_image=picture).with_changes(
            expand=expand,
            width=width,
            height=height,
            strength=strength,
            inpaint_only_masked=only_masked,
        )
        return self.submit(request)

    def denoise_from(self, picture: Image.Image, level: int, steps: int, seed: int) -> int | None:
        """Run the reverse process from `picture` noised `level` of `steps` steps deep with
        the seed's noise (the forward-process panel), with the form's prompt."""
        request = self.form.build_request(init_image=picture, seed=seed).with_changes(
            forward=ForwardProcess(level=level, denoise=True),
            steps=steps,
            width=picture.width,
            height=picture.height,
            batch_size=1,
        )
        return self.submit(request)

    def continue_from(self, job_id: int, step: int) -> int | None:
        """Branch: re-run the steps after `step` of job `job_id` with the form's prompt and seed."""
        run = self.history.find_run(job_id)
        job = self.jobs.find(job_id)
        form = self.form.build_request()
        if run is not None:
            base = run.request
        elif job is not None:
            base = job.request
        else:
            base = form
        request = base.with_changes(
            prompt=form.prompt,
            negative_prompt=form.negative_prompt,
            guidance_scale=form.guidance_scale,
            true_cfg_scale=form.true_cfg_scale,
            seed=form.seed,
            resume=ResumeFrom(job_id, step),
        )
        return self.submit(request)

    def cancel_current(self) -> None:
        """Esc / Cancel: stop the running job, or else the newest queued one."""
        running = self.jobs.running
        if running is not None:
            self.bridge.cancel(running.id)
            self.progress.idle("cancelling…", True)
            return
        waiting = self.jobs.waiting()
        if waiting:
            self.remove_job(waiting[-1].id)

    def remove_job(self, job_id: int) -> None:
        """Remove a job from the queue; a running one is cancelled."""
        self.bridge.cancel(job_id)
        self.jobs.withdraw(job_id)

    def reuse_last_seed(self) -> None:
        if self.form.last_seed is not None:
            self.form.seed = self.form.last_seed
            self.form.random_seed = False

    # ------------------------------------------------------------------ jobs on screen

    def _job_changed(self, job: Job) -> None:
        if job is not self.jobs.running:
            return
        match job.state:
            case JobState.LOADING:
                self.progress.loading(job.stage, job.load_progress)
                self.statusMessage.emit(f"Loading model {job.request.model}: {job.stage}", 0)
            case JobState.RUNNING:
                self.progress.started(job.total)
                self.device = job.device
                self.loaded_model = job.model
                self.loaded_label = job.model_label
                if job.family and job.model == self.form.model:
                    family_form.adopt(self.form, job.family, job.variant)
                if job.seeds:
                    self.form.last_seed = job.seeds[0]
                self.caption = f"job #{job.id} · seed {', '.join(map(str, job.seeds))}"
                self.statusMessage.emit("", 0)

    def _job_stepped(self, job: Job) -> None:
        if not self.jobs.owns_screen(job):
            return
        self.progress.step(job.step, job.total, job.elapsed)
        preview = job.noisy_preview if self.form.show_noisy else job.preview
        if preview is not None:
            self.previewShown.emit(preview, QSize(job.request.width, job.request.height))

    def _job_finished(self, job: Job) -> None:
        if job.result is not None:
            self.writer.write(job.result, self.output_folder)

    def _job_ended(self, job: Job) -> None:
        if job.state == JobState.FAILED and job.failure is not None:
            title = ERROR_TITLES.get(job.failure.error, "Error")
            self.show_error(f"{title}: {job.failure.message}", job.failure.detail)
        if not self.jobs.owns_screen(job) or job.state == JobState.FINISHED:
            return
        busy = self.jobs.busy()
        if job.state == JobState.CANCELLED and job.total:
            self.progress.idle(f"cancelled at step {job.step}/{job.total}", busy)
            self.caption = f"job #{job.id} cancelled at step {job.step}"
        elif job.state == JobState.CANCELLED:
            self.progress.idle("cancelled", busy)
        elif job.state == JobState.FAILED:
            self.progress.idle("failed", busy)
            self.documentShown.emit()
            self.caption = ""

    def _saved(self, saved: SavedJob) -> None:
        if self.closed:
            return
        event = saved.event
        # Decided before the job ends: a job that started meanwhile keeps the screen.
        on_screen = self.jobs.running is None
        job = self.jobs.find(event.job_id)
        where = job.device if job is not None else ""  # e.g. "cpu (float32) on gpu-box"
        self.jobs.mark_saved(event.job_id)
        if saved.error:
            self.show_error(saved.error)
        run = Run(event.job_id, event.request, event.step_previews, event.noisy_step_previews)
        entries = []
        for index, (image, seed) in enumerate(zip(event.images, event.seeds, strict=False)):
            path = saved.paths[index] if index < len(saved.paths) else None
            request = event.request.with_changes(seed=seed)
            entries.append(HistoryEntry(path, pil_to_qimage(image), request, seed, run, where))
        for entry in reversed(entries):
            self.history.add(entry)
        if event.warnings and not saved.error:  # the save error matters more
            self.show_error("Note: " + " ".join(event.warnings))
        if saved.paths:
            self.statusMessage.emit(f"Saved {saved.paths[0].name}", 5000)
        if not on_screen:
            return
        if entries and event.request.expand is not None:
            self.document.replace_picture(entries[0].image, "Expand canvas")
        elif entries:
            self.document.set_image(entries[0].image, keep_mask=True)
        self._show_run(run)
        self.progress.done(event.timings.get("total", 0.0), busy_remaining=self.jobs.busy())
        self.caption = f"job #{event.job_id} done · seed {', '.join(map(str, event.seeds))}" + (
            f" · ran on {where}" if where else ""
        )

    # ------------------------------------------------------------------ history & scrubbing

    def _show_run(self, run: Run | None) -> None:
        self._run = run
        self._scrubbed_step = len(run.step_previews) if run is not None else 0
        self.runShown.emit(run)

    def show_step(self, step: int) -> None:
        """Show the run's preview after `step` steps (not while a job runs)."""
        run = self._run
        if run is None or self.jobs.running is not None:
            return
        frame = run.preview(step, noisy=self.form.show_noisy)
        if frame is None:
            return
        self.previewShown.emit(frame, QSize(run.request.width, run.request.height))
        self.caption = f"job #{run.job_id} · step {step}"

    def scrub_to(self, step: int) -> None:
        self._scrubbed_step = step
        self.show_step(step)

    def _noisy_toggled(self, _noisy: bool) -> None:
        if self._scrubbed_step:
            self.show_step(self._scrubbed_step)

    def show_entry(self, entry: HistoryEntry) -> None:
        self.history.select(entry)
        self.document.set_image(entry.image, keep_mask=True)
        if entry.run is not None and entry.run.step_previews:
            self._show_run(entry.run)
        self.caption = entry.name

    def reuse_parameters(self, entry: HistoryEntry) -> None:
        if entry.request is None:
            self.show_error(f"{entry.name} carries no generation parameters.")
            return
        request = entry.request
        self.form.apply_request(request)
        if request.expand is not None:
            self.expand_choice = (request.expand, request.inpaint_only_masked, request.strength)
        units = entry.units or settings_of(request.controls)
        notes = [note for hook in self.reuse_hooks for note in hook(request, units)]
        if notes:
            self.show_error("Note: " + " ".join(notes))
        self.statusMessage.emit(f"Parameters of {entry.name} are in the form", 5000)

    # ------------------------------------------------------------------ files

    def open_image(self, path: Path) -> bool:
        """Put a picture on the canvas as a viewer shows it (its transparent part as the
        mask); a picture with settings also goes into the history."""
        opened = open_picture(path)
        if opened.image is None:
            self.show_error(opened.error)
            return False
        picture = self.put_picture(opened.image)
        if opened.mask is not None:
            mask = opened.mask[: picture.height, : picture.width]
            self.document.set_mask_array(np.ascontiguousarray(mask), "Mask from transparency")
        notes = opened.notes
        try:
            # Ours or another tool's (A1111, ComfyUI, InvokeAI, ...): only what it states.
            found = read_picture_settings(path, resolve_model_name)
        except (OSError, UnidentifiedImageError, ValueError):
            found = None
        if found is None:
            self.statusMessage.emit(f"{path.name} carries no generation settings.", 8000)
        else:
            request = found.apply_to(self.form.build_request())
            self.history.add(
                HistoryEntry(path, pil_to_qimage(picture), request, request.seed, units=found.units)
            )
            self.statusMessage.emit(
                f"{path.name}: {found.summary()} 'Reuse parameters' fills the form.", 12000
            )
            notes = notes + [f"{path.name}: {' '.join(found.left_out)}"] * bool(found.left_out)
        if notes:
            self.show_error("Note: " + " ".join(notes))
        return True

    def put_picture(self, picture: Image.Image) -> Image.Image:
        """The canvas works in multiples of 8 pixels (the latent grid): crop the rest."""
        w, h = picture.width - picture.width % 8, picture.height - picture.height % 8
        if (w, h) != picture.size and w > 0 and h > 0:
            picture = picture.crop((0, 0, w, h))
        self.document.set_image(pil_to_qimage(picture), keep_mask=True)
        self.caption = ""
        return picture

    def paste(self, mime: QMimeData | None) -> None:
        """A picture or an image file from the clipboard or a drop."""
        if mime is None:
            return
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self.put_picture(qimage_to_pil(image))
                return
        for url in mime.urls():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in IMAGE_SUFFIXES:
                self.open_image(path)
                return

    def save_entry_as(self, entry: HistoryEntry, path: Path) -> bool:
        """Write an entry elsewhere, atomically: its saved file as it is when the format is
        the same, else a new picture (PNG, JPEG or WebP by the suffix) with its parameters
        from the image held in memory (so this works when its first save failed)."""
        try:
            same_format = (
                entry.path is not None and entry.path.suffix.lower() == path.suffix.lower()
            )
            if same_format and entry.path is not None and entry.path.exists():
                copy_file(entry.path, path)
            elif entry.request is not None:
                seed = entry.seed if entry.seed is not None else 0
                save_picture(qimage_to_pil(entry.image), path, entry.request, seed)
            else:
                picture = qimage_to_pil(entry.image)
                atomic_write(path, lambda f: picture.save(f, format="PNG"))
        except SaveError as exc:
            self.show_error(exc.message)
            return False
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not save {path}: {exc}")
            return False
        self.statusMessage.emit(f"Saved {path.name}", 5000)
        return True

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the engine, deliver what it already sent and wait until every finished
        image is written: closing never loses a finished image."""
        if self.closed:
            return
        self.bridge.shutdown(timeout=CLOSE_TIMEOUT)
        self.closed = True
        self.writer.close(timeout=CLOSE_TIMEOUT)
