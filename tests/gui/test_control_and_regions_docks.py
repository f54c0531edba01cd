"""The ControlNet and Regions docks: units and painted regions join the submitted request;
strokes on a region or the sketch layer go to that layer and undo like mask strokes."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from PySide6.QtCore import QPointF

from guiapp.document import Brush


def put_picture(window, size=(64, 48)) -> None:
    window.workspace.put_picture(Image.new("RGB", size, (90, 120, 200)))


def stroke(target, points, size=10) -> None:
    assert target.begin_stroke()
    brush = Brush(size=size, hardness=1.0)
    for a, b in zip(points, points[1:], strict=False):
        target.paint_segment(QPointF(*a), QPointF(*b), brush)
    target.end_stroke("Brush stroke")


def test_painted_regions_with_prompts_join_the_request(qtbot, window, fake_engine):
    put_picture(window)
    dock = window.regions_dock
    left, right = dock.add_region(), dock.add_region()
    left.prompt.setText("a red circle")
    right.prompt.setText("a blue square")
    left.layer.fill_box(0.0, 0.0, 0.5, 1.0)
    right.paint.setChecked(True)
    assert window.canvas.paint_target is right.layer
    stroke(window.canvas.paint_target, [(48, 10), (48, 40)])
    assert window.workspace.document.mask_image() is None  # the inpaint mask is untouched
    window.form.width, window.form.height = 64, 48
    assert window.workspace.generate() is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    regions = fake_engine.submitted[0].regions
    assert [r.prompt for r in regions] == ["a red circle", "a blue square"]
    first, second = (np.asarray(r.mask) for r in regions)
    assert first.shape == (48, 64) and first[:, :30].min() == 255 and first[:, 34:].max() == 0
    assert second[20, 48] == 255 and second[20, 10] == 0


def test_region_strokes_undo_on_the_documents_stack(window):
    put_picture(window)
    row = window.regions_dock.add_region()
    stroke(row.layer, [(10, 10), (30, 30)])
    assert not row.layer.is_empty()
    window.workspace.document.undo_stack.undo()
    assert row.layer.is_empty()
    window.workspace.document.undo_stack.redo()
    assert not row.layer.is_empty()


def test_choosing_the_inpaint_mask_gives_the_brush_back(window):
    put_picture(window)
    dock = window.regions_dock
    row = dock.add_region()
    assert window.canvas.paint_target is row.layer
    dock.mask_choice.setChecked(True)
    assert window.canvas.paint_target is window.workspace.document
    dock.remove_region(row)
    assert dock.rows == [] and window.workspace.generate() is not None


def test_a_region_with_a_prompt_but_no_paint_is_named(window, fake_engine):
    put_picture(window)
    window.regions_dock.add_region().prompt.setText("a cat")
    assert window.workspace.generate() is None
    assert "region 1's mask is empty" in window.workspace.error
    assert fake_engine.submitted == []


def test_control_units_join_the_request_from_picture_file_and_sketch(
    qtbot, window, fake_engine, tmp_path
):
    put_picture(window)
    dock = window.control_dock
    edges = tmp_path / "edges.png"
    image = Image.new("RGB", (100, 80), "black")
    ImageDraw.Draw(image).line((0, 40, 100, 40), fill="white", width=3)
    image.save(edges)
    picture_unit, file_unit, sketch_unit = dock.add_unit(), dock.add_unit(), dock.add_unit()
    picture_unit.model.setText("/models/canny.safetensors")
    picture_unit.preprocessor.setCurrentIndex(picture_unit.preprocessor.findData("canny"))
    file_unit.model.setText("depth")
    file_unit.source.setCurrentText("File")
    file_unit.image_path.setText(str(edges))
    file_unit.weight.setValue(0.6)
    file_unit.start.setValue(0.2)
    file_unit.end.setValue(0.7)
    sketch_unit.model.setText("scribble")
    sketch_unit.source.setCurrentText("Sketch layer")
    dock.draw_sketch.setChecked(True)
    assert window.canvas.paint_target is dock.sketch
    stroke(dock.sketch, [(5, 24), (60, 24)], size=4)
    window.form.width, window.form.height = 64, 48
    assert window.workspace.generate() is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    units = fake_engine.submitted[0].controls
    assert [u.model for u in units] == ["/models/canny.safetensors", "depth", "scribble"]
    assert units[0].preprocessor == "canny" and units[0].image.size == (64, 48)
    assert (units[1].weight, units[1].start, units[1].end) == (0.6, 0.2, 0.7)
    assert units[1].image.size == (100, 80)
    sketch = np.asarray(units[2].image.convert("L"))
    assert sketch[24, 10:55].min() > 200 and sketch[5].max() == 0


def test_a_unit_whose_file_is_missing_is_named_and_nothing_is_sent(window, fake_engine, tmp_path):
    put_picture(window)
    unit = window.control_dock.add_unit()
    unit.model.setText("cn")
    unit.source.setCurrentText("File")
    unit.image_path.setText(str(tmp_path / "nope.png"))
    assert window.workspace.generate() is None
    assert "Unit 1" in window.workspace.error and "nope.png" in window.workspace.error
    assert fake_engine.submitted == []


def test_show_map_lays_the_preprocessed_map_over_the_canvas(window):
    picture = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(picture).rectangle((16, 12, 47, 35), fill="black")
    window.workspace.put_picture(picture)
    unit = window.control_dock.add_unit()
    unit.preprocessor.setCurrentIndex(unit.preprocessor.findData("canny"))
    unit.show_map.setChecked(True)
    item = window.control_dock._map_item
    assert item.isVisible() and item.pixmap().width() == 64
    unit.show_map.setChecked(False)
    assert not item.isVisible()
