"""The Expand canvas dialog: how many pixels to add on each side, what the new area holds
for the model, the seam band, and "piece by piece" for pictures larger than the model's
size. It only collects an engine.api.Expand; the workspace builds and submits the job."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from engine.api import Expand, OutpaintFill
from engine.outpaint import MAX_BAND, SIDES
from engine.validation import MAX_SIDE

FILL_LABELS = {
    OutpaintFill.EDGE: "Edge colours stretched",
    OutpaintFill.BLUR: "Blurred stretch",
    OutpaintFill.NOISE: "Noise",
}


@dataclass(frozen=True)
class ExpandChoice:
    expand: Expand
    piece_by_piece: bool
    strength: float


def _pixels(parent: QWidget, value: int, top: int = MAX_SIDE // 2) -> QSpinBox:
    box = QSpinBox(parent)
    box.setRange(0, top)
    box.setSingleStep(8)
    box.setSuffix(" px")
    box.setValue(value)
    return box


class ExpandDialog(QDialog):
    """Ask for the sides; `choice()` is the answer once accepted."""

    def __init__(self, picture_size: tuple[int, int] | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Expand canvas")
        self.setObjectName("expandDialog")
        self._size = picture_size
        form = QFormLayout(self)
        self.all_around = _pixels(self, 0)
        self.all_around.setToolTip("Set every side at once")
        form.addRow("All around", self.all_around)
        self.sides: dict[str, QSpinBox] = {}
        for side in SIDES:
            self.sides[side] = _pixels(self, 128 if side == "right" else 0)
            self.sides[side].setObjectName(f"expand_{side}")
            form.addRow(side.capitalize(), self.sides[side])
            self.sides[side].valueChanged.connect(self._show_size)
        self.all_around.valueChanged.connect(self._set_all)
        self.fill = QComboBox(self)
        for fill, label in FILL_LABELS.items():
            self.fill.addItem(label, fill.value)
        self.fill.setCurrentIndex(self.fill.findData(Expand.fill))
        self.fill.setToolTip("What the new area holds before the model paints it")
        form.addRow("New area starts as", self.fill)
        self.band = _pixels(self, Expand.band, MAX_BAND)
        self.band.setSingleStep(4)
        self.band.setToolTip(
            "Pixels of the new area next to the picture over which the painting is blended "
            "toward the picture's colours; the picture itself is never changed"
        )
        form.addRow("Seam band", self.band)
        self.strength = QDoubleSpinBox(self)
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(1.0)
        self.strength.setToolTip("1.0 paints the new area from noise; lower keeps more of the fill")
        form.addRow("Strength", self.strength)
        self.pieces = QCheckBox("Piece by piece (only masked area)", self)
        self.pieces.setToolTip(
            "Paint the new strip in overlapping crops at the piece size: lets a 512 px "
            "model extend a much larger picture"
        )
        self.piece = _pixels(self, Expand.tile, MAX_SIDE)
        self.piece.setSingleStep(64)
        self.piece.setEnabled(False)
        self.pieces.toggled.connect(self.piece.setEnabled)
        form.addRow(self.pieces)
        form.addRow("Piece size", self.piece)
        self.size_label = QLabel(self)
        self.size_label.setObjectName("expandedSize")
        form.addRow("New size", self.size_label)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Expand")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._show_size()

    def _set_all(self, value: int) -> None:
        for box in self.sides.values():
            box.setValue(value)

    def _show_size(self) -> None:
        if self._size is None:
            self.size_label.setText("open or generate a picture first")
            return
        e = self.choice().expand
        width = self._size[0] + e.left + e.right
        height = self._size[1] + e.top + e.bottom
        self.size_label.setText(f"{self._size[0]}x{self._size[1]} → {width}x{height}")

    def set_choice(self, expand: Expand, piece_by_piece: bool, strength: float) -> None:
        """Show an expansion (a reused picture's)."""
        for side, box in self.sides.items():
            box.setValue(getattr(expand, side))
        self.fill.setCurrentIndex(max(0, self.fill.findData(expand.fill)))
        self.band.setValue(expand.band)
        self.piece.setValue(expand.tile)
        self.pieces.setChecked(piece_by_piece)
        self.strength.setValue(strength)

    def choice(self) -> ExpandChoice:
        sides = {side: box.value() for side, box in self.sides.items()}
        expand = Expand(
            **sides, fill=str(self.fill.currentData()), band=self.band.value(),
            tile=self.piece.value(),
        )  # fmt: skip
        return ExpandChoice(expand, self.pieces.isChecked(), self.strength.value())
