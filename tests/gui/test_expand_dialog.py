"""The Expand canvas dialog's answer, and expansions as undoable picture edits of the
document (no engine needed)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.api import Expand
from guiapp.document import Document
from guiapp.imaging import pil_to_qimage, qimage_to_array
from guiapp.widgets.expand_dialog import ExpandDialog


def test_the_dialog_answers_with_the_sides_fill_and_pieces(qtbot) -> None:
    dialog = ExpandDialog((128, 96))
    qtbot.addWidget(dialog)
    dialog.all_around.setValue(64)
    dialog.sides["left"].setValue(128)
    dialog.fill.setCurrentIndex(dialog.fill.findData("blur"))
    dialog.pieces.setChecked(True)
    dialog.piece.setValue(384)
    choice = dialog.choice()
    assert choice.expand == Expand(left=128, right=64, top=64, bottom=64, fill="blur", tile=384)
    assert choice.piece_by_piece and choice.strength == 1.0
    assert dialog.size_label.text() == "128x96 → 320x224"


def test_expansions_are_undone_and_redone_one_by_one(qtbot) -> None:
    document = Document()
    small = Image.new("RGB", (16, 16), (10, 20, 30))
    document.set_image(pil_to_qimage(small))
    document.set_mask_array(np.full((16, 16), 255, np.uint8))
    wider = Image.new("RGB", (32, 16), (40, 50, 60))
    taller = Image.new("RGB", (32, 24), (70, 80, 90))
    document.replace_picture(pil_to_qimage(wider), "Expand canvas")
    document.replace_picture(pil_to_qimage(taller), "Expand canvas")
    assert document.image.size().width() == 32 and document.image.size().height() == 24
    assert not document.mask_array().any()  # a fresh mask of the new size
    document.undo_stack.undo()
    assert np.array_equal(qimage_to_array(document.image), np.asarray(wider))
    document.undo_stack.undo()
    assert np.array_equal(qimage_to_array(document.image), np.asarray(small))
    assert document.mask_array().all()  # the mask before the expansion is back
    document.undo_stack.redo()
    document.undo_stack.redo()
    assert np.array_equal(qimage_to_array(document.image), np.asarray(taller))
