"""The ControlNet dock: up to four units, each a model (a ControlNet or a T2I adapter,
told apart by the file's contents and named beside it), a control image, a
preprocessor, a weight and the part of the steps it acts on.

A unit's image comes from the canvas picture (at the moment Generate is pressed), from
a file, or from the sketch layer painted on the canvas ("Draw sketch" gives the brush to
that layer; white strokes on black, ready for a scribble ControlNet). "Show map" lays the
unit's preprocessed control map over the canvas as a layer. The units join every request
the window submits (Workspace.request_extras).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.api import ControlUnit, GenerationRequest, Preprocessor
from engine.control.adapter_keys import is_adapter_path
from engine.control.checks import MAX_UNITS, MAX_WEIGHT
from engine.control.metadata import CANVAS, SKETCH, UnitSetting
from engine.control.preprocess import control_map
from guiapp.imaging import array_to_qimage
from guiapp.layers import LayerItem, PaintLayer, plain_job, unit_size
from guiapp.widgets.canvas import Canvas

SOURCES = ("Canvas picture", "File", "Sketch layer")
PREPROCESSOR_LABELS = {
    Preprocessor.NONE: "none (already a map: depth, pose, edges)",
    Preprocessor.CANNY: "canny edges",
    Preprocessor.SOFT_EDGE: "soft edges",
    Preprocessor.LINEART: "line art",
    Preprocessor.SCRIBBLE: "scribble",
}
MAP_COLOR = (60, 230, 255)
MAP_PREVIEW_SIDE = 512  # the shown map is at most this large (the engine makes its own)


def _spin(low: float, high: float, value: float, step: float, parent: QWidget) -> QDoubleSpinBox:
    spin = QDoubleSpinBox(parent)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setValue(value)
    return spin


def _source_of(box: UnitBox) -> str:
    """The unit's source as the picture's record names it (ControlUnit.source)."""
    source = box.source.currentText()
    if source == "File":
        return str(Path(box.image_path.text().strip()).expanduser().resolve())
    return "sketch" if source == "Sketch layer" else "canvas"


class UnitBox(QGroupBox):
    """One ControlNet unit's settings."""

    removeRequested = Signal(object)
    mapRequested = Signal(object)

    def __init__(self, number: int, parent: QWidget) -> None:
        super().__init__(f"Unit {number}", parent)
        self.model = QLineEdit(self)
        self.model.setPlaceholderText("ControlNet or T2I adapter folder or file")
        self.kind = QLabel(self)  # "ControlNet" or "T2I adapter" once the model is found
        self.model.textChanged.connect(self._show_kind)
        browse = QToolButton(self)
        browse.setText("…")
        browse.setToolTip("Choose a ControlNet or T2I adapter file")
        browse.clicked.connect(self._choose_model)
        self.source = QComboBox(self)
        self.source.addItems(SOURCES)
        self.image_path = QLineEdit(self)
        self.image_path.setPlaceholderText("control image file (File source)")
        pick = QToolButton(self)
        pick.setText("…")
        pick.setToolTip("Choose the control image")
        pick.clicked.connect(self._choose_image)
        self.preprocessor = QComboBox(self)
        for kind, label in PREPROCESSOR_LABELS.items():
            self.preprocessor.addItem(label, kind.value)
        self.weight = _spin(0.0, MAX_WEIGHT, 1.0, 0.05, self)
        self.start = _spin(0.0, 1.0, 0.0, 0.05, self)
        self.end = _spin(0.0, 1.0, 1.0, 0.05, self)
        self.show_map = QPushButton("Show map", self)
        self.show_map.setCheckable(True)
        self.show_map.setToolTip("Lay this unit's control map over the canvas")
        self.show_map.toggled.connect(lambda _: self.mapRequested.emit(self))
        remove = QPushButton("Remove", self)
        remove.clicked.connect(lambda: self.removeRequested.emit(self))

        def line(*widgets: QWidget) -> QHBoxLayout:
            row = QHBoxLayout()
            for widget in widgets:
                row.addWidget(widget, 1 if isinstance(widget, QLineEdit) else 0)
            return row

        form = QFormLayout(self)
        form.addRow("Model", line(self.model, browse, self.kind))
        form.addRow("Image", line(self.source, self.image_path, pick))
        form.addRow("Preprocessor", self.preprocessor)
        form.addRow("Weight", self.weight)
        form.addRow("Start / end", line(self.start, self.end))
        form.addRow(line(self.show_map, remove))

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose a ControlNet or T2I adapter",
            "",
            "ControlNet or T2I adapter (*.safetensors *.pth)",
        )
        if path:
            self.model.setText(path)

    def _show_kind(self, text: str) -> None:
        """Name what the model is (from a header or a config, read at once: no torch);
        a name the engine looks up in the model folders stays unnamed here."""
        path = Path(text.strip()).expanduser()
        if not text.strip() or not path.exists():
            self.kind.setText("")
            return
        self.kind.setText("T2I adapter" if is_adapter_path(path) else "ControlNet")

    def _choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a control image", "", "Pictures (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if path:
            self.image_path.setText(path)
            self.source.setCurrentText("File")


class ControlDock(QWidget):
    """ControlNet units, a sketch layer to draw control scribbles, and map previews."""

    def __init__(self, canvas: Canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.document = canvas.document
        self.units: list[UnitBox] = []
        self.sketch = PaintLayer(self.document, "sketch", QColor(255, 255, 255))
        self._sketch_item = LayerItem(canvas.scene(), opacity=0.8)
        self._sketch_item.follow(self.sketch)
        self._map_item = LayerItem(canvas.scene(), opacity=0.9)
        self._map_item.show_image(None)
        self.error = ""  # the last unit problem, for the caller to show
        self.add_button = QPushButton("Add unit", self)
        self.add_button.clicked.connect(self.add_unit)
        self.draw_sketch = QCheckBox("Draw sketch", self)
        self.draw_sketch.setToolTip("The brush paints the sketch layer instead of the mask")
        self.draw_sketch.toggled.connect(self._sketching)
        clear = QPushButton("Clear sketch", self)
        clear.clicked.connect(self.sketch.clear)
        top = QHBoxLayout()
        for widget in (self.add_button, self.draw_sketch, clear):
            top.addWidget(widget)
        top.addStretch(1)
        self._units_box = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(self._units_box)
        layout.addStretch(1)

    def add_unit(self) -> UnitBox | None:
        if len(self.units) >= MAX_UNITS:
            return None
        box = UnitBox(len(self.units) + 1, self)
        box.removeRequested.connect(self.remove_unit)
        box.mapRequested.connect(self._show_map)
        self.units.append(box)
        self._units_box.addWidget(box)
        self.add_button.setEnabled(len(self.units) < MAX_UNITS)
        return box

    def remove_unit(self, box: UnitBox) -> None:
        if box.show_map.isChecked():
            self._map_item.show_image(None)
        self.units.remove(box)
        box.deleteLater()
        self.add_button.setEnabled(True)

    def _sketching(self, on: bool) -> None:
        self.canvas.paint_target = self.sketch if on else self.document

    def _picture_size(self) -> tuple[int, int]:
        image = self.document.image
        return (image.width(), image.height()) if image is not None else (128, 128)

    def source_image(self, box: UnitBox, size: tuple[int, int]) -> Image.Image | None:
        """The unit's picture before preprocessing; None (with self.error set) if missing."""
        source = box.source.currentText()
        if source == "Sketch layer":
            return self.sketch.drawing(size)
        if source == "File":
            path = Path(box.image_path.text().strip()).expanduser()
            try:
                with Image.open(path) as opened:
                    return opened.convert("RGB")
            except (OSError, ValueError):
                self.error = f"{box.title()}: {path} is not a picture that can be opened."
                return None
        picture = self.document.picture()
        if picture is None:
            self.error = f"{box.title()}: there is no canvas picture to use as control image."
        return picture

    def _show_map(self, box: UnitBox) -> None:
        for other in self.units:
            if other is not box and other.show_map.isChecked():
                other.show_map.blockSignals(True)
                other.show_map.setChecked(False)
                other.show_map.blockSignals(False)
        if not box.show_map.isChecked():
            self._map_item.show_image(None)
            return
        size = self._picture_size()
        image = self.source_image(box, size)
        if image is None:
            self._map_item.show_image(None)
            return
        scale = min(1.0, MAP_PREVIEW_SIDE / max(size))
        small = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
        shown = np.asarray(control_map(image, box.preprocessor.currentData(), small).convert("L"))
        # The map's bright strokes in the layer colour, its black see-through.
        rgba = np.empty((*shown.shape, 4), np.uint8)
        rgba[..., :3] = MAP_COLOR
        rgba[..., 3] = shown
        qimage = array_to_qimage(rgba)
        if small != size:
            qimage = qimage.scaled(*size)
        self._map_item.show_image(qimage)

    def control_units(self, size: tuple[int, int]) -> tuple[ControlUnit, ...] | None:
        """The units with their images; None (self.error says why) if one has no image."""
        self.error = ""
        units = []
        for box in self.units:
            image = self.source_image(box, size)
            if image is None:
                return None
            units.append(
                ControlUnit(
                    model=box.model.text().strip(),
                    image=image,
                    weight=box.weight.value(),
                    start=box.start.value(),
                    end=box.end.value(),
                    preprocessor=box.preprocessor.currentData(),
                    source=_source_of(box),
                )
            )
        return tuple(units)

    def restore(self, request: GenerationRequest, units: tuple[UnitSetting, ...]) -> list[str]:
        """Reuse parameters: the units a picture was made with replace the dock's (a picture
        without units leaves them). Returns a sentence for each image not at hand."""
        if not units:
            return []
        for old in list(self.units):
            self.remove_unit(old)
        notes = []
        for n, unit in enumerate(units[:MAX_UNITS], 1):
            box = self.add_unit()
            assert box is not None
            box.model.setText(unit.model)
            box.weight.setValue(unit.weight)
            box.start.setValue(unit.start)
            box.end.setValue(unit.end)
            box.preprocessor.setCurrentIndex(max(0, box.preprocessor.findData(unit.preprocessor)))
            notes += self._restore_source(n, box, unit)
        return notes

    def _restore_source(self, n: int, box: UnitBox, unit: UnitSetting) -> list[str]:
        if unit.source == SKETCH:
            box.source.setCurrentText("Sketch layer")
            if unit.image is None:
                return [f"Unit {n}'s sketch is not stored in the picture: draw it again."]
            self.sketch.set_mask(unit.image, "Reused sketch")
            return []
        if unit.source in (CANVAS, ""):
            box.source.setCurrentText("Canvas picture")
            if unit.source:
                return []
            return [f"Unit {n}'s control image is not named in the picture: the canvas "
                    "picture stands in for it."]  # fmt: skip
        box.source.setCurrentText("File")
        box.image_path.setText(unit.source)
        if Path(unit.source).is_file():
            return []
        return [f"Unit {n}'s control image {unit.source} no longer exists: choose another "
                "picture for it."]  # fmt: skip

    def extend(self, request: GenerationRequest) -> GenerationRequest:
        """The request with this dock's units (see plain_job)."""
        if not self.units or not plain_job(request):
            return request
        units = self.control_units(unit_size(request))
        if units is None:
            raise ValueError(self.error)
        return request.with_changes(controls=units)
