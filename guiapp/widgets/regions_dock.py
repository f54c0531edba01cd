"""The Regions dock: regional prompts painted on the canvas, each with its own prompt.

Each region is a PaintLayer in its own colour with a prompt; "Paint" makes the canvas
brush paint into that region (the "Inpaint mask" choice gives the brush back to the
mask). Strokes share the document's undo stack. The form's prompt is the base prompt;
the regions join every request the window submits (Workspace.request_extras).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.api import GenerationRequest, RegionPrompt
from engine.control.checks import MAX_REGIONS
from guiapp.layers import LayerItem, PaintLayer, plain_job, unit_size
from guiapp.widgets.canvas import Canvas

COLORS = ("#3c8cff", "#ff9b2f", "#3cd27a", "#c85aff", "#ffe14b", "#ff5aa0", "#5ae1e1", "#a0a0a0")


class RegionRow(QWidget):
    """A region's colour, prompt, paint choice, quick halves and remove button."""

    removeRequested = Signal(object)

    def __init__(self, layer: PaintLayer, group: QButtonGroup, parent: QWidget) -> None:
        super().__init__(parent)
        self.layer = layer
        swatch = QLabel(self)
        swatch.setFixedSize(14, 14)
        swatch.setStyleSheet(f"background: {layer.color.name()}; border-radius: 3px;")
        self.prompt = QLineEdit(self)
        self.prompt.setPlaceholderText(f"what belongs in {layer.name}")
        self.prompt.setMinimumWidth(140)
        self.paint = QRadioButton("Paint", self)
        self.paint.setToolTip(f"The brush paints {layer.name} (the eraser erases it)")
        group.addButton(self.paint)
        self.left = QToolButton(self)
        self.left.setText("◧")
        self.left.setToolTip("Fill the left half")
        self.left.clicked.connect(lambda: layer.fill_box(0.0, 0.0, 0.5, 1.0))
        self.right = QToolButton(self)
        self.right.setText("◨")
        self.right.setToolTip("Fill the right half")
        self.right.clicked.connect(lambda: layer.fill_box(0.5, 0.0, 1.0, 1.0))
        clear = QToolButton(self)
        clear.setText("⌫")
        clear.setToolTip(f"Clear {layer.name}")
        clear.clicked.connect(layer.clear)
        remove = QToolButton(self)
        remove.setText("✕")
        remove.setToolTip(f"Remove {layer.name}")
        remove.clicked.connect(lambda: self.removeRequested.emit(self))
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 0, 2, 0)
        for widget, stretch in ((swatch, 0), (self.prompt, 1), (self.paint, 0)):
            row.addWidget(widget, stretch)
        for button in (self.left, self.right, clear, remove):
            row.addWidget(button)


class RegionsDock(QWidget):
    """Add regions, give each a prompt, paint each on the canvas."""

    def __init__(self, canvas: Canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.document = canvas.document
        self.rows: list[RegionRow] = []
        self._items: dict[PaintLayer, LayerItem] = {}
        self._count = 0
        self.group = QButtonGroup(self)
        self.mask_choice = QRadioButton("Inpaint mask", self)
        self.mask_choice.setToolTip("The brush paints the inpaint mask")
        self.mask_choice.setChecked(True)
        self.group.addButton(self.mask_choice)
        self.group.buttonToggled.connect(self._choose_target)
        self.add_button = QPushButton("Add region", self)
        self.add_button.clicked.connect(self.add_region)
        note = QLabel(
            "The prompt box is the base prompt (everywhere); each region's prompt acts "
            "only where its colour is painted.",
            self,
        )
        note.setWordWrap(True)
        note.setObjectName("hint")
        self._rows_box = QVBoxLayout()
        top = QHBoxLayout()
        top.addWidget(self.add_button)
        top.addWidget(self.mask_choice)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(note)
        layout.addLayout(self._rows_box)
        layout.addStretch(1)
        self.document.imageChanged.connect(self._refresh_items)

    def add_region(self) -> RegionRow | None:
        if len(self.rows) >= MAX_REGIONS:
            return None
        self._count += 1
        color = QColor(COLORS[(self._count - 1) % len(COLORS)])
        color.setAlpha(255)
        layer = PaintLayer(self.document, f"region {self._count}", color)
        row = RegionRow(layer, self.group, self)
        row.removeRequested.connect(self.remove_region)
        self.rows.append(row)
        self._rows_box.addWidget(row)
        item = LayerItem(self.canvas.scene(), opacity=0.35)
        item.follow(layer)
        self._items[layer] = item
        row.paint.setChecked(True)
        self.add_button.setEnabled(len(self.rows) < MAX_REGIONS)
        return row

    def remove_region(self, row: RegionRow) -> None:
        if row.paint.isChecked():
            self.mask_choice.setChecked(True)
        self.group.removeButton(row.paint)
        self.rows.remove(row)
        item = self._items.pop(row.layer)
        self.canvas.scene().removeItem(item)
        row.deleteLater()
        self.add_button.setEnabled(True)

    def _choose_target(self) -> None:
        chosen = next((r for r in self.rows if r.paint.isChecked()), None)
        self.canvas.paint_target = chosen.layer if chosen is not None else self.document

    def _refresh_items(self) -> None:
        for layer, item in self._items.items():
            item.show_image(layer.image)

    def regions(self, size: tuple[int, int]) -> tuple[RegionPrompt, ...]:
        """The painted regions with prompts, their masks at size (width, height)."""
        return tuple(
            RegionPrompt(row.prompt.text(), row.layer.mask(size))
            for row in self.rows
            if row.prompt.text().strip() or not row.layer.is_empty()
        )

    def restore(self, request: GenerationRequest, _units: object = ()) -> list[str]:
        """Reuse parameters: a picture's regions replace the dock's (a picture without
        regions leaves them), each mask painted on its layer as one undoable edit."""
        if not request.regions:
            return []
        for row in list(self.rows):
            self.remove_region(row)
        for region in request.regions[:MAX_REGIONS]:
            added = self.add_region()
            assert added is not None
            added.prompt.setText(region.prompt)
            added.layer.set_mask(region.mask, "Reused region")
        self.mask_choice.setChecked(True)  # the brush goes back to the inpaint mask
        return []

    def extend(self, request: GenerationRequest) -> GenerationRequest:
        """The request with this dock's regions (see plain_job)."""
        if not self.rows or not plain_job(request):
            return request
        return request.with_changes(regions=self.regions(unit_size(request)))
