"""Speed settings: per job (guidance cut-off, fast decode, deep cache: request fields
bound to the form) and for the engine (precision, backend: kept in QSettings, used when
the engine next starts, since the loaded model is already in its precision).

No torch here: the engine reads its settings through guiapp.app at start-up.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)

from engine.backends import BACKEND_NAMES
from engine.validation import MAX_DEEP_CACHE
from guiapp.settings import AppSettings
from guiapp.state import ViewModel
from guiapp.widgets.binding import bind

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
BACKENDS = BACKEND_NAMES


class SpeedPanel(QGroupBox):
    def __init__(self, form: ViewModel, settings: AppSettings, parent: QWidget | None = None):
        super().__init__("Speed", parent)
        self.setObjectName("speedPanel")
        self.settings = settings
        layout = QFormLayout(self)

        self.cutoff = QDoubleSpinBox(self)
        self.cutoff.setObjectName("guidanceCutoff")
        self.cutoff.setRange(0.0, 1.0)
        self.cutoff.setSingleStep(0.05)
        self.cutoff.setDecimals(2)
        self.cutoff.setToolTip(
            "Stop guidance after this fraction of the steps: the later steps run about twice "
            "as fast. 1.00 = off (guidance on every step)."
        )
        bind(form, "guidance_cutoff", self.cutoff)
        layout.addRow("Guidance cut-off", self.cutoff)

        self.fast_decode = QCheckBox("Fast decode (tiny autoencoder)", self)
        self.fast_decode.setObjectName("fastDecode")
        self.fast_decode.setToolTip(
            "Decode the picture with the tiny autoencoder (TAESD) when its weights are "
            "present: much faster, a little softer."
        )
        bind(form, "fast_decode", self.fast_decode)
        layout.addRow(self.fast_decode)

        self.deep_cache = QSpinBox(self)
        self.deep_cache.setObjectName("deepCache")
        self.deep_cache.setRange(1, MAX_DEEP_CACHE)
        self.deep_cache.setSpecialValueText("off")
        self.deep_cache.setToolTip(
            "Run the UNet's deep blocks only every N-th step and reuse them in between "
            "(DeepCache): 2 or 3 make each picture much faster and change it a little. "
            "Runs on torch or OpenVINO (not with torch.compile)."
        )
        bind(form, "deep_cache", self.deep_cache)
        layout.addRow("Deep cache every", self.deep_cache)

        self.precision = self._engine_choice("precision", PRECISIONS, settings.engine_dtype())
        self.precision.setToolTip(
            "auto: bfloat16 on CPUs with bfloat16 units (AMX, AVX512-BF16), float32 on other "
            "CPUs, float16 on GPUs. float32 is the safe choice if pictures come out black."
        )
        layout.addRow("Precision", self.precision)
        self.backend = self._engine_choice("backend", BACKENDS, settings.engine_backend())
        self.backend.setToolTip(
            "auto: OpenVINO where it is installed and measured faster for the model at "
            "that size, with its UNet in int8 where nncf is installed and int8 keeps the "
            "picture (checked once per size, after the first picture at that size). "
            "openvino: OpenVINO in bfloat16 only. openvino-int8: int8 whatever the check "
            "says, and the VAE decoder in int8 too (calibrated on the first picture's "
            "latents; faster, pictures change a little)."
        )
        layout.addRow("Backend", self.backend)
        self.note = QLabel("", self)
        self.note.setObjectName("speedNote")
        self.note.setWordWrap(True)
        layout.addRow(self.note)

    def _engine_choice(self, name: str, choices: tuple[str, ...], current: str) -> QComboBox:
        box = QComboBox(self)
        box.setObjectName(f"engine_{name}")
        box.addItems(list(choices))
        box.setCurrentText(current if current in choices else "auto")
        box.currentTextChanged.connect(lambda value: self._changed(name, value))
        return box

    def _changed(self, name: str, value: str) -> None:
        if name == "precision":
            self.settings.set_engine_dtype(value)
        else:
            self.settings.set_engine_backend(value)
        self.note.setText("Precision and backend apply when DiffusionDesk next starts.")
