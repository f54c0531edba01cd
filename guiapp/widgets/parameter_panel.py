"""Steps, guidance, seed, size, batch, scheduler, model and image-to-image strength."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
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
    QToolButton,
    QWidget,
)

from engine.api import STARTER_MODEL, SchedulerName
from guiapp.icons import icon
from guiapp.state import ViewModel

MAX_SEED = 2**32 - 1  # what the dice rolls (and the engine picks)
LARGEST_SEED = 2**53 - 1  # what the box takes: seeds from other tools can be larger
SIZE_STEP = 8


class ParameterPanel(QWidget):
    """The generation parameters; every control writes to and follows the view-model."""

    reuseLastSeedRequested = Signal()

    def __init__(self, model: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("parameterPanel")
        self._model = model
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)

        # steps: slider + number
        self.steps_slider = QSlider(Qt.Orientation.Horizontal)
        self.steps_slider.setRange(1, 150)
        self.steps_spin = QSpinBox()
        self.steps_spin.setObjectName("steps")
        self.steps_spin.setRange(1, 150)
        self.steps_spin.setToolTip("Denoising steps: more is slower and usually finer.")
        row = QHBoxLayout()
        row.addWidget(self.steps_slider, 1)
        row.addWidget(self.steps_spin)
        form.addRow("Steps", row)
        self.steps_slider.valueChanged.connect(self.steps_spin.setValue)
        self.steps_spin.valueChanged.connect(self.steps_slider.setValue)
        self._bind_spin(self.steps_spin, "steps")

        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setObjectName("guidance")
        self.guidance_spin.setRange(0.0, 30.0)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(1)
        self.guidance_spin.setToolTip("Guidance (CFG) scale: how strictly to follow the prompt.")
        form.addRow("Guidance", self.guidance_spin)
        self._bind_spin(self.guidance_spin, "guidance_scale")

        # seed: number, dice, reuse last, random toggle
        self.seed_spin = QDoubleSpinBox()  # seeds go past QSpinBox's 32-bit int
        self.seed_spin.setObjectName("seed")
        self.seed_spin.setDecimals(0)
        self.seed_spin.setRange(0, LARGEST_SEED)
        self.seed_spin.setToolTip("Seed: the same seed and parameters give the same picture.")
        self.random_check = QCheckBox("Random")
        self.random_check.setObjectName("randomSeed")
        self.random_check.setToolTip("Pick a new random seed for every job.")
        self.dice_button = QToolButton()
        self.dice_button.setObjectName("diceButton")
        self.dice_button.setIcon(icon("dice"))
        self.dice_button.setToolTip("Roll a random seed now")
        self.dice_button.clicked.connect(self.roll_seed)
        self.reuse_seed_button = QToolButton()
        self.reuse_seed_button.setObjectName("reuseSeedButton")
        self.reuse_seed_button.setIcon(icon("recycle"))
        self.reuse_seed_button.setToolTip("Reuse the last seed")
        self.reuse_seed_button.clicked.connect(self.reuseLastSeedRequested)
        row = QHBoxLayout()
        row.addWidget(self.seed_spin, 1)
        row.addWidget(self.dice_button)
        row.addWidget(self.reuse_seed_button)
        row.addWidget(self.random_check)
        form.addRow("Seed", row)
        self._bind_spin(self.seed_spin, "seed")
        self._bind_check(self.random_check, "random_seed")
        self.random_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(not model.random_seed)

        self.width_spin = QSpinBox()
        self.width_spin.setObjectName("width")
        self.height_spin = QSpinBox()
        self.height_spin.setObjectName("height")
        for spin in (self.width_spin, self.height_spin):
            spin.setRange(8, 4096)
            spin.setSingleStep(SIZE_STEP)
            spin.setToolTip("Picture size in pixels; a multiple of 8.")
        row = QHBoxLayout()
        row.addWidget(self.width_spin)
        row.addWidget(self._label("×"))
        row.addWidget(self.height_spin)
        form.addRow("Size", row)
        self._bind_spin(self.width_spin, "width")
        self._bind_spin(self.height_spin, "height")

        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("batch")
        self.batch_spin.setRange(1, 16)
        self.batch_spin.setToolTip("Pictures per job (seeds seed, seed+1, …)")
        form.addRow("Batch", self.batch_spin)
        self._bind_spin(self.batch_spin, "batch_size")

        self.scheduler_combo = QComboBox()
        self.scheduler_combo.setObjectName("scheduler")
        self.scheduler_combo.addItems([s.value for s in SchedulerName])
        self.scheduler_combo.setToolTip("Sampler")
        form.addRow("Sampler", self.scheduler_combo)
        self.scheduler_combo.setCurrentText(model.scheduler)
        self.scheduler_combo.currentTextChanged.connect(
            lambda text: setattr(self._model, "scheduler", text)
        )
        model.schedulerChanged.connect(self.scheduler_combo.setCurrentText)

        self.model_combo = QComboBox()
        self.model_combo.setObjectName("model")
        self.model_combo.setEditable(True)
        self.model_combo.addItem(STARTER_MODEL)
        self.model_combo.setToolTip(
            "Model: 'starter' (bundled), a diffusers folder, a .safetensors file or a hub id"
        )
        self.open_folder_button = QToolButton()
        self.open_folder_button.setIcon(icon("folder"))
        self.open_folder_button.setToolTip("Open a diffusers model folder")
        self.open_folder_button.clicked.connect(self._choose_folder)
        self.open_file_button = QToolButton()
        self.open_file_button.setIcon(icon("file"))
        self.open_file_button.setToolTip("Open a single-file .safetensors checkpoint")
        self.open_file_button.clicked.connect(self._choose_file)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.open_folder_button)
        row.addWidget(self.open_file_button)
        form.addRow("Model", row)
        self.model_combo.setCurrentText(model.model)
        self.model_combo.currentTextChanged.connect(
            lambda text: setattr(self._model, "model", text.strip() or STARTER_MODEL)
        )
        model.modelChanged.connect(self._show_model)

        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setObjectName("strength")
        self.strength_spin.setRange(0.01, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setToolTip(
            "Image-to-image and inpaint: how much of the picture is repainted (1 = all)"
        )
        form.addRow("Strength", self.strength_spin)
        self._bind_spin(self.strength_spin, "strength")

        self.blur_spin = QSpinBox()
        self.blur_spin.setObjectName("maskBlur")
        self.blur_spin.setRange(0, 64)
        self.blur_spin.setToolTip("Inpaint: pixels of feathering at the mask's edge")
        form.addRow("Mask blur", self.blur_spin)
        self._bind_spin(self.blur_spin, "mask_blur")

        self.only_masked_check = QCheckBox("Only masked area")
        self.only_masked_check.setToolTip(
            "Inpaint: work on the masked region (plus padding) at full resolution"
        )
        form.addRow("", self.only_masked_check)
        self._bind_check(self.only_masked_check, "inpaint_only_masked")

    @staticmethod
    def _label(text: str) -> QWidget:
        return QLabel(text)

    def _bind_spin(self, spin: QSpinBox | QDoubleSpinBox, name: str) -> None:
        spin.setValue(getattr(self._model, name))
        spin.valueChanged.connect(lambda value: setattr(self._model, name, value))
        getattr(self._model, f"{name}Changed").connect(spin.setValue)

    def _bind_check(self, check: QCheckBox, name: str) -> None:
        check.setChecked(getattr(self._model, name))
        check.toggled.connect(lambda on: setattr(self._model, name, on))
        getattr(self._model, f"{name}Changed").connect(check.setChecked)

    def _show_model(self, text: str) -> None:
        if self.model_combo.currentText() != text:
            if self.model_combo.findText(text) < 0:
                self.model_combo.addItem(text)
            self.model_combo.setCurrentText(text)

    def roll_seed(self) -> None:
        self._model.seed = random.randint(0, MAX_SEED)
        self._model.random_seed = False

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a diffusers model folder")
        if folder:
            self._model.model = folder

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a checkpoint", "", "Checkpoints (*.safetensors *.ckpt *.pt)"
        )
        if path:
            self._model.model = path
