"""The parameter panel's "Hires fix" and "Upscale" groups.

Hires fix: a checkable group (scale, upscaler, steps, denoising strength) that makes every
text-to-image job a two-pass hires job. Upscale: the settings the "Upscale" action (on the
canvas picture or a history entry) uses. Every limit comes from engine.upscale_options.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from engine.schedulers import MAX_STEPS
from engine.upscale_options import MAX_SCALE, MIN_SCALE, model_names
from guiapp.state import ViewModel
from guiapp.upscale_form import hires_upscaler_names, upscaler_names
from guiapp.widgets.binding import bind, follow


def _scale_spin(parent: QWidget, name: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox(parent)
    spin.setObjectName(name)
    spin.setRange(MIN_SCALE, MAX_SCALE)
    spin.setSingleStep(0.25)
    spin.setDecimals(2)
    spin.setSuffix("×")
    return spin


def _upscaler_combo(parent: QWidget, name: str, tip: str) -> QComboBox:
    combo = QComboBox(parent)
    combo.setObjectName(name)
    combo.setEditable(True)  # a path to an upscaler model file works too
    combo.setToolTip(tip)
    return combo


def _fill(combo: QComboBox, names: list[str], current: str) -> None:
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    combo.setCurrentText(current)
    combo.blockSignals(False)


class HiresGroup(QGroupBox):
    """Hires fix settings; checking the group turns the hires fix on."""

    def __init__(self, form: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__("Hires fix", parent)
        self.setObjectName("hiresGroup")
        self.setCheckable(True)
        self.setToolTip(
            "Make the picture at its size, enlarge it, then repaint it at the larger size "
            "(AUTOMATIC1111's hires fix): more detail than generating large at once"
        )
        layout = QFormLayout(self)
        self.scale = _scale_spin(self, "hiresScale")
        self.upscaler = _upscaler_combo(
            self, "hiresUpscaler", "Latent upscalers enlarge the latents; Lanczos or an "
            "upscaler model (upscale_models folder) enlarge the picture",
        )  # fmt: skip
        self.steps = QSpinBox(self)
        self.steps.setObjectName("hiresSteps")
        self.steps.setRange(0, MAX_STEPS)
        self.steps.setSpecialValueText("same as Steps")
        self.denoise = QDoubleSpinBox(self)
        self.denoise.setObjectName("hiresDenoise")
        self.denoise.setRange(0.01, 1.0)
        self.denoise.setSingleStep(0.05)
        self.denoise.setToolTip("How much the second pass repaints (A1111's denoising strength)")
        self.prompt = QLineEdit(self)
        self.prompt.setObjectName("hiresPrompt")
        self.prompt.setPlaceholderText("the prompt's")
        self.prompt.setToolTip("A prompt of its own for the second pass (empty: the prompt)")
        layout.addRow("Upscale by", self.scale)
        layout.addRow("Upscaler", self.upscaler)
        layout.addRow("Hires steps", self.steps)
        layout.addRow("Denoising", self.denoise)
        layout.addRow("Hires prompt", self.prompt)
        bind(form, "hires_prompt", self.prompt)
        bind(form, "hires_enabled", self)
        bind(form, "hires_scale", self.scale)
        bind(form, "hires_steps", self.steps)
        bind(form, "hires_denoise", self.denoise)
        follow(
            form,
            "upscaler_choices",
            lambda models: _fill(self.upscaler, hires_upscaler_names(models), form.hires_upscaler),
        )
        bind(form, "hires_upscaler", self.upscaler, from_widget=lambda text: text.strip())


class UpscaleGroup(QGroupBox):
    """What the Upscale action does with a finished picture."""

    def __init__(self, form: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__("Upscale", parent)
        self.setObjectName("upscaleGroup")
        self.setToolTip("Settings of Run ▸ Upscale picture and the history's Upscale button")
        layout = QFormLayout(self)
        self.scale = _scale_spin(self, "upscaleScale")
        self.upscaler = _upscaler_combo(
            self, "upscaleUpscaler", "Lanczos, or an upscaler model (ESRGAN family) from the "
            "upscale_models folder",
        )  # fmt: skip
        self.sd_tiles = QCheckBox("Repaint in tiles (SD upscale)", self)
        self.sd_tiles.setObjectName("upscaleSdTiles")
        self.sd_tiles.setToolTip(
            "After enlarging, repaint the picture tile by tile with the prompt, steps and "
            "Strength: adds detail, works for pictures larger than fit in memory"
        )
        layout.addRow("Upscale by", self.scale)
        layout.addRow("Upscaler", self.upscaler)
        layout.addRow("", self.sd_tiles)
        bind(form, "upscale_scale", self.scale)
        bind(form, "upscale_sd_tiles", self.sd_tiles)
        follow(
            form,
            "upscaler_choices",
            lambda models: _fill(self.upscaler, upscaler_names(models), form.upscale_upscaler),
        )
        bind(form, "upscale_upscaler", self.upscaler, from_widget=lambda text: text.strip())


def add_hires_rows(panel: QWidget, form: ViewModel) -> tuple[HiresGroup, UpscaleGroup]:
    """The two groups at the end of the parameter panel's form layout."""
    hires, upscale = HiresGroup(form, panel), UpscaleGroup(form, panel)
    layout = panel.layout()
    layout.addRow(hires)  # type: ignore[union-attr]
    layout.addRow(upscale)  # type: ignore[union-attr]
    follow(
        form,
        "model_folders",
        lambda folders: setattr(form, "upscaler_choices", model_names(folders)),
    )
    return hires, upscale
