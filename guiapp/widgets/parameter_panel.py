"""Steps, guidance, seed, size, batch, scheduler, model and image-to-image strength.

One row builder per row; every control is bound to a view-model property with
guiapp.widgets.binding.bind, and every limit comes from engine.validation, so the form
never offers what the engine refuses (LCM stops at 50 steps). To add a field: declare
a Property in guiapp/state.py and add a row here (or in a panel of your own).
"""

from __future__ import annotations

import random

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QWidget,
)

from engine.api import STARTER_MODEL, GuidanceKind
from engine.schedulers import NAMES as SCHEDULER_NAMES
from engine.validation import (
    MAX_BATCH,
    MAX_GUIDANCE,
    MAX_MASK_BLUR,
    MAX_SIDE,
    max_steps_for,
)
from guiapp import family_form
from guiapp.state import ViewModel
from guiapp.widgets.addons_dock import add_form_rows
from guiapp.widgets.binding import bind, follow
from guiapp.widgets.buttons import tool_button
from guiapp.widgets.hires_rows import add_hires_rows
from guiapp.widgets.seed_edit import SeedEdit

DICE_SEEDS = 2**32 - 1  # what the dice rolls (and the engine picks)
SIZE_STEP = 8
SLIDER_STEPS = 150  # the steps slider's reach; the box beside it goes to the scheduler's limit


