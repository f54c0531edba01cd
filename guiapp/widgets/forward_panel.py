"""The forward process, made visible: a panel where a person takes a picture, drags a
slider through the model's noise schedule and sees the noised latent decoded, then runs
the reverse process from exactly there ("Denoise from here").

Each slider position is an engine job (engine.api.ForwardProcess) submitted through the
bridge; the panel keeps at most one in flight and, when it ends, submits only the newest
position asked for meanwhile (slider moves coalesce; the window never waits). These
preview jobs are not the window's jobs: they are neither queued in view nor saved.
"Denoise from here" is an ordinary job (previews, cancel, scrubber, history).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.api import Cancelled, Event, Failed, Finished, ForwardProcess, GenerationRequest
from engine.validation import MAX_STEPS, problems
from guiapp.file_io import open_picture
from guiapp.imaging import pil_to_qimage
from guiapp.workspace import IMAGE_SUFFIXES, Workspace

VIEW_SIDE = 256  # the noised picture's long side in the panel


@dataclass(frozen=True)
class _Wanted:
    picture: int  # which picture (the panel counts the pictures it was given)
    level: int
    steps: int
    seed: int


class ForwardPanel(QWidget):
    """Picture, schedule slider, the noised picture, and "Denoise from here"."""

    def __init__(self, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("forwardPanel")
        self.workspace = workspace
        self.picture: Image.Image | None = None
        self._pictures = 0
        self.job: int | None = None  # the preview job in flight
        self._asked: _Wanted | None = None  # what the job in flight shows
        self._wanted: _Wanted | None = None  # the newest position asked for
        self.shown: _Wanted | None = None
        self.previews_submitted = 0

        self.take_button = QPushButton("Use canvas picture", self)
        self.open_button = QPushButton("Open…", self)
        self.steps = QSpinBox(self)
        self.steps.setRange(1, MAX_STEPS)
        self.steps.setValue(50)
        self.steps.setToolTip("Steps of the schedule (the form's sampler)")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1)
        self.seed.setToolTip("One seed is one noise: the same at every level and when denoising")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("forwardSlider")
        self.slider.setRange(0, self.steps.value())
        self.slider.setToolTip("Drag to noise the picture: 0 is the picture, the end pure noise")
        self.view = QLabel("Take a picture to watch it dissolve into noise.", self)
        self.view.setObjectName("forwardView")
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(VIEW_SIDE // 2, VIEW_SIDE // 2)
        self.view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.facts = QLabel("", self)
        self.facts.setObjectName("forwardFacts")
        self.facts.setWordWrap(True)
        self.denoise_button = QPushButton("Denoise from here", self)
        self.denoise_button.setToolTip(
            "Run the reverse process from exactly this noisy latent with the form's prompt"
        )
        self.denoise_button.setEnabled(False)

        top = QHBoxLayout()
        top.addWidget(self.take_button)
        top.addWidget(self.open_button)
        numbers = QFormLayout()
        numbers.addRow("Steps", self.steps)
        numbers.addRow("Seed", self.seed)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(numbers)
        layout.addWidget(self.slider)
        layout.addWidget(self.facts)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.denoise_button)

        self.take_button.clicked.connect(self.take_canvas_picture)
        self.open_button.clicked.connect(self._open_dialog)
        self.steps.valueChanged.connect(self._steps_changed)
        self.seed.valueChanged.connect(lambda _seed: self._ask())
        self.slider.valueChanged.connect(lambda _level: self._ask())
        self.denoise_button.clicked.connect(self.denoise_from_here)
        workspace.bridge.eventArrived.connect(self._event)

    # ------------------------------------------------------------------ the picture

    def take_canvas_picture(self) -> None:
        picture = self.workspace.document.picture()
        if picture is None:
            self.facts.setText("There is no picture on the canvas: open or generate one.")
            return
        self.set_picture(picture)

    def _open_dialog(self) -> None:
        suffixes = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self, "Open picture", "", f"Pictures ({suffixes})")
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> bool:
        opened = open_picture(path)
        if opened.image is None:
            self.facts.setText(opened.error)
            return False
        self.set_picture(opened.image)
        return True

    def set_picture(self, picture: Image.Image) -> None:
        """The picture to noise, cut to the latent grid (multiples of 8 pixels)."""
        w, h = picture.width - picture.width % 8, picture.height - picture.height % 8
        if w == 0 or h == 0:
            self.facts.setText("The picture is smaller than 8 pixels; choose a larger one.")
            return
        self.picture = picture.convert("RGB").crop((0, 0, w, h))
        self._pictures += 1
        self.denoise_button.setEnabled(True)
        self._ask()

    def restore(self, request: GenerationRequest, _units: object = ()) -> list[str]:
        """Reuse parameters: a forward-process picture's steps, seed and noise level."""
        f = request.forward
        if f is None:
            return []
        self.steps.setValue(request.steps)
        self.slider.setValue(f.level)
        seed = request.seed if request.seed is not None else self.seed.value()
        if seed > self.seed.maximum():
            return [f"The forward process's seed {seed} is beyond this panel's seeds."]
        self.seed.setValue(seed)
        return []

    # ------------------------------------------------------------------ preview jobs

    def _steps_changed(self, steps: int) -> None:
        fraction = self.slider.value() / max(1, self.slider.maximum())
        self.slider.blockSignals(True)
        self.slider.setRange(0, steps)
        self.slider.setValue(round(fraction * steps))
        self.slider.blockSignals(False)
        self._ask()

    def request(self, level: int, denoise: bool = False) -> GenerationRequest | None:
        """The forward-process request for `level` with the form's model and sampler."""
        if self.picture is None:
            return None
        return self.workspace.form.build_request(
            init_image=self.picture, seed=self.seed.value()
        ).with_changes(
            forward=ForwardProcess(level=level, denoise=denoise),
            steps=self.steps.value(),
            width=self.picture.width,
            height=self.picture.height,
            batch_size=1,
        )

    def _ask(self) -> None:
        if self.picture is None:
            return
        self._wanted = _Wanted(
            self._pictures, self.slider.value(), self.steps.value(), self.seed.value()
        )
        self._submit_wanted()

    def _submit_wanted(self) -> None:
        wanted = self._wanted
        if self.job is not None or wanted is None or wanted == self.shown:
            return  # one in flight: the newest position goes when it ends
        request = self.request(wanted.level)
        if request is None:
            return
        found = problems(request)
        if found:
            self.facts.setText("Check the input: " + "; ".join(found) + ".")
            return
        if not self.workspace.bridge.ready:
            self.facts.setText("The engine is still starting; move the slider again soon.")
            return
        self.job = self.workspace.bridge.submit(request)
        self._asked = wanted
        self.previews_submitted += 1

    def _event(self, event: Event) -> None:
        if self.job is None or event.job_id != self.job:
            return
        match event:
            case Finished(images=images, facts=facts):
                self.shown = self._asked
                self._show(images[0], facts)
            case Failed(message=message):
                self.shown = self._asked  # not again for the same position
                self.facts.setText(message)
            case Cancelled():
                pass
            case _:
                return
        self.job = None
        self._submit_wanted()

    def _show(self, image: Image.Image, facts: dict[str, float]) -> None:
        pixmap = QPixmap.fromImage(pil_to_qimage(image))
        side = max(VIEW_SIDE, min(self.view.width(), self.view.height()))
        self.view.setPixmap(
            pixmap.scaled(
                side, side, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )  # fmt: skip
        level, steps = self._asked.level if self._asked else 0, self.steps.value()
        a = facts.get("alpha_bar", 1.0)
        t = facts.get("t")
        where = f"t = {t:.0f}" if t is not None else "the picture itself"
        sigma = facts.get("sigma")
        if sigma is not None:  # a flow-matching model
            self.facts.setText(
                f"step {level} of {steps} · {where} · σ = {sigma:.4f}: "
                f"x_t = {1 - sigma:.3f}·x₀ + {sigma:.3f}·noise"
            )
            return
        self.facts.setText(
            f"step {level} of {steps} · {where} · ᾱ = {a:.4f}: "
            f"x_t = {a**0.5:.3f}·x₀ + {(1 - a) ** 0.5:.3f}·noise"
        )

    # ------------------------------------------------------------------ reverse

    def denoise_from_here(self) -> int | None:
        """An ordinary job: the reverse process from the noised latent the slider shows."""
        if self.picture is None:
            return None
        level = self.slider.value()
        if level == 0:
            self.facts.setText("At step 0 there is no noise to remove: drag the slider first.")
            return None
        return self.workspace.denoise_from(
            self.picture, level, self.steps.value(), self.seed.value()
        )

    def close_jobs(self) -> None:
        """Cancel a preview in flight (the window is closing)."""
        if self.job is not None:
            self.workspace.bridge.cancel(self.job)
            self.job = None