class ParameterPanel(QWidget):
    """The generation parameters; every control writes to and follows the view-model."""

    reuseLastSeedRequested = Signal()

    def __init__(self, model: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("parameterPanel")
        self._model = model
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self._add_steps_row()
        self._add_guidance_row()
        self._add_seed_row()
        self._add_size_row()
        self._add_batch_row()
        self._add_scheduler_row()
        self._add_model_row()
        self._add_inpaint_rows()
        add_form_rows(self, model)  # clip skip and VAE (guiapp/widgets/addons_dock.py)
        self.hires_group, self.upscale_group = add_hires_rows(self, model)
        model.signal("family").connect(self._fit_family)
        model.signal("variant").connect(self._fit_family)
        self._fit_family()

    def _row(self, label: str, *widgets: QWidget, stretch: tuple[int, ...] = (1,)) -> None:
        """A form row of one widget, or of several side by side (stretch factors in order,
        0 for the rest)."""
        if len(widgets) == 1:
            self.form.addRow(label, widgets[0])
            return
        holder = QWidget(self)  # parented: a parentless row layout leaves its widgets Python-owned
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        for index, widget in enumerate(widgets):
            row.addWidget(widget, stretch[index] if index < len(stretch) else 0)
        self.form.addRow(label, holder)

    def _add_steps_row(self) -> None:
        self.steps_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.steps_spin = QSpinBox(self)
        self.steps_spin.setObjectName("steps")
        self.steps_spin.setToolTip("Denoising steps: more is slower and usually finer.")
        self._limit_steps(self._model.scheduler)
        self._row("Steps", self.steps_slider, self.steps_spin)
        bind(self._model, "steps", self.steps_spin)
        bind(self._model, "steps", self.steps_slider)
        self._model.signal("scheduler").connect(self._limit_steps)

    def _limit_steps(self, scheduler: str) -> None:
        most = max_steps_for(scheduler)
        self.steps_spin.setRange(1, most)
        self.steps_slider.setRange(1, min(SLIDER_STEPS, most))
        self.steps_spin.setToolTip(
            f"Denoising steps: more is slower and usually finer (at most {most} for {scheduler})."
        )

    def _add_guidance_row(self) -> None:
        self.guidance_spin = QDoubleSpinBox(self)
        self.guidance_spin.setObjectName("guidance")
        self.guidance_spin.setRange(0.0, MAX_GUIDANCE)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(1)
        self.guidance_spin.setToolTip("Guidance (CFG) scale: how strictly to follow the prompt.")
        self._row("Guidance", self.guidance_spin)
        bind(self._model, "guidance_scale", self.guidance_spin)
        self.true_cfg_spin = QDoubleSpinBox(self)
        self.true_cfg_spin.setObjectName("trueCfg")
        self.true_cfg_spin.setRange(1.0, MAX_GUIDANCE)
        self.true_cfg_spin.setSingleStep(0.5)
        self.true_cfg_spin.setDecimals(1)
        self.true_cfg_spin.setToolTip(
            "True CFG scale with the negative prompt, beside the distilled guidance: 1 is "
            "off; above 1 each step runs the model twice."
        )
        self._row("True CFG", self.true_cfg_spin)
        bind(self._model, "true_cfg_scale", self.true_cfg_spin)

    def _add_seed_row(self) -> None:
        self.seed_spin = SeedEdit(self)
        self.seed_spin.setObjectName("seed")
        self.seed_spin.setToolTip("Seed: the same seed and parameters give the same picture.")
        self.random_check = QCheckBox("Random", self)
        self.random_check.setObjectName("randomSeed")
        self.random_check.setToolTip("Pick a new random seed for every job.")
        self.dice_button = tool_button(
            self, "dice", "Roll a random seed now", "diceButton", self.roll_seed
        )
        self.reuse_seed_button = tool_button(
            self, "recycle", "Reuse the last seed", "reuseSeedButton"
        )
        self.reuse_seed_button.clicked.connect(self.reuseLastSeedRequested)
        self._row(
            "Seed", self.seed_spin, self.dice_button, self.reuse_seed_button, self.random_check
        )
        bind(self._model, "seed", self.seed_spin)
        bind(self._model, "random_seed", self.random_check)
        follow(self._model, "random_seed", lambda on: self.seed_spin.setEnabled(not on))

    def _add_size_row(self) -> None:
        self.width_spin = QSpinBox(self)
        self.width_spin.setObjectName("width")
        self.height_spin = QSpinBox(self)
        self.height_spin.setObjectName("height")
        for spin in (self.width_spin, self.height_spin):
            spin.setRange(SIZE_STEP, MAX_SIDE)
            spin.setSingleStep(SIZE_STEP)
            spin.setToolTip("Picture size in pixels; a multiple of 8.")
        self._row("Size", self.width_spin, QLabel("×", self), self.height_spin, stretch=(1, 0, 1))
        bind(self._model, "width", self.width_spin)
        bind(self._model, "height", self.height_spin)

    def _add_batch_row(self) -> None:
        self.batch_spin = QSpinBox(self)
        self.batch_spin.setObjectName("batch")
        self.batch_spin.setRange(1, MAX_BATCH)
        self.batch_spin.setToolTip("Pictures per job (seeds seed, seed+1, …)")
        self._row("Batch", self.batch_spin)
        bind(self._model, "batch_size", self.batch_spin)

    def _add_scheduler_row(self) -> None:
        self.scheduler_combo = QComboBox(self)
        self.scheduler_combo.setObjectName("scheduler")
        self.scheduler_combo.addItems(list(SCHEDULER_NAMES))
        self.scheduler_combo.setToolTip("Sampler (the scheduler that takes the steps)")
        self._row("Sampler", self.scheduler_combo)
        bind(self._model, "scheduler", self.scheduler_combo)

    def _add_model_row(self) -> None:
        self.model_combo = QComboBox(self)
        self.model_combo.setObjectName("model")
        self.model_combo.setEditable(True)
        self.model_combo.addItem(STARTER_MODEL)
        self.model_combo.setToolTip(
            "Model: 'starter' (bundled), a diffusers folder, a .safetensors file or a hub id"
        )
        self.open_folder_button = tool_button(
            self, "folder", "Open a diffusers model folder", on_click=self._choose_folder
        )
        self.open_file_button = tool_button(
            self, "file", "Open a single-file .safetensors checkpoint", on_click=self._choose_file
        )
        self._row("Model", self.model_combo, self.open_folder_button, self.open_file_button)
        follow(self._model, "model", self._list_model)
        bind(
            self._model,
            "model",
            self.model_combo,
            from_widget=lambda text: text.strip() or STARTER_MODEL,
        )

    def _add_inpaint_rows(self) -> None:
        self.strength_spin = QDoubleSpinBox(self)
        self.strength_spin.setObjectName("strength")
        self.strength_spin.setRange(0.01, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setToolTip(
            "Image-to-image and inpaint: how much of the picture is repainted (1 = all)"
        )
        self._row("Strength", self.strength_spin)
        bind(self._model, "strength", self.strength_spin)

        self.blur_spin = QSpinBox(self)
        self.blur_spin.setObjectName("maskBlur")
        self.blur_spin.setRange(0, MAX_MASK_BLUR)
        self.blur_spin.setToolTip("Inpaint: pixels of feathering at the mask's edge")
        self._row("Mask blur", self.blur_spin)
        bind(self._model, "mask_blur", self.blur_spin)

        self.only_masked_check = QCheckBox("Only masked area", self)
        self.only_masked_check.setToolTip(
            "Inpaint: work on the masked region (plus padding) at full resolution"
        )
        self._row("", self.only_masked_check)
        bind(self._model, "inpaint_only_masked", self.only_masked_check)

    def _fit_family(self, *_: object) -> None:
        """Offer what the model's family uses (guiapp/family_form.py)."""
        kind = family_form.guidance_kind(self._model)
        self.form.setRowVisible(self.guidance_spin, kind is not GuidanceKind.NONE)
        self.form.setRowVisible(self.true_cfg_spin, family_form.true_cfg_offered(self._model))
        label = self.form.labelForField(self.guidance_spin)
        if isinstance(label, QLabel):
            label.setText(family_form.GUIDANCE_LABELS.get(kind, "Guidance"))
        self.guidance_spin.setToolTip(family_form.GUIDANCE_TIPS.get(kind, ""))
        names = family_form.samplers(self._model)
        combo = self.scheduler_combo
        if tuple(combo.itemText(i) for i in range(combo.count())) != names:
            with QSignalBlocker(combo):  # the view-model keeps its sampler meanwhile
                combo.clear()
                combo.addItems(list(names))
                combo.setCurrentText(self._model.scheduler)
        grid = family_form.size_step(self._model)
        for spin in (self.width_spin, self.height_spin):
            spin.setSingleStep(grid)
            spin.setToolTip(f"Picture size in pixels; a multiple of {grid}.")

    def _list_model(self, name: str) -> None:
        """A model chosen elsewhere (a file, reused parameters) joins the list."""
        if name and self.model_combo.findText(name) < 0:
            self.model_combo.addItem(name)

    def roll_seed(self) -> None:
        self._model.seed = random.randint(0, DICE_SEEDS)
        self._model.random_seed = False

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a diffusers model folder")
        if folder:
            self._model.model = folder

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a checkpoint",
            "",
            "Checkpoints and transformer files (*.safetensors *.sft *.gguf *.ckpt *.pt *.pth)",
        )
        if path:
            self._model.model = path
